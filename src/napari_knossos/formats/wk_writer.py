"""Write webKnossos datasets as sharded Zarr v3, in the layout the ``webknossos`` library writes.

Per layer ``<root>/<layer>/zarr.json`` (a group with OME-Zarr 0.5 multiscale attributes) and per
mag ``<root>/<layer>/<mag>/zarr.json`` + shards ``c/0/<sx>/<sy>/<sz>``: dims ``["c","x","y","z"]``,
``sharding_indexed`` with inner chunks 32³, inner codecs ``transpose [3,2,1,0]`` → ``bytes`` little
→ ``zstd(5, checksum)``, index ``bytes`` + ``crc32c``, array shape rounded up to whole shards
(webknossos-formats.md §2). ``datasource-properties.json`` describes the layers. Chunk data is
encoded by zarr-python. Volumes are numpy arrays in napari order ``(z, y, x)`` (or ``(c, z, y, x)``);
voxel sizes, mags and bounding boxes are ``(x, y, z)``. A new dataset is written into a
temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import mags
from .atomic import atomic_write_bytes

__all__ = [
    "WkLayerSpec",
    "array_metadata",
    "element_class",
    "layer_group_text",
    "layer_properties",
    "mag_name",
    "properties_json",
    "properties_text",
    "write_webknossos_dataset",
    "write_zarr3_mag",
]

MAX_SAFE_JSON_INT = 2**53 - 1
_SINGLE_CHANNEL_CLASSES = {
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "float32": "float", "float64": "double",
}


@dataclass
class WkLayerSpec:
    """One layer to write.

    ``mags`` maps a mag (an int for isotropic, or ``(x, y, z)``) to its volume, ``(z, y, x)``
    for one channel or ``(c, z, y, x)``; mag 1 must be present and sets the bounding box
    (``topLeft`` 0). ``largest_segment_id`` defaults to the maximum of mag 1 for segmentations.
    """

    name: str
    category: str  # "color" or "segmentation"
    mags: dict
    largest_segment_id: int | None = None


def _mag_tuple(mag) -> tuple[int, int, int]:
    values = (int(mag),) * 3 if np.isscalar(mag) else tuple(int(v) for v in mag)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"a mag is a positive int or three positive ints, got {mag!r}")
    return values


def mag_name(mag) -> str:
    """Folder name webknossos uses: ``"2"`` for isotropic 2-2-2, ``"2-2-1"`` otherwise (checked: whole
    factors >= 1)."""
    return mags.mag_name(_mag_tuple(mag))


def element_class(dtype, num_channels: int = 1) -> str:
    """``elementClass`` of a voxel of ``num_channels`` × ``dtype`` (e.g. 3 × uint8 → ``uint24``)."""
    dtype = np.dtype(dtype)
    if num_channels == 1 and dtype.name in _SINGLE_CHANNEL_CLASSES:
        return _SINGLE_CHANNEL_CLASSES[dtype.name]
    if dtype.kind == "u" and num_channels > 1:
        return f"uint{dtype.itemsize * 8 * num_channels}"
    raise ValueError(f"webKnossos has no elementClass for {num_channels} × {dtype}")


def array_metadata(dtype, shape_cxyz: Sequence[int], shard_shape: int = 128, chunk_shape: int = 32) -> dict:
    """The ``zarr.json`` of one mag array as webknossos writes it (shape rounded up to shards)."""
    dtype = np.dtype(dtype)
    channels, *spatial = (int(v) for v in shape_cxyz)
    shape = [channels] + [math.ceil(s / shard_shape) * shard_shape for s in spatial]
    inner_bytes = {"name": "bytes"} if dtype.itemsize == 1 else {"configuration": {"endian": "little"}, "name": "bytes"}
    return {
        "chunk_grid": {"configuration": {"chunk_shape": [channels] + [shard_shape] * 3}, "name": "regular"},
        "chunk_key_encoding": {"name": "default"},
        "codecs": [
            {
                "configuration": {
                    "chunk_shape": [channels] + [chunk_shape] * 3,
                    "codecs": [
                        {"configuration": {"order": [3, 2, 1, 0]}, "name": "transpose"},
                        inner_bytes,
                        {"configuration": {"checksum": True, "level": 5}, "name": "zstd"},
                    ],
                    "index_codecs": [{"configuration": {"endian": "little"}, "name": "bytes"}, {"name": "crc32c"}],
                },
                "name": "sharding_indexed",
            }
        ],
        "data_type": dtype.name,
        "dimension_names": ["c", "x", "y", "z"],
        "fill_value": 0,
        "node_type": "array",
        "shape": shape,
        "zarr_format": 3,
    }


def _as_czyx(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim == 3:
        return volume[None]
    if volume.ndim == 4:
        return volume
    raise ValueError(f"a layer volume is (z, y, x) or (c, z, y, x), got shape {volume.shape}")


def write_zarr3_mag(path: str | os.PathLike, volume: np.ndarray, shard_shape: int = 128, chunk_shape: int = 32) -> None:
    """Write one mag array (``(z, y, x)`` or ``(c, z, y, x)``) as a sharded zarr3 array at ``path``."""
    import zarr

    data = _as_czyx(volume)
    cxyz = data.transpose(0, 3, 2, 1)
    path = Path(path)
    meta = array_metadata(data.dtype, cxyz.shape, shard_shape, chunk_shape)
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    atomic_write_bytes(path / "zarr.json", text.encode(), durable=False)  # creates the folder
    array = zarr.open_array(str(path), mode="r+")
    _, sx, sy, sz = cxyz.shape
    array[:, :sx, :sy, :sz] = cxyz


def layer_group_text(mags: Sequence, voxel_size_nm: Sequence[float], unit: str = "nanometer") -> str:
    """The layer's ``zarr.json``: a group with OME-Zarr 0.5 multiscales (scale per mag)."""
    datasets = []
    for mag in mags:
        factors = _mag_tuple(mag)
        scale = [1.0] + [float(v) * f for v, f in zip(voxel_size_nm, factors)]
        datasets.append({"path": mag_name(mag), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": unit} for a in "xyz"]
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}},
    }
    return json.dumps(group, indent=4)


