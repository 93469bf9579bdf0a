"""Build the missing mags of a dataset layer in place: mean for images, mode for segmentations.

The mags to build follow webKnossos (``calculate_mags_to_downsample``): from mag 1 up to the
coarsest mag (by default the power of two that brings the larger of x and y to about 100
voxels, at least 4), each step doubling every axis (isotropic, 2-2-2) or, ``anisotropic``,
only the finest axes until voxels are near-isotropic (e.g. 2-2-1 for 11 x 11 x 25 nm), reusing
mags other layers of the dataset already have so all layers share one ladder. Each new mag is
computed from the coarsest existing mag that divides it, in file-aligned blocks on dask, written
next to the existing mags in their format (same codecs; shards or WKW files of at most
``MAX_SHARD_BYTES``), and only then announced in the dataset's metadata
(``datasource-properties.json``, the OME ``multiscales``, the ``.k.toml`` or a legacy
``mag{N}/knossos.conf``), each file replaced atomically.

Border voxels: a 2x2x2 (or 2x2x1 ...) block reaching past the layer's bounding box repeats the
edge voxels (as :func:`..formats.knossos_writer.downsample_mean` does), so borders do not darken.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
import shutil
import struct
import tomllib
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..formats.atomic import atomic_write_bytes
from ..formats.mags import mag_name
from ..formats.model import Dataset, Layer, Mag, mag_extent
from . import layouts
from .convert import layer_geometry, mag_grid_origin
from .volumes import MagSource, MagTarget, aligned_chunks, block_shape, block_tasks, mag_source

__all__ = [
    "MODES",
    "default_coarsest_mag",
    "downsample_block",
    "downsample_dataset",
    "downsample_mean",
    "downsample_mode",
    "mag_ladder",
]

MODES = ("auto", "mean", "mode")
OUTPUT_BLOCK_BYTES = 16 * 2**20  # decoded output of one task (it reads up to 8x as much)
MODE_SLAB_ELEMENTS = 2**22  # (k, n) comparison slab of the mode filter

Factor = tuple[int, int, int]


# ---------------------------------------------------------------------------------------- ladders
def default_coarsest_mag(size_xyz: Sequence[int]) -> int:
    """The power of two bringing max(x, y) to about 100 voxels, at least 4 (webKnossos' default)."""
    largest = max(int(size_xyz[0]), int(size_xyz[1]), 1)
    return max(2 ** math.ceil(math.log2(largest / 100)) if largest > 100 else 1, 4)


def mag_ladder(
    size_xyz: Sequence[int],
    voxel_size_nm: Sequence[float],
    *,
    anisotropic: bool = False,
    coarsest: int | Sequence[int] | None = None,
    align_with: Sequence[Sequence[int]] = (),
) -> list[Factor]:
    """The mags (x, y, z) after mag 1 up to ``coarsest``, as webKnossos computes them.

    Isotropic: every axis doubles each step. ``anisotropic``: double all axes if that leaves the
    voxel shape more isotropic than doubling only the finest axes, else only those. Where a mag of
    ``align_with`` has twice the current largest factor, it is taken instead. A single-plane
    volume (z size 1) keeps z at 1.
    """
    flat = int(size_xyz[2]) <= 1
    top = coarsest if coarsest is not None else default_coarsest_mag(size_xyz)
    top = np.array((int(top),) * 3 if np.isscalar(top) else [int(v) for v in top], dtype=np.int64)
    if flat:
        top[2] = 1
    by_max: dict[int, Factor] = {}
    for m in align_with:
        by_max.setdefault(max(int(v) for v in m), tuple(int(v) for v in m))
    voxel = np.array([float(v) for v in voxel_size_nm])
    current = np.ones(3, dtype=np.int64)
    ladder: list[Factor] = []
    while current.max() < top.max():
        if int(current.max()) * 2 in by_max:
            new = np.array(by_max[int(current.max()) * 2])
        elif not anisotropic or flat:
            new = np.minimum(current * 2, top)
            if flat:
                new[2] = 1
        else:
            size = current * voxel
            finest = size == size.min()
            factor = finest.astype(np.int64) + 1
            all_ratio = (size * 2).max() / (size * 2).min()
            min_ratio = (size * factor).max() / (size * factor).min()
            if all_ratio < min_ratio:
                new = np.minimum(current * 2, top)
            else:
                new = np.minimum(current * factor, top)
                if new.max() == current.max() and not np.array_equal(new, current):
                    current = new  # e.g. 4-4-2 → 4-4-4 at isotropic voxels: same largest factor, skipped
                    continue
        if np.array_equal(new, current):
            raise ValueError(f"the coarsest mag {tuple(top)} cannot be reached from {tuple(current)}")
        current = new
        ladder.append(tuple(int(v) for v in current))
    return ladder


# ---------------------------------------------------------------------------------------- kernels
def _blocks(volume: np.ndarray, factors_zyx) -> tuple[np.ndarray, tuple]:
    """(k, n) array of the voxels of each factor block, and the output shape (c, z, y, x)."""
    c, z, y, x = volume.shape
    fz, fy, fx = (int(f) for f in factors_zyx)
    out_shape = (c, z // fz, y // fy, x // fx)
    v = volume.reshape(c, z // fz, fz, y // fy, fy, x // fx, fx).transpose(2, 4, 6, 0, 1, 3, 5)
    return v.reshape(fz * fy * fx, -1), out_shape


def _check(volume: np.ndarray, factors_zyx) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4 or any(n % int(f) for n, f in zip(volume.shape[1:], factors_zyx)):
        raise ValueError(f"a (c, z, y, x) volume divisible by {tuple(factors_zyx)} is needed, got {volume.shape}")
    return volume


def downsample_mean(volume_czyx: np.ndarray, factors_zyx) -> np.ndarray:
    """Mean of each ``factors_zyx`` block (rounded half up for integers), ``(c, z, y, x)``."""
    volume = _check(volume_czyx, factors_zyx)
    blocks, out_shape = _blocks(volume, factors_zyx)
    k = blocks.shape[0]
    dtype = volume.dtype
    if dtype.kind in "ui":
        acc = np.uint64 if dtype.kind == "u" and dtype.itemsize == 8 else np.int64
        total = blocks.sum(axis=0, dtype=acc)
        out = (total + acc(k // 2)) // acc(k)
    elif dtype.kind == "b":
        out = blocks.sum(axis=0) * 2 >= k
    else:
        out = blocks.mean(axis=0, dtype=np.float64)
    return out.astype(dtype).reshape(out_shape)


def downsample_mode(volume_czyx: np.ndarray, factors_zyx) -> np.ndarray:
    """Most frequent value of each ``factors_zyx`` block (ties: the smallest), ``(c, z, y, x)``."""
    volume = _check(volume_czyx, factors_zyx)
    blocks, out_shape = _blocks(volume, factors_zyx)
    k, n = blocks.shape
    if k == 1:
        return blocks[0].reshape(out_shape).copy()
    out = np.empty(n, dtype=volume.dtype)
    step = max(1, MODE_SLAB_ELEMENTS // k)
    for s in range(0, n, step):
        rows = blocks[:, s : s + step]
        best = rows[0].copy()
        best_count = (rows == rows[0]).sum(axis=0, dtype=np.int32)
        for i in range(1, k):
            count = (rows == rows[i]).sum(axis=0, dtype=np.int32)
            wins = (count > best_count) | ((count == best_count) & (rows[i] < best))
            np.copyto(best, rows[i], where=wins)
            np.copyto(best_count, count, where=wins)
        out[s : s + step] = best
    return out.reshape(out_shape)


def downsample_block(volume_czyx: np.ndarray, factors_zyx, mode: str) -> np.ndarray:
    """``mode`` "mean" or "mode" of each ``factors_zyx`` block."""
    if mode == "mode":
        return downsample_mode(volume_czyx, factors_zyx)
    if mode == "mean":
        return downsample_mean(volume_czyx, factors_zyx)
    raise ValueError(f"unknown downsampling mode {mode!r}; use 'mean' or 'mode'")


def _downsample_task(index, source: MagSource, target: MagTarget, ratio, out_bounds, src_origin, target_origin,
                     mode):
    """One task: the target block ``index`` (mag-grid ``out_bounds``) from the source voxels under it;
    where those reach past the source array, its edge voxels are repeated."""
    lo = [out_bounds[a][i] for a, i in enumerate(index)]
    hi = [out_bounds[a][i + 1] for a, i in enumerate(index)]
    want_lo = [p * r - o for p, r, o in zip(lo, ratio, src_origin)]  # source-array coordinates
    want_hi = [q * r - o for q, r, o in zip(hi, ratio, src_origin)]
    have_lo = [min(max(p, 0), n) for p, n in zip(want_lo, source.shape[1:])]
    have_hi = [min(max(q, 0), n) for q, n in zip(want_hi, source.shape[1:])]
    if any(q <= p for p, q in zip(have_lo, have_hi)):
        data = np.zeros((source.shape[0], *(q - p for p, q in zip(want_lo, want_hi))), dtype=source.dtype)
    else:
        data = source[(slice(None), *(slice(p, q) for p, q in zip(have_lo, have_hi)))]
        pads = [(0, 0)] + [(p - w, v - q) for p, q, w, v in zip(have_lo, have_hi, want_lo, want_hi)]
        if any(p != (0, 0) for p in pads):
            data = np.pad(data, pads, mode="edge")
    target.write(downsample_block(data, ratio, mode), [p - t for p, t in zip(lo, target_origin)])
    return np.zeros((1, 1, 1, 1), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- editors
def _factor(mag: Mag, layer: Layer) -> Factor:
    out = tuple(round(f) for f in mag.factor)
    if any(abs(f - o) > 1e-6 for f, o in zip(mag.factor, out)):
        raise ValueError(f"layer {layer.name!r}: mag {mag.name} is not an integer factor; cannot build mags from it")
    return out


class _Editor:
    """Adds one mag array to a layer in its format; ``commit`` announces it in the metadata."""

    def __init__(self, dataset: Dataset, layer: Layer):
        self.dataset = dataset
        self.layer = layer
        self.created: Path | None = None  # the new mag's own folder, removed if writing it fails

    def allowed(self, todo: list[Factor], existing: list[Factor]) -> list[Factor]:
        return todo

    def add(self, t: Factor, source: Mag, token: str) -> tuple[MagTarget, tuple[int, int, int], object]:
        """(target, target-array origin in the mag grid (z, y, x), commit callable)."""
        raise NotImplementedError


def _zarr_target_meta(za, dims: dict, end_or_shape_zyx, voxel_bytes: int, round_to_shard: bool):
    """A copy of a zarr array's metadata for a new mag: spatial shape replaced, shards capped."""
    meta = copy.deepcopy(za.metadata)
    spatial = {a: dims[a] for a in "zyx" if dims.get(a) is not None}
    if za.zarr_format == 3:
        outer = list(meta["chunk_grid"]["configuration"]["chunk_shape"])
        inner = list(za.chunk_shape)
        if za.shard_shape is not None:
            capped = layouts.cap_shard([outer[d] for d in spatial.values()], [inner[d] for d in spatial.values()],
                                       voxel_bytes)
            for d, v in zip(spatial.values(), capped):
                outer[d] = v
            meta["chunk_grid"]["configuration"]["chunk_shape"] = outer
        unit = tuple(outer[spatial[a]] if a in spatial else 1 for a in "zyx")
    else:
        unit = tuple(meta["chunks"][spatial[a]] if a in spatial else 1 for a in "zyx")
    shape = list(meta["shape"])
    for i, a in enumerate("zyx"):
        if a in spatial:
            n = int(end_or_shape_zyx[i])
            shape[spatial[a]] = math.ceil(n / unit[i]) * unit[i] if round_to_shard else n
    meta["shape"] = shape
    return meta, unit


def _write_zarr_meta(folder: Path, meta: dict, zarr_format: int) -> None:
    if folder.exists():
        raise FileExistsError(f"{folder} exists; remove it or choose other mags")
    if zarr_format == 3:
        layouts.write_json(folder / "zarr.json", meta)
    else:
        layouts.write_json(folder / ".zarray", meta)


def _zarr_dims(array) -> tuple:
    dims = getattr(array, "zarr_dims", {}) or {}
    if getattr(array, "zarr_fixed", None):
        raise ValueError(f"{array!r}: arrays with pinned dimensions (channelIndex, t) are not downsampled")
    return tuple((a, d) for a, d in dims.items() if d is not None)


class _WebknossosEditor(_Editor):
    def __init__(self, dataset, layer):
        super().__init__(dataset, layer)
        props = dataset.extra.get("properties_file") or os.path.join(dataset.source, "datasource-properties.json")
        self.properties = Path(props)
        if not self.properties.is_file():
            raise ValueError(f"{props}: not a local datasource-properties.json; only local datasets are downsampled")
        self.root = self.properties.parent

    def add(self, t, source, token):
        from ..formats.wkw import WkwArray
        from ..formats.zarr_io import ZarrChunkedArray

        layer = self.layer
        offset, size = layer_geometry(layer)
        origin, shape = mag_extent(size, offset, t)
        end = tuple(o + n for o, n in zip(origin, shape))
        folder = Path(source.path).parent / mag_name(t)
        vbytes = np.dtype(layer.dtype).itemsize * layer.num_channels
        arr = source.array
        if isinstance(arr, WkwArray):
            h = arr.mag.header
            file_len = layouts.cap_shard([h.file_edge] * 3, [h.block_len] * 3, vbytes)[0] // h.block_len
            if folder.exists():
                raise FileExistsError(f"{folder} exists; remove it or choose other mags")
            per_dim = (int(math.log2(file_len)) << 4) | h.block_len_log2
            header = struct.pack("<3sBBBBBQ", b"WKW", 1, per_dim, h.block_type, h.voxel_type, h.voxel_size, 0)
            atomic_write_bytes(folder / "header.wkw", header, durable=False)
            edge = file_len * h.block_len
            target = MagTarget("wkw", str(folder.parent), folder.name, np.dtype(layer.dtype), layer.num_channels,
                               end, (edge,) * 3, token=token)
            extra = {"cubeLength": edge}
        elif isinstance(arr, ZarrChunkedArray):
            za = arr.zarr_array
            dims = _zarr_dims(arr)
            meta, unit = _zarr_target_meta(za, dict(dims), end, vbytes, round_to_shard=True)
            _write_zarr_meta(folder, meta, za.zarr_format)
            target = MagTarget("zarr", str(folder.parent), folder.name, np.dtype(layer.dtype), layer.num_channels,
                               end, unit, dims=dims, token=token)
            extra = {}
        else:
            raise ValueError(f"layer {layer.name!r}: cannot add mags to {type(arr).__name__} arrays")  # noqa: TRY004

        self.created = folder

        def commit():
            self._announce(t, source, folder, extra)

        return target, (0, 0, 0), commit

    def _announce(self, t, source, folder: Path, extra: dict) -> None:
        props = layouts.read_json(self.properties)
        entry = next((l for l in props.get("dataLayers", []) if l.get("name") == self.layer.name), None)
        if entry is None:
            raise ValueError(f"{self.properties}: layer {self.layer.name!r} vanished")
        try:
            rel = "./" + folder.relative_to(self.root).as_posix()
        except ValueError:
            rel = str(folder)
        if entry.get("mags") is not None:
            s_factor = _factor(source, self.layer)
            template = next((m for m in entry["mags"] if _entry_factor(m) == s_factor), entry["mags"][0])
            new = {k: v for k, v in template.items() if k not in ("mag", "path", "cubeLength")}
            new = {"mag": list(t), "path": rel, **extra, **new}
            entry["mags"] = sorted(entry["mags"] + [new], key=_props_mag_key)
        else:  # legacy wkwResolutions: the mag folder is found by name
            res = {"resolution": list(t), **({"cubeLength": extra["cubeLength"]} if "cubeLength" in extra else {})}
            entry["wkwResolutions"] = sorted(entry["wkwResolutions"] + [res], key=_props_mag_key)
        layouts.write_json(self.properties, props)
        self._update_layer_group(folder.parent, t, source)

    def _update_layer_group(self, layer_folder: Path, t, source) -> None:
        """The OME multiscales webknossos keeps in a zarr3 layer's ``zarr.json``."""
        path = layer_folder / "zarr.json"
        if not path.is_file():
            return
        group = layouts.read_json(path)
        ome = (group.get("attributes") or {}).get("ome")
        if not isinstance(ome, dict) or not ome.get("multiscales"):
            return
        ms = ome["multiscales"][0]
        names = [str(a.get("name")) for a in ms.get("axes", [])]
        datasets = ms.get("datasets") or []
        s_name = mag_name(_factor(source, self.layer))
        template = next((d for d in datasets if d.get("path") == s_name), None)
        if template is None or any(d.get("path") == mag_name(t) for d in datasets):
            return
        ratio = dict(zip("xyz", (a // b for a, b in zip(t, _factor(source, self.layer)))))
        new = copy.deepcopy(template)
        new["path"] = mag_name(t)
        for ct in new.get("coordinateTransformations", []):
            if ct.get("type") == "scale":
                ct["scale"] = [v * ratio.get(n, 1) for v, n in zip(ct["scale"], names)]
        datasets.append(new)
        datasets.sort(key=lambda d: _scale_volume(d))
        layouts.write_json(path, group)


def _entry_factor(entry: dict) -> Factor | None:
    from ..formats.webknossos import parse_mag

    try:
        return parse_mag(entry.get("mag", entry.get("resolution")))
    except ValueError:
        return None


def _props_mag_key(entry: dict):
    m = _entry_factor(entry) or (0, 0, 0)
    return (max(m), sum(m))


def _scale_volume(dataset_entry: dict) -> float:
    for ct in dataset_entry.get("coordinateTransformations", []):
        if ct.get("type") == "scale":
            return float(np.prod(ct["scale"]))
    return 0.0


class _OmeEditor(_Editor):
    def __init__(self, dataset, layer):
        super().__init__(dataset, layer)
        root = Path(dataset.source)
        if not root.is_dir():
            raise ValueError(f"{dataset.source}: only local OME-Zarr datasets are downsampled")
        self.group = root / layer.extra.get("path", "")
        v3 = (self.group / "zarr.json").is_file()
        self.meta_file = self.group / ("zarr.json" if v3 else ".zattrs")

    def _attrs(self) -> tuple[dict, dict]:
        doc = layouts.read_json(self.meta_file)
        attrs = doc.setdefault("attributes", {}) if self.meta_file.name == "zarr.json" else doc
        ome = attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs
        return doc, ome

    def add(self, t, source, token):
        from ..formats.zarr_io import ZarrChunkedArray

        layer = self.layer
        arr = source.array
        if not isinstance(arr, ZarrChunkedArray):
            raise ValueError(f"layer {layer.name!r}: not a zarr array")  # noqa: TRY004
        _, ome = self._attrs()
        datasets = ome["multiscales"][0]["datasets"]
        taken = {str(d["path"]) for d in datasets} | {p.name for p in self.group.iterdir()}
        n = len(datasets)
        while str(n) in taken:
            n += 1
        folder = self.group / str(n)
        offset, size = layer_geometry(layer)
        origin, shape = mag_extent(size, offset, t)
        dims = _zarr_dims(arr)
        vbytes = np.dtype(layer.dtype).itemsize * layer.num_channels
        meta, unit = _zarr_target_meta(arr.zarr_array, dict(dims), shape, vbytes, round_to_shard=False)
        _write_zarr_meta(folder, meta, arr.zarr_array.zarr_format)
        self.created = folder
        target = MagTarget("zarr", str(self.group), str(n), np.dtype(layer.dtype), layer.num_channels, shape, unit,
                           dims=dims, token=token)
        s_index = layer.mags.index(source)
        s_origin = mag_grid_origin(layer, s_index)
        s_factor = _factor(source, layer)
        ratio_zyx = [a // b for a, b in zip(t[::-1], s_factor[::-1])]

        def commit():
            doc, ome = self._attrs()
            ms = ome["multiscales"][0]
            names = [str(a.get("name", a) if isinstance(a, dict) else a).lower() for a in ms.get("axes", [])]
            template = ms["datasets"][s_index]
            scale, translation = None, None
            for ct in template.get("coordinateTransformations", []):
                if ct.get("type") == "scale":
                    scale = list(ct["scale"])
                elif ct.get("type") == "translation":
                    translation = list(ct["translation"])
            scale = scale or [1.0] * len(names)
            new_scale, new_translation = list(scale), list(translation or [0.0] * len(names))
            for i, a in enumerate("zyx"):
                if a in names:
                    d = names.index(a)
                    new_translation[d] += (origin[i] * ratio_zyx[i] - s_origin[i]) * scale[d]
                    new_scale[d] = scale[d] * ratio_zyx[i]
            entry = layouts.ome_dataset(str(n), new_scale, new_translation)
            if translation is not None and len(entry["coordinateTransformations"]) == 1:
                entry["coordinateTransformations"].append({"type": "translation", "translation": new_translation})
            ms["datasets"] = sorted(ms["datasets"] + [entry], key=_scale_volume)
            layouts.write_json(self.meta_file, doc)

        return target, tuple(origin), commit


_KNOSSOS_WRITABLE = (".raw", ".seg", ".seg.sz.zip", ".png")
_LAYER_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*Layer[ \t]*\]\][^\n]*$", re.MULTILINE)


class _KnossosEditor(_Editor):
    def __init__(self, dataset, layer):
        super().__init__(dataset, layer)
        self.config = Path(dataset.extra.get("config", ""))
        self.dialect = dataset.extra.get("dialect")
        if not self.config.is_file():
            raise ValueError(f"{dataset.source}: only local KNOSSOS datasets are downsampled")
        ext = layer.extra.get("file_extension", "")
        if ext not in _KNOSSOS_WRITABLE:
            raise ValueError(f"layer {layer.name!r}: {ext} cubes cannot be written without loss; convert the dataset")
        if self.dialect not in ("toml", "legacy"):
            raise ValueError(f"{self.config}: mags are added to .k.toml and knossos.conf datasets only")
        self.folders = [int(f.removeprefix("mag")) for f in layer.extra.get("mag_folders", [])]
        if self.dialect == "toml":  # as the reader numbers folders: ServerFormat "knossos" 2**level, else level + 1
            table = self._table(tomllib.loads(self.config.read_text()))[1]
            self.power_of_two = table.get("ServerFormat") == "knossos"

    def allowed(self, todo, existing):
        """KNOSSOS numbers mag folders by level: only mags coarser than the coarsest can be appended
        (a legacy knossos.conf: isotropic powers of two only)."""
        out, last = [], max(existing, key=lambda m: (max(m), sum(m)))
        for t in todo:
            if all(a >= b for a, b in zip(t, last)) and t != last:
                if self.dialect == "legacy" and not (t[0] == t[1] == t[2] and t[0] & (t[0] - 1) == 0):
                    raise ValueError(f"{self.config}: a knossos.conf dataset holds isotropic power-of-two mags only, "
                                     f"not {mag_name(t)}; convert it to KNOSSOS (.k.toml) for anisotropic mags")
                out.append(t)
                last = t
        return out

    def add(self, t, source, token):
        layer = self.layer
        level = len(self.folders)
        if self.dialect == "legacy":
            folder = t[0]
        else:
            folder = 2**level if self.power_of_two else level + 1
        root = Path(layer.source)
        ext = layer.extra["file_extension"]
        exp = layer.extra["experiment_name"].partition("_mag")[0]
        stale = next(root.glob(f"mag{folder}/x*/y*/z*/{exp}_mag{folder}_*{ext}"), None)
        if stale is not None:  # other layers' cubes may share the folder, this layer's must not exist yet
            raise FileExistsError(f"{stale} exists: mag{folder} of layer {layer.name!r} is partly there; remove it")
        extent = layer.size
        _, shape = mag_extent(extent, (0, 0, 0), t)
        cube = tuple(int(v) for v in layer.extra.get("cube_shape_xyz", (128, 128, 128)))[::-1]
        dtype = np.dtype(np.uint64) if ext in (".seg", ".seg.sz.zip") else np.dtype(layer.dtype)
        target = MagTarget("knossos", str(root), f"mag{folder}", dtype, layer.num_channels, shape, cube,
                           experiment=layer.extra["experiment_name"], ext=ext, token=token)

        def commit():
            if self.dialect == "legacy":
                from ..formats.knossos_writer import legacy_conf_text

                boundary = [math.ceil(e / folder) for e in extent]
                scale = [v * folder for v in layer.voxel_size]
                image_exts = [l.extra.get("file_extension") for l in self.dataset.layers
                              if l.extra.get("file_extension") in (".raw", ".png", ".jpg")]
                text = legacy_conf_text(layer.extra["experiment_name"], boundary, scale, folder, cube[0],
                                        (image_exts or [".raw"])[0])
                atomic_write_bytes(root / f"mag{folder}" / "knossos.conf", text.encode(), durable=False)
            else:
                self._extend_toml(t)
            self.folders.append(folder)

        return target, (0, 0, 0), commit

    def _table(self, doc: dict) -> tuple[int, dict]:
        """(index, table) of the layer's ``[[Layer]]`` table."""
        exp, ext = self.layer.extra["experiment_name"], self.layer.extra["file_extension"]
        for i, table in enumerate(doc.get("Layer") or []):
            exts = table.get("FileExtension")
            exts = [exts] if isinstance(exts, str) else list(exts or [])
            if table.get("Name", "").partition("_mag")[0] == exp.partition("_mag")[0] and ext in exts:
                if len(exts) > 1:
                    raise ValueError(f"{self.config}: layer table {i} lists several FileExtensions sharing one "
                                     f"VoxelSize_nm; split it into one [[Layer]] per extension to add mags")
                return i, table
        raise ValueError(f"{self.config}: no [[Layer]] table for {exp} {ext}")

    def _extend_toml(self, t) -> None:
        text = self.config.read_text()
        index, table = self._table(tomllib.loads(text))
        sizes = list(table["VoxelSize_nm"]) + [[v * f for v, f in zip(self.layer.voxel_size, t)]]
        value = "[" + ", ".join("[" + ", ".join(_toml_number(v) for v in s) + "]" for s in sizes) + "]"
        starts = [m.start() for m in _LAYER_HEADER.finditer(text)] + [len(text)]
        block_start, block_end = starts[index], starts[index + 1]
        block = text[block_start:block_end]
        m = re.search(r"^[ \t]*VoxelSize_nm[ \t]*=[ \t]*", block, re.MULTILINE)
        if m is None:
            raise ValueError(f"{self.config}: layer table {index} has no VoxelSize_nm line")
        end = _array_end(block, m.end())
        new_text = text[: block_start + m.end()] + value + text[block_start + end :]
        check = tomllib.loads(new_text)["Layer"][index]["VoxelSize_nm"]
        if len(check) != len(sizes):
            raise ValueError(f"{self.config}: could not extend VoxelSize_nm")
        atomic_write_bytes(self.config, new_text.encode(), durable=False)


def _toml_number(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _array_end(text: str, start: int) -> int:
    """Index just past the TOML array starting at ``text[start] == '['`` (comments and strings skipped)."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif ch == '"':
            i = text.find('"', i + 1)
            if i < 0:
                break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unterminated VoxelSize_nm array")


def _editor(dataset: Dataset, layer: Layer) -> _Editor:
    if dataset.format == "webknossos":
        return _WebknossosEditor(dataset, layer)
    if layer.format == "ome-zarr":
        return _OmeEditor(dataset, layer)
    if layer.format == "knossos":
        return _KnossosEditor(dataset, layer)
    raise ValueError(f"layer {layer.name!r} ({layer.format or dataset.format}): mags can be added to webKnossos, "
                     "OME-Zarr and KNOSSOS datasets only")


# ---------------------------------------------------------------------------------------- entry
def _downsample_one(path: str, layer: Layer, source: Mag, t: Factor, editor: _Editor, mode: str, scheduler,
                    progress: bool):
    """Write mag ``t`` of ``layer`` from ``source``; the callable that announces it in the metadata."""
    from .scheduler import compute

    token = uuid.uuid4().hex[:12]
    target, target_origin, commit = editor.add(t, source, token)
    s = _factor(source, layer)
    ratio = [a // b for a, b in zip(t[::-1], s[::-1])]
    offset, size = layer_geometry(layer)
    origin, shape = mag_extent(size, offset, t)
    src_origin = mag_grid_origin(layer, layer.mags.index(source))
    src = mag_source(path, layer, source, token)
    vbytes = np.dtype(layer.dtype).itemsize * layer.num_channels
    block = block_shape(target.unit_zyx, shape, vbytes, OUTPUT_BLOCK_BYTES)
    out_bounds = []
    for a in range(3):
        sizes = aligned_chunks(shape[a], block[a], origin[a] - target_origin[a])
        out_bounds.append([origin[a] + int(v) for v in np.concatenate([[0], np.cumsum(sizes)])])
    chunks = [tuple(q - p for p, q in itertools.pairwise(b)) for b in out_bounds]
    work = block_tasks(_downsample_task, chunks, source=src, target=target, ratio=tuple(ratio),
                       out_bounds=out_bounds, src_origin=tuple(src_origin), target_origin=tuple(target_origin),
                       mode=mode)
    try:
        compute([work.max()], scheduler=scheduler, progress=progress)
    except BaseException:
        if editor.created is not None:
            shutil.rmtree(editor.created, ignore_errors=True)
        raise
    return commit


def downsample_dataset(
    path: str | os.PathLike,
    *,
    layers: Sequence[str] | None = None,
    mode: str = "auto",
    anisotropic: bool = False,
    coarsest: int | Sequence[int] | None = None,
    scheduler=None,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Build the missing mags of ``layers`` (default all) of the local dataset at ``path``.

    ``mode``: "auto" (mode for segmentations, mean for images), "mean" or "mode". Returns the
    names of the mags built per layer (empty when nothing was missing).
    """
    from ..formats import open_dataset

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    path = os.fspath(path)
    dataset = open_dataset(path)
    names = list(layers) if layers else [l.name for l in dataset.layers]
    for n in names:
        try:
            dataset.layer(n)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
    # a legacy knossos.conf lists the mags of all layers at once (mag{N}/knossos.conf markers): their
    # cubes are all written before a marker announces the mag
    legacy = dataset.format == "knossos" and dataset.extra.get("dialect") == "legacy"
    if legacy and set(names) != {l.name for l in dataset.layers}:
        raise ValueError(f"{dataset.extra.get('config')}: the layers of a knossos.conf dataset share their mags; "
                         "downsample all of them (no --layer)")
    built: dict[str, list[str]] = {n: [] for n in names}
    for group in [names] if legacy else [[n] for n in names]:
        first = dataset.layer(group[0])
        editors = {n: _editor(dataset, dataset.layer(n)) for n in group}
        existing = [_factor(m, first) for m in first.mags]
        others = [_factor(m, l) for l in dataset.layers if l is not first for m in l.mags
                  if all(float(f).is_integer() for f in m.factor)]
        _, size = layer_geometry(first)
        ladder = mag_ladder(size, first.voxel_size, anisotropic=anisotropic, coarsest=coarsest,
                            align_with=existing + others)
        todo = editors[group[0]].allowed([t for t in ladder if t not in existing], existing)
        for t in todo:
            commits = []
            for name in group:
                dataset = open_dataset(path)  # sees the mags built so far
                layer = dataset.layer(name)
                editor = editors[name]
                editor.dataset, editor.layer = dataset, layer
                have = [(m, _factor(m, layer)) for m in layer.mags]
                sources = [m for m, f in have if f != t and all(a % b == 0 for a, b in zip(t, f))]
                if not sources:
                    raise ValueError(f"layer {name!r}: no existing mag divides {mag_name(t)}")
                source = max(sources, key=lambda m: (math.prod(m.factor), max(m.factor)))
                layer_mode = mode if mode != "auto" else ("mode" if layer.is_segmentation else "mean")
                commits.append(_downsample_one(path, layer, source, t, editor, layer_mode, scheduler, progress))
                built[name].append(mag_name(t))
            for commit in commits:
                commit()
        dataset = open_dataset(path)
    return built
