"""What a dataset holds: layers, dtypes, extents, mags, voxel size, format (reads metadata only)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["dataset_info", "format_info"]


def _chunk_xyz(array) -> list[int] | None:
    chunk = getattr(array, "chunk_zyx", None)
    return [int(v) for v in chunk[::-1]] if chunk is not None else None


def dataset_info(path: str | os.PathLike) -> dict:
    """A JSON-serialisable description of the dataset at ``path`` (a folder, config file or URL)."""
    from ..formats import open_dataset
    from .convert import layer_geometry

    dataset = open_dataset(path)
    layers = []
    for layer in dataset.layers:
        offset, size = layer_geometry(layer)
        mags = []
        for mag in layer.mags:
            arr = mag.array
            shape_zyx = getattr(arr, "shape_zyx", None) or tuple(arr.shape[-3:])
            mags.append({
                "mag": mag.name,
                "factor_xyz": [int(f) if float(f).is_integer() else float(f) for f in mag.factor],
                "shape_xyz": [int(v) for v in shape_zyx[::-1]],
                "chunk_xyz": _chunk_xyz(arr),
                "path": mag.path,
            })  # fmt: skip
        entry = {
            "name": layer.name,
            "category": layer.category,
            "dtype": np.dtype(layer.dtype).name,
            "num_channels": int(layer.num_channels),
            "voxel_size_nm_xyz": [float(v) for v in layer.voxel_size],
            "offset_xyz": list(offset),
            "size_xyz": list(size),
            "format": layer.format or dataset.format,
            "mags": mags,
        }
        if layer.rgb:
            entry["rgb"] = True
        if layer.largest_segment_id is not None:
            entry["largest_segment_id"] = int(layer.largest_segment_id)
        layers.append(entry)
    return {"name": dataset.name, "format": dataset.format, "source": dataset.source, "layers": layers}


def _fmt_vec(values) -> str:
    return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def format_info(info: dict) -> str:
    """Human-readable text of :func:`dataset_info`."""
    lines = [f"{info['name']}  ({info['format']})  {info['source']}"]
    for layer in info["layers"]:
        dtype = f"{layer['num_channels']} x {layer['dtype']}" if layer["num_channels"] > 1 else layer["dtype"]
        lines.append(f"  layer {layer['name']!r}: {layer['category']}, {dtype}, {layer['format']}")
        lines.append(f"    voxel size {_fmt_vec(layer['voxel_size_nm_xyz'])} nm; bounding box at "
                     f"{_fmt_vec(layer['offset_xyz'])}, size {_fmt_vec(layer['size_xyz'])} (x y z)")
        if "largest_segment_id" in layer:
            lines.append(f"    largest segment id {layer['largest_segment_id']}")
        for mag in layer["mags"]:
            chunk = f", chunks {_fmt_vec(mag['chunk_xyz'])}" if mag["chunk_xyz"] else ""
            lines.append(f"    mag {mag['mag']:<8} {_fmt_vec(mag['shape_xyz'])} voxels{chunk}")
    return "\n".join(lines)
