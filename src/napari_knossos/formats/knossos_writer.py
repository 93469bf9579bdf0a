"""Write KNOSSOS cube datasets: cubes, per-mag and root ``knossos.conf``, ``<name>.k.toml``.

Layout and cube contents follow the KNOSSOS app (specs: knossos-datasets.md §2, §4-§7):
``<root>/mag{M}/x{X:04}/y{Y:04}/z{Z:04}/{name}_mag{M}_x{X:04}_y{Y:04}_z{Z:04}{ext}`` with
power-of-two mag folders (the ``.k.toml`` says ``ServerFormat = "knossos"``). Volumes are numpy
arrays in napari order ``(z, y, x)``; sizes, cube shapes and voxel sizes are ``(x, y, z)``.
Every file is written atomically (:mod:`.atomic`), not fsync'ed: a dataset is bulk data, complete when
the call returns and flushed by the OS.

Also holds the 2x downsampling helpers (mean for images, mode for segmentations) used to
build mags 2, 4, ... Pure Python + numpy, Pillow and cramjam.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "SEGMENTATION_EXTENSIONS",
    "KnossosLayerSpec",
    "atomic_write_bytes",
    "cube_file_name",
    "cube_path",
    "downsample_mean",
    "downsample_mode",
    "encode_cube",
    "k_toml_layer_table",
    "k_toml_text",
    "legacy_conf_text",
    "pyramid",
    "write_cube",
    "write_knossos_dataset",
    "write_mag_cubes",
]

IMAGE_EXTENSIONS = (".raw", ".png", ".jpg")
SEGMENTATION_EXTENSIONS = (".seg.sz.zip", ".seg")
# fixed zip timestamp so the same cube always gives the same bytes
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------- files


def _check_name(name: str) -> None:
    if not name or any(c in name for c in '"\n\r\\/') or "_mag" in name:
        raise ValueError(
            f"experiment name {name!r} unusable for KNOSSOS: it must be non-empty and contain no "
            "quotes, slashes, backslashes, line breaks or '_mag' (KNOSSOS cuts names at '_mag')"
        )


def cube_file_name(experiment: str, mag: int, cube_xyz: Sequence[int], ext: str) -> str:
    """``{experiment}_mag{mag}_x{X:04}_y{Y:04}_z{Z:04}{ext}`` (knossos-datasets.md §6)."""
    x, y, z = (int(v) for v in cube_xyz)
    return f"{experiment}_mag{int(mag)}_x{x:04d}_y{y:04d}_z{z:04d}{ext}"


def cube_path(root: str | os.PathLike, experiment: str, mag: int, cube_xyz: Sequence[int], ext: str) -> Path:
    """Path of one cube file below the dataset root (power-of-two mag folder ``mag{mag}``)."""
    x, y, z = (int(v) for v in cube_xyz)
    return (
        Path(root) / f"mag{int(mag)}" / f"x{x:04d}" / f"y{y:04d}" / f"z{z:04d}"
        / cube_file_name(experiment, mag, cube_xyz, ext)
    )


# ----------------------------------------------------------------------------- cubes


def _png_unfiltered(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG with filter type 0 on every row, deflated at level 9.

    Unfiltered rows keep exact repeats between neighbouring slices intact, which suits
    smooth or synthetic data better than Pillow's per-row adaptive filters.
    """
    height, width = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = np.zeros((height, width + 1), np.uint8)
    rows[:, 1:] = image
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b""))


