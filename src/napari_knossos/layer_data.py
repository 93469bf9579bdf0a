"""napari adapter for volumes: Dataset → napari LayerData tuples (no Qt, no viewer).

Each mag is handed to napari as a :class:`LazyLevel` over the format's chunk-grid array:
napari slices a level twice (the visible tile, then the current plane) and materialises
with ``np.asarray``; ``LazyLevel`` composes those slicings and reads only the chunks of the
final region. Its ``chunks`` are the true chunk boundaries, so napari 0.9's chunk-aware
multiscale slicing widens a tile to whole cubes, not to a whole plane.

Why not one-chunk dask arrays as layer data (measured, napari 0.9.2 + dask 2026.8): dask
does not fuse napari's two successive slicings of a single-chunk array, so opening a
2^16-per-axis pyramid made napari request a 4 TiB block, and napari widens every tile to the
dask chunk (the whole plane). :func:`lazy_dask` still gives a dask array with an O(1)
graph for processing code.
"""

from __future__ import annotations

import hashlib

import dask.array as da
import numpy as np

from .formats.chunked import ArrayLikeMixin
from .formats.model import Dataset, Layer, default_contrast_limits

__all__ = ["LazyLevel", "lazy_dask", "layer_to_layer_data", "dataset_to_layer_data", "METADATA_KEY"]

METADATA_KEY = "napari_knossos"
UNITS = ("nm", "nm", "nm")
AXIS_LABELS = ("z", "y", "x")

# napari's colormap names for the tints formats use (KNOSSOS `_Color`, webKnossos colour)
_TINTS = {"white": "gray", "gray": "gray", "grey": "gray", "red": "red", "green": "green", "blue": "blue",
          "magenta": "magenta", "cyan": "cyan", "yellow": "yellow"}


def lazy_dask(array, name_hint: str) -> da.Array:
    """One-task dask array over a lazy array-like (graph size O(1) in the chunk count)."""
    token = hashlib.sha1(repr((name_hint, array.shape, str(array.dtype))).encode()).hexdigest()[:16]
    return da.from_array(
        array,
        chunks=array.shape,
        name=f"napari-knossos-{token}",
        meta=np.empty((0,) * array.ndim, dtype=array.dtype),
        inline_array=True,
    )


class LazyLevel(ArrayLikeMixin):
    """A lazily sliced view of an eager array-like (``shape``, ``dtype``, ``__getitem__``).

    Integer and positive-step slice keys compose without reading; ``np.asarray`` reads the
    final region with one ``__getitem__`` on the base array. Other keys read, then index.
    """

    def __init__(self, base, index: tuple | None = None):
        self.base = base
        # one entry per base axis: int (axis dropped) or range (kept)
        self._index = index if index is not None else tuple(range(n) for n in base.shape)
        self.dtype = np.dtype(base.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(r) for r in self._index if isinstance(r, range))

    @property
    def chunks(self):
        """Per-axis chunk sizes (dask form) of the base grid; None where unknown."""
        return getattr(self.base, "chunk_sizes", None) if self._index == tuple(range(n) for n in self.base.shape) else None

    def __repr__(self) -> str:
        return f"LazyLevel(shape={self.shape}, dtype={self.dtype}, base={self.base!r})"

    def _base_key(self) -> tuple:
        return tuple(r if isinstance(r, int) else slice(r.start, r.stop, r.step) if len(r) else slice(0, 0)
                     for r in self._index)

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.base[self._base_key()])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        simple = len(key) == self.ndim and all(
            isinstance(k, (int, np.integer)) or (isinstance(k, slice) and (k.step is None or k.step > 0))
            for k in key
        )
        if not simple:
            return np.asarray(self)[key]
        new, kept = [], iter(key)
        for r in self._index:
            if isinstance(r, int):
                new.append(r)
                continue
            k = next(kept)
            if isinstance(k, slice):
                new.append(r[k])
            else:
                i = int(k)
                if not -len(r) <= i < len(r):
                    raise IndexError(f"index {i} out of range for axis of size {len(r)}")
                new.append(r[i])
        return LazyLevel(self.base, tuple(new))


def _colormap(layer: Layer) -> str | None:
    if not layer.color:
        return None
    return _TINTS.get(str(layer.color).strip().lower())


def layer_to_layer_data(layer: Layer, dataset: Dataset) -> tuple:
    """(data, kwargs, layer_type) for one dataset layer."""
    vx, vy, vz = (float(v) for v in layer.voxel_size)
    scale = (vz, vy, vx)
    translate_nm = layer.extra.get("translate_nm_zyx")
    if translate_nm is None:
        ox, oy, oz = layer.offset
        translate_nm = (oz * vz, oy * vy, ox * vx)
    levels = [LazyLevel(m.array) for m in layer.mags]
    data = levels if len(levels) > 1 else levels[0]
    channel_axis = 0 if (layer.num_channels > 1 and not layer.rgb) else None
    metadata = {
        METADATA_KEY: {
            "source": dataset.source,
            "format": layer.format or dataset.format,
            "dataset": dataset.name,
            "layer": layer.name,
            "category": layer.category,
            "dtype": str(np.dtype(layer.dtype)),
            "voxel_size_nm_xyz": tuple(layer.voxel_size),
            "offset_xyz": tuple(layer.offset),
            "size_xyz": tuple(layer.size) if layer.size else None,
            "mags": [m.name for m in layer.mags],
            "mag_factors_xyz": [tuple(m.factor) for m in layer.mags],
            "largest_segment_id": layer.largest_segment_id,
            "model": layer,  # the live model for the editing tools
        }
    }
    kwargs = {
        "name": layer.name,
        "scale": scale,
        "translate": tuple(translate_nm),
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "metadata": metadata,
        "visible": layer.visible,
        "multiscale": len(levels) > 1,
    }
    if layer.is_segmentation:
        return data, kwargs, "labels"
    kwargs["contrast_limits"] = list(layer.contrast_limits or default_contrast_limits(layer.dtype))
    if layer.rgb:
        kwargs["rgb"] = True
        kwargs.pop("contrast_limits")
    elif channel_axis is not None:
        kwargs["channel_axis"] = channel_axis
        kwargs["name"] = [f"{layer.name} [c{i}]" for i in range(layer.num_channels)]
        kwargs["visible"] = [layer.visible] * layer.num_channels
        kwargs["metadata"] = [metadata] * layer.num_channels
    else:
        cmap = _colormap(layer)
        if cmap:
            kwargs["colormap"] = cmap
    return data, kwargs, "image"


def dataset_to_layer_data(dataset: Dataset) -> list[tuple]:
    """LayerData for every layer: images first, segmentations on top."""
    ordered = [l for l in dataset.layers if not l.is_segmentation] + [l for l in dataset.layers if l.is_segmentation]
    return [layer_to_layer_data(layer, dataset) for layer in ordered]