def _segment_id_json(value: int):
    value = int(value)
    return value if value <= MAX_SAFE_JSON_INT else {"customJsonEncoding": "bigint", "value": str(value)}


def layer_properties(
    name: str,
    category: str,
    dtype,
    num_channels: int,
    top_left_xyz: Sequence[int],
    size_xyz: Sequence[int],
    mags: Sequence,
    *,
    data_format: str = "zarr3",
    largest_segment_id: int | None = None,
    cube_length: int | None = None,
) -> dict:
    """One ``dataLayers`` entry of ``datasource-properties.json`` (key order as webknossos writes it).

    ``mags`` are ints or ``(x, y, z)``, stored at ``./<name>/<mag name>``; ``cube_length`` (WKW file
    edge in voxels) is written for ``data_format="wkw"``.
    """
    x, y, z = (int(v) for v in size_xyz)
    entries = []
    for m in sorted(mags, key=_mag_tuple):
        entry = {"mag": list(_mag_tuple(m)), "path": f"./{name}/{mag_name(m)}"}
        if data_format == "wkw" and cube_length is not None:
            entry["cubeLength"] = int(cube_length)
        entry["axisOrder"] = {"c": 0, "x": 1, "y": 2, "z": 3}
        entries.append(entry)
    layer = {
        "name": name,
        "category": category,
        "boundingBox": {"topLeft": [int(v) for v in top_left_xyz], "width": x, "height": y, "depth": z},
        "dataFormat": data_format,
        "mags": entries,
    }
    if category == "segmentation":
        layer["largestSegmentId"] = None if largest_segment_id is None else _segment_id_json(largest_segment_id)
    layer["numChannels"] = int(num_channels)
    layer["elementClass"] = element_class(dtype, num_channels)
    return layer


def _layer_properties(layer: WkLayerSpec) -> dict:
    mag1 = _as_czyx(layer.mags[_find_mag1(layer)])
    channels, z, y, x = mag1.shape
    largest = layer.largest_segment_id
    if layer.category == "segmentation" and largest is None:
        largest = int(mag1.max()) if mag1.size else 0
    return layer_properties(layer.name, layer.category, mag1.dtype, channels, (0, 0, 0), (x, y, z), list(layer.mags),
                            largest_segment_id=largest)