def encode_cube(
    cube_zyx: np.ndarray, ext: str, *, file_name: str = "", jpeg_quality: int = 90, png_filter: str = "adaptive"
) -> bytes:
    """File bytes of one full cube given as a ``(cz, cy, cx)`` array.

    ``.raw``: uint8, x fastest. ``.png``/``.jpg``: 8-bit gray image of width cx, height cy*cz
    (PNG rows filtered adaptively by Pillow, or unfiltered with ``png_filter="none"``).
    ``.seg``: uint64 little-endian. ``.seg.sz.zip``: DEFLATE zip with one member named
    ``file_name`` minus ``.zip`` holding the raw (block-format) Snappy stream of the uint64 ids.
    """
    cube = np.asarray(cube_zyx)
    if cube.ndim != 3:
        raise ValueError(f"a cube is a 3-D (z, y, x) array, got shape {cube.shape}")
    if ext in IMAGE_EXTENSIONS:
        if cube.dtype != np.uint8:
            raise ValueError(f"{ext} cubes hold uint8 voxels, got {cube.dtype}")
        cube = np.ascontiguousarray(cube)
        if ext == ".raw":
            return cube.tobytes()
        cz, cy, cx = cube.shape
        if ext == ".png" and png_filter == "none":
            return _png_unfiltered(cube.reshape(cz * cy, cx))
        if png_filter not in ("adaptive", "none"):
            raise ValueError(f"png_filter must be 'adaptive' or 'none', got {png_filter!r}")
        from PIL import Image

        image = Image.fromarray(cube.reshape(cz * cy, cx))
        buf = io.BytesIO()
        if ext == ".png":
            image.save(buf, format="PNG", optimize=True)
        else:
            image.save(buf, format="JPEG", quality=int(jpeg_quality))
        return buf.getvalue()
    if ext in SEGMENTATION_EXTENSIONS:
        if cube.dtype.kind not in "ui" or (cube.dtype.kind == "i" and cube.size and cube.min() < 0):
            raise ValueError(f"{ext} cubes hold non-negative integer ids, got {cube.dtype}")
        payload = np.ascontiguousarray(cube, dtype="<u8").tobytes()
        if ext == ".seg":
            return payload
        import cramjam

        if not file_name.endswith(".seg.sz.zip"):
            raise ValueError(f"a .seg.sz.zip cube needs its file name (got {file_name!r})")
        info = zipfile.ZipInfo(file_name[: -len(".zip")], date_time=_ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(info, bytes(cramjam.snappy.compress_raw(payload)), compresslevel=9)
        return buf.getvalue()
    raise ValueError(f"cannot write KNOSSOS cubes of type {ext!r}; use one of "
                     f"{IMAGE_EXTENSIONS + SEGMENTATION_EXTENSIONS}")


def write_cube(
    path: str | os.PathLike,
    cube_zyx: np.ndarray,
    ext: str,
    *,
    jpeg_quality: int = 90,
    png_filter: str = "adaptive",
    durable: bool = False,
) -> None:
    """Encode one cube and write it atomically to ``path`` (fsync'ed only if ``durable``)."""
    path = Path(path)
    data = encode_cube(cube_zyx, ext, file_name=path.name, jpeg_quality=jpeg_quality, png_filter=png_filter)
    atomic_write_bytes(path, data, durable=durable)


def write_mag_cubes(
    root: str | os.PathLike,
    experiment: str,
    mag: int,
    volume_zyx: np.ndarray,
    ext: str,
    cube_shape_xyz: Sequence[int] = (128, 128, 128),
    *,
    offset_xyz: Sequence[int] = (0, 0, 0),
    skip_empty: bool = True,
    jpeg_quality: int = 90,
    png_filter: str = "adaptive",
) -> int:
    """Write every cube touched by ``volume_zyx`` placed at mag-local voxel ``offset_xyz``.

    ``offset_xyz`` must be cube-aligned. Border cubes are full-size, padded with zeros.
    With ``skip_empty`` an all-zero cube is not written and an existing file for it is
    removed (a missing cube reads as zeros). Returns the number of cube files written.
    """
    _check_name(experiment)
    volume = np.asarray(volume_zyx)
    cx, cy, cz = (int(v) for v in cube_shape_xyz)
    ox, oy, oz = (int(v) for v in offset_xyz)
    if ox % cx or oy % cy or oz % cz:
        raise ValueError(f"offset {tuple(offset_xyz)} is not aligned to the cube shape {tuple(cube_shape_xyz)}")
    nz, ny, nx = volume.shape
    written = 0
    for kz in range(math.ceil(nz / cz)):
        for ky in range(math.ceil(ny / cy)):
            for kx in range(math.ceil(nx / cx)):
                part = volume[kz * cz : (kz + 1) * cz, ky * cy : (ky + 1) * cy, kx * cx : (kx + 1) * cx]
                index = (ox // cx + kx, oy // cy + ky, oz // cz + kz)
                path = cube_path(root, experiment, mag, index, ext)
                if skip_empty and not part.any():
                    if path.exists():
                        path.unlink()
                    continue
                cube = np.zeros((cz, cy, cx), dtype=volume.dtype)
                cube[: part.shape[0], : part.shape[1], : part.shape[2]] = part
                write_cube(path, cube, ext, jpeg_quality=jpeg_quality, png_filter=png_filter)
                written += 1
    return written


# ----------------------------------------------------------------------------- configs


def _number(value: float) -> str:
    """A number as KNOSSOS/TOML text: integers without a fraction, others as Python repr."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"voxel size must be finite, got {value}")
    return str(int(value)) if value.is_integer() else repr(value)


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def legacy_conf_text(
    experiment: str,
    boundary_xyz: Sequence[int],
    scale_xyz: Sequence[float],
    magnification: int = 1,
    cube_edge_length: int = 128,
    ext: str = ".raw",
) -> str:
    """Legacy ``knossos.conf`` for one mag (its own boundary and scale), knossos-datasets.md §2.

    ``ext`` selects the statements KNOSSOS needs for the cube type: ``png;`` for ``.png``,
    ``compression_ratio 1000;`` for ``.jpg``; nothing for ``.raw``.
    """
    _check_name(experiment)
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"a legacy knossos.conf describes .raw, .png or .jpg cubes, not {ext!r}")
    lines = [f'experiment name "{experiment}";']
    lines += [f"boundary {axis} {int(v)};" for axis, v in zip("xyz", boundary_xyz)]
    lines += [f"scale {axis} {float(v)!r};" for axis, v in zip("xyz", scale_xyz)]
    lines += [f"magnification {int(magnification)};", f"cube_edge_length {int(cube_edge_length)};"]
    if ext == ".png":
        lines.append("png;")
    elif ext == ".jpg":
        lines.append("compression_ratio 1000;")
    return "\n".join(lines) + "\n"


@dataclass
class KnossosLayerSpec:
    """One layer to write: its cube type and one ``(z, y, x)`` volume per mag 1, 2, 4, ...

    ``mags[i]`` is mag ``2**i`` (power-of-two folders); its shape must be
    ``ceil(mag-1 shape / 2**i)``.
    """

    ext: str
    mags: list[np.ndarray]
    description: str = ""
    color: str | None = None
    visible: bool | None = None
    extra_toml: dict[str, str] = field(default_factory=dict)  # raw TOML values, e.g. {"DataType": '"uint64"'}


def k_toml_layer_table(
    name: str,
    ext: str,
    extent_xyz: Sequence[int],
    cube_shape_xyz: Sequence[int],
    voxel_sizes_nm: Sequence[Sequence[float]],
    *,
    description: str = "",
    server_format: str | None = "knossos",
    color: str | None = None,
    visible: bool | None = None,
    extra_toml: dict[str, str] | None = None,
) -> str:
    """One ``[[Layer]]`` table of a ``.k.toml`` (knossos-datasets.md §4); ``name`` is the experiment
    name of its cube files, ``voxel_sizes_nm`` has one ``(x, y, z)`` per mag folder 1, 2, 4, ..."""
    _check_name(name)
    lines = ["[[Layer]]", f"Name = {_toml_string(name)}", f"Description = {_toml_string(description)}"]
    if server_format:
        lines.append(f"ServerFormat = {_toml_string(server_format)}")
    lines.append(f"FileExtension = [{_toml_string(ext)}]")
    lines.append("Extent_px = [" + ", ".join(str(int(v)) for v in extent_xyz) + "]")
    lines.append("CubeShape_px = [" + ", ".join(str(int(v)) for v in cube_shape_xyz) + "]")
    sizes = ", ".join("[" + ", ".join(_number(v) for v in vs) + "]" for vs in voxel_sizes_nm)
    lines.append(f"VoxelSize_nm = [{sizes}]")
    if color is not None:
        lines.append(f"Color = {_toml_string(color)}")
    if visible is not None:
        lines.append(f"Visible = {'true' if visible else 'false'}")
    lines += [f"{key} = {value}" for key, value in (extra_toml or {}).items()]
    return "\n".join(lines) + "\n"


def k_toml_text(
    experiment: str,
    extent_xyz: Sequence[int],
    cube_shape_xyz: Sequence[int],
    voxel_sizes_nm: Sequence[Sequence[float]],
    layers: Sequence[KnossosLayerSpec],
    *,
    server_format: str | None = "knossos",
) -> str:
    """``<name>.k.toml`` text: one ``[[Layer]]`` table per layer (knossos-datasets.md §4).

    ``Description`` is always written (KNOSSOS requires it); ``VoxelSize_nm`` has one entry
    per mag. With ``server_format="knossos"`` KNOSSOS reads power-of-two mag folders.
    """
    _check_name(experiment)
    blocks = [
        k_toml_layer_table(experiment, layer.ext, extent_xyz, cube_shape_xyz, voxel_sizes_nm,
                           description=layer.description, server_format=server_format, color=layer.color,
                           visible=layer.visible, extra_toml=layer.extra_toml)
        for layer in layers
    ]
    return "\n".join(blocks)


def write_knossos_dataset(
    root: str | os.PathLike,
    experiment: str,
    voxel_size_nm: Sequence[float],
    layers: Sequence[KnossosLayerSpec],
    *,
    cube_shape_xyz: Sequence[int] | int = 128,
    skip_empty: bool = True,
    jpeg_quality: int = 90,
    png_filter: str = "adaptive",
    toml_name: str | None = None,
) -> Path:
    """Write a KNOSSOS dataset below ``root`` and return the path of its ``.k.toml``.

    Writes ``mag{2**i}/`` cube folders for every layer, a legacy ``knossos.conf`` in every mag
    folder (that mag's boundary and scale, so KNOSSOS finds the mags) and in the root
    (describing mag 1 and the first image layer's cube type; written only for cubic cubes
    and when there is an image layer), and ``<experiment>.k.toml`` with one layer per cube
    type and one voxel size per mag. ``voxel_size_nm`` is mag 1's ``(x, y, z)``.
    """
    _check_name(experiment)
    root = Path(root)
    cube = (int(cube_shape_xyz),) * 3 if np.isscalar(cube_shape_xyz) else tuple(int(v) for v in cube_shape_xyz)
    if len(cube) != 3 or min(cube) < 1:
        raise ValueError(f"cube shape must be three positive integers, got {cube_shape_xyz!r}")
    if not layers:
        raise ValueError("no layers to write")
    extent = tuple(int(v) for v in np.asarray(layers[0].mags[0]).shape[::-1])
    n_mags = len(layers[0].mags)
    for layer in layers:
        if layer.ext not in IMAGE_EXTENSIONS + SEGMENTATION_EXTENSIONS:
            raise ValueError(f"unknown KNOSSOS cube type {layer.ext!r}")
        if len(layer.mags) != n_mags:
            raise ValueError(f"layer {layer.ext} has {len(layer.mags)} mags, the first layer {n_mags}")
        for i, volume in enumerate(layer.mags):
            expected = tuple(math.ceil(e / 2**i) for e in extent)[::-1]
            if tuple(np.asarray(volume).shape) != expected:
                raise ValueError(
                    f"layer {layer.ext} mag {2**i}: shape (z, y, x) {tuple(np.asarray(volume).shape)}, "
                    f"expected {expected} for a mag-1 extent (x, y, z) {extent}"
                )
    if len({layer.ext for layer in layers}) != len(layers):
        raise ValueError("two layers with the same cube type would share their cube files")

    voxel_sizes = [tuple(float(v) * 2**i for v in voxel_size_nm) for i in range(n_mags)]
    image_exts = [layer.ext for layer in layers if layer.ext in IMAGE_EXTENSIONS]
    conf_ext = image_exts[0] if image_exts else None
    cubic = len(set(cube)) == 1
    for layer in layers:
        for i, volume in enumerate(layer.mags):
            write_mag_cubes(root, experiment, 2**i, np.asarray(volume), layer.ext, cube,
                            skip_empty=skip_empty, jpeg_quality=jpeg_quality, png_filter=png_filter)
    for i in range(n_mags):
        mag = 2**i
        text = ""
        if cubic and conf_ext:
            boundary = tuple(math.ceil(e / mag) for e in extent)
            text = legacy_conf_text(experiment, boundary, voxel_sizes[i], mag, cube[0], conf_ext)
        atomic_write_bytes(root / f"mag{mag}" / "knossos.conf", text.encode(), durable=False)
    if cubic and conf_ext:
        conf = legacy_conf_text(experiment, extent, voxel_sizes[0], 1, cube[0], conf_ext)
        atomic_write_bytes(root / "knossos.conf", conf.encode(), durable=False)
    toml_path = root / (toml_name or f"{experiment}.k.toml")
    atomic_write_bytes(toml_path, k_toml_text(experiment, extent, cube, voxel_sizes, layers).encode(), durable=False)
    return toml_path


# ----------------------------------------------------------------------------- downsampling


def _blocks_2x(volume: np.ndarray) -> np.ndarray:
    """``(Z/2, Y/2, X/2, 8)`` view of 2x2x2 blocks; odd sizes are padded by repeating the edge."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"downsampling needs a 3-D (z, y, x) array, got shape {volume.shape}")
    pad = [(0, s % 2) for s in volume.shape]
    if any(p for _, p in pad):
        volume = np.pad(volume, pad, mode="edge")
    z, y, x = (s // 2 for s in volume.shape)
    blocks = volume.reshape(z, 2, y, 2, x, 2).transpose(0, 2, 4, 1, 3, 5)
    return blocks.reshape(z, y, x, 8)


def downsample_mean(volume_zyx: np.ndarray) -> np.ndarray:
    """2x per axis by the mean of each 2x2x2 block, rounded half up; integer-exact for ints."""
    volume = np.asarray(volume_zyx)
    blocks = _blocks_2x(volume)
    if volume.dtype.kind in "ui":
        total = blocks.astype(np.int64).sum(axis=-1)
        return ((total + 4) // 8).astype(volume.dtype)
    return blocks.astype(np.float64).mean(axis=-1).astype(volume.dtype)


def downsample_mode(volume_zyx: np.ndarray) -> np.ndarray:
    """2x per axis by the most frequent value of each 2x2x2 block; ties go to the smallest value."""
    volume = np.asarray(volume_zyx)
    out = np.empty(tuple((s + 1) // 2 for s in volume.shape), dtype=volume.dtype)
    for z0 in range(0, out.shape[0], 8):  # slabs bound the temporary (n, 8, 8) comparison
        slab = volume[2 * z0 : 2 * (z0 + 8)]
        values = np.sort(_blocks_2x(slab).reshape(-1, 8), axis=-1)
        counts = (values[:, :, None] == values[:, None, :]).sum(axis=-1, dtype=np.int8)
        # values are sorted, so the first index of the largest count is the smallest tied value
        best = np.argmax(counts, axis=-1)
        out[z0 : z0 + 8] = values[np.arange(values.shape[0]), best].reshape(out[z0 : z0 + 8].shape)
    return out


def pyramid(volume_zyx: np.ndarray, levels: int, *, segmentation: bool) -> list[np.ndarray]:
    """``[mag1, mag2, mag4, ...]`` (``levels`` arrays): each level 2x smaller than the previous."""
    down = downsample_mode if segmentation else downsample_mean
    mags = [np.asarray(volume_zyx)]
    for _ in range(levels - 1):
        mags.append(down(mags[-1]))
    return mags
