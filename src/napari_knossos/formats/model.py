"""Format-independent description of an opened dataset: Dataset → Layer → Mag.

Coordinates follow the domain: voxel sizes, offsets and mag factors are given as
``(x, y, z)`` as in every file format; only the arrays are ``(z, y, x)`` (napari order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .chunked import ChunkedArray
from .mags import mag_name

__all__ = ["Dataset", "Layer", "Mag"]

Category = Literal["color", "segmentation"]


@dataclass
class Mag:
    """One resolution level. ``factor`` is (x, y, z) relative to mag 1 (may be anisotropic)."""

    factor: tuple[float, float, float]
    array: Any  # ChunkedArray or another lazy array-like with shape/dtype/__getitem__
    path: str = ""

    @property
    def name(self) -> str:
        """``"2"`` for 2-2-2, ``"2-2-1"`` otherwise (:func:`.mags.mag_name`)."""
        return mag_name(self.factor)


@dataclass
class Layer:
    """One data layer: a color (image) or segmentation channel of a dataset."""

    name: str
    category: Category
    dtype: np.dtype
    voxel_size: tuple[float, float, float]  # nm at mag 1, (x, y, z)
    mags: list[Mag]
    offset: tuple[int, int, int] = (0, 0, 0)  # bounding-box top-left in mag-1 voxels (x, y, z)
    size: tuple[int, int, int] | None = None  # bounding-box size in mag-1 voxels (x, y, z)
    num_channels: int = 1
    rgb: bool = False  # channels are the colour of one voxel (uint24)
    format: str = ""
    source: str = ""
    largest_segment_id: int | None = None
    contrast_limits: tuple[float, float] | None = None
    color: str | None = None  # display tint, if the format names one
    visible: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_segmentation(self) -> bool:
        return self.category == "segmentation"

    def mag(self, name_or_factor) -> Mag:
        for m in self.mags:
            if m.name == str(name_or_factor) or tuple(m.factor) == tuple(np.broadcast_to(name_or_factor, 3)):
                return m
        raise KeyError(f"layer {self.name!r} has no mag {name_or_factor!r}; it has {[m.name for m in self.mags]}")


@dataclass
class Dataset:
    name: str
    format: str  # "knossos", "wkw", "zarr3", "ome-zarr", ...
    source: str  # path or URL as given (credentials removed)
    layers: list[Layer]
    extra: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.source} has no layer {name!r}; it has {[l.name for l in self.layers]}")


def default_contrast_limits(dtype: np.dtype) -> tuple[float, float]:
    """Contrast limits from the dtype alone (never from reading data)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return (float(max(info.min, 0) if dtype.kind == "u" else info.min), float(info.max))
    return (0.0, 1.0)


def mag_extent(size_xyz, offset_xyz, factor_xyz) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(origin, shape) in mag-local voxels (z, y, x) of a mag-1 bounding box at ``factor``."""
    origin, shape = [], []
    for s, o, f in zip(size_xyz, offset_xyz, factor_xyz):
        lo = int(o // f)
        hi = int(-(-(o + s) // f))
        origin.append(lo)
        shape.append(max(hi - lo, 0))
    return tuple(origin[::-1]), tuple(shape[::-1])


def chunked(
    layer_size_xyz, offset_xyz, factor_xyz, chunk_xyz, dtype, read_chunk, key, channels=1, rgb=False
) -> ChunkedArray:
    """A :class:`ChunkedArray` presenting one mag of a layer's bounding box."""
    origin, shape = mag_extent(layer_size_xyz, offset_xyz, factor_xyz)
    layout = "zyxc" if rgb else ("zyx" if channels == 1 else "czyx")
    return ChunkedArray(
        shape, tuple(chunk_xyz)[::-1], dtype, read_chunk, key, channels=channels, origin_zyx=origin, layout=layout
    )