def properties_json(name: str, voxel_size_nm: Sequence[float], layer_entries: Sequence[dict]) -> str:
    """``datasource-properties.json`` text from ``dataLayers`` entries (see :func:`layer_properties`)."""
    props = {
        "id": {"name": name, "team": ""},
        "scale": {"factor": [float(v) for v in voxel_size_nm], "unit": "nanometer"},
        "dataLayers": list(layer_entries),
        "version": 1,
    }
    return json.dumps(props, indent=4)


def properties_text(name: str, voxel_size_nm: Sequence[float], layers: Sequence[WkLayerSpec]) -> str:
    """``datasource-properties.json`` text (key order and indentation as webknossos writes it)."""
    return properties_json(name, voxel_size_nm, [_layer_properties(layer) for layer in layers])


def _find_mag1(layer: WkLayerSpec):
    for mag in layer.mags:
        if _mag_tuple(mag) == (1, 1, 1):
            return mag
    raise ValueError(f"layer {layer.name!r} has no mag 1")


def _validate(layers: Sequence[WkLayerSpec]) -> None:
    if not layers:
        raise ValueError("no layers to write")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique, got {names}")
    for layer in layers:
        if not layer.name or "/" in layer.name or layer.name.startswith("."):
            raise ValueError(f"unusable layer name {layer.name!r}")
        if layer.category not in ("color", "segmentation"):
            raise ValueError(f"layer {layer.name!r}: category must be 'color' or 'segmentation'")
        mag1 = _as_czyx(layer.mags[_find_mag1(layer)])
        size_xyz = mag1.shape[:0:-1]
        for mag, volume in layer.mags.items():
            factors = _mag_tuple(mag)
            data = _as_czyx(volume)
            expected = tuple(math.ceil(s / f) for s, f in zip(size_xyz, factors))[::-1]
            if data.shape[1:] != expected or data.shape[0] != mag1.shape[0] or data.dtype != mag1.dtype:
                raise ValueError(
                    f"layer {layer.name!r} mag {mag_name(mag)}: got {data.shape} {data.dtype}, expected "
                    f"{(mag1.shape[0],) + expected} {mag1.dtype}"
                )


def replace_folder(tmp: Path, dst: Path) -> bool:
    """Move the finished folder ``tmp`` to ``dst`` (world-readable), replacing an existing ``dst``
    with two renames, so readers see the old or the new folder, never a mix. True if one was replaced."""
    os.chmod(tmp, 0o755)
    if not dst.exists():
        os.replace(tmp, dst)
        return False
    trash = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".old"))
    os.replace(dst, trash / dst.name)
    os.replace(tmp, dst)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def write_webknossos_dataset(
    root: str | os.PathLike,
    voxel_size_nm: Sequence[float],
    layers: Sequence[WkLayerSpec],
    *,
    shard_shape: int = 128,
    chunk_shape: int = 32,
    overwrite: bool = False,
    name: str | None = None,
) -> Path:
    """Write a new webKnossos zarr3 dataset at ``root``, named ``name`` (default: the folder name).

    Everything is written into a temporary sibling folder first and renamed into place, so a
    reader never sees a half-written dataset. An existing ``root`` is replaced only with
    ``overwrite=True``.
    """
    root = Path(root)
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists (pass overwrite=True to replace it)")
    if shard_shape % chunk_shape:
        raise ValueError(f"shard shape {shard_shape} is not a multiple of the chunk shape {chunk_shape}")
    _validate(layers)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        for layer in layers:
            mags = sorted(layer.mags, key=lambda m: _mag_tuple(m))
            layer_dir = tmp / layer.name
            layer_dir.mkdir()
            (layer_dir / "zarr.json").write_text(layer_group_text(mags, voxel_size_nm))
            for mag in mags:
                write_zarr3_mag(layer_dir / mag_name(mag), layer.mags[mag], shard_shape, chunk_shape)
        (tmp / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group"}, indent=4))
        (tmp / "datasource-properties.json").write_text(properties_text(name or root.name, voxel_size_nm, layers))
        replace_folder(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
