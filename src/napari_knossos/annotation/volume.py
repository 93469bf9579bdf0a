"""Editable segmentation pyramids (pure Python + numpy/scipy; no napari, no Qt).

:class:`EditableVolume` puts an in-memory overlay over a segmentation layer (any
:class:`~napari_knossos.formats.model.Layer`, possibly remote and read-only) or over nothing
(a new, empty segmentation). Edits are kept per chunk of each mag; reads see them over the
base layer. Every edit keeps the mags consistent:

* painting at mag N writes the whole block of mag-1 voxels under each painted mag-N voxel;
* every other mag is then recomputed **only where its source changed**, from the next finer
  mag it is an integer multiple of (mag 1 at least), by mode (majority) downsampling with
  the rule of :func:`napari_knossos.formats.knossos_writer.downsample_mode`: the most
  frequent id of the block, ties to the **smallest** id (background 0 included), a block cut
  by the end of the data padded by repeating its last voxel. Anisotropic mags such as
  (2, 2, 1) work; voxels of unchanged blocks keep the value the dataset has, so a pyramid
  computed with another rule is never rewritten where nothing was edited;
* the painted mag-N voxels are then set to the painted value, so reading mag N back gives
  exactly what was painted (also over a pyramid that disagrees with its mag 1).

Coordinates: arrays are (z, y, x); mags are named by their integer factor (x, y, z) (an int
``n`` means ``(n, n, n)``). Positions are **global mag-local voxels** (z, y, x): voxel ``v``
of mag ``f`` covers the mag-1 voxels ``[v·f, (v+1)·f)``; index 0 of a mag's array is voxel
``array.origin_zyx``. ``bounds`` are mag-1 boxes ``((z0, y0, x0), (z1, y1, x1))``, stop
exclusive (the movement area intersected with the view). A tool refuses
(:class:`VolumeEditRefused`) when its seed or centre is outside the bounds; otherwise it
writes only mag-N voxels whose whole mag-1 block lies inside them (blocks cut by the end of
the data count as inside), so no mag-1 voxel outside the bounds is ever written.

Undo/redo: each tool call is one step that keeps, for every mag, the old values of the tight
box of voxels it changed (no full-volume snapshots); undo swaps them back exactly.

Saving: :meth:`EditableVolume.save_in_place` rewrites the touched chunks of the dataset
(formats.inplace), :meth:`~EditableVolume.save_to_kzip` stores KNOSSOS ``.seg.sz`` cubes in a
:class:`~.kzip.Annotation`, :meth:`~EditableVolume.save_to_volume_zip` writes a webKnossos
volume-annotation zip (formats.volume_zip). :meth:`~EditableVolume.from_kzip` and
:meth:`~EditableVolume.from_volume_zip` open such annotations as overlays of their dataset.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .editing import EditRefused

__all__ = [
    "EditRecord",
    "EditableVolume",
    "RegionChange",
    "VolumeEditRefused",
    "downsample_mode_by",
]

Vec = tuple[int, int, int]
Box = tuple[Vec, Vec]

KZIP_CUBE_XYZ = (128, 128, 128)
_SAVE_BATCH_BYTES = 256 * 1024**2


class VolumeEditRefused(EditRefused):
    """A segmentation edit outside the allowed box (movement area ∩ view); message for the status bar."""


class SegmentIdOutOfRange(VolumeEditRefused, ValueError):
    """An id the segmentation's voxel type cannot hold (refused, nothing written)."""


@dataclass(frozen=True)
class RegionChange:
    """Voxels changed inside the mag-1 box ``[start_zyx, stop_zyx)`` (every mag over it may have changed).

    ``reason``: ``"edit"``, ``"undo"`` or ``"redo"``.
    """

    start_zyx: Vec
    stop_zyx: Vec
    reason: str = "edit"


@dataclass(eq=False)
class EditRecord:
    """One undo step: ``kind`` (paint, erase, overpaint, fill, relabel, write), the ``mag`` painted at,
    the mag-1 box whose voxels (in some mag) changed and how many mag-1 voxels changed."""

    kind: str
    mag: Vec
    start_zyx: Vec = (0, 0, 0)
    stop_zyx: Vec = (0, 0, 0)
    voxels_changed: int = 0
    patches: list = field(default_factory=list, repr=False)  # (mag index, start zyx, values to restore)

    @property
    def changed(self) -> bool:
        return bool(self.patches)

    @property
    def nbytes(self) -> int:
        """Memory held for undo/redo."""
        return sum(p[2].nbytes for p in self.patches)


# ------------------------------------------------------------------------------ small box helpers
def _vec(v) -> Vec:
    return tuple(int(a) for a in v)


def _intersect(a: Box, b: Box) -> Box:
    lo = tuple(max(x, y) for x, y in zip(a[0], b[0]))
    hi = tuple(min(x, y) for x, y in zip(a[1], b[1]))
    return lo, hi


def _add(a: Sequence[int], b: Sequence[int]) -> Vec:
    return tuple(int(x) + int(y) for x, y in zip(a, b))


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return tuple(min(x, y) for x, y in zip(a[0], b[0])), tuple(max(x, y) for x, y in zip(a[1], b[1]))


def _empty(box: Box) -> bool:
    return any(hi <= lo for lo, hi in zip(*box))


def _slices(box: Box, origin: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(lo - o, hi - o) for lo, hi, o in zip(box[0], box[1], origin))


def _tight_box(mask: np.ndarray) -> tuple[Vec, Vec] | None:
    """Bounding box (start, stop) of the True voxels of a 3-D mask, relative to the mask, or None."""
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        lo.append(int(hits[0]))
        hi.append(int(hits[-1]) + 1)
    return tuple(lo), tuple(hi)


def _scale_box_down(box: Box, ratio: Sequence[int]) -> Box:
    """The voxels of a coarser grid (``ratio`` per axis) that overlap ``box``."""
    return (tuple(lo // r for lo, r in zip(box[0], ratio)), tuple(-(-hi // r) for hi, r in zip(box[1], ratio)))


def _strided(volume: np.ndarray, ratio: Sequence[int], offset: Sequence[int]) -> np.ndarray:
    return volume[tuple(slice(o, None, r) for o, r in zip(offset, ratio))]


def _block_any(mask: np.ndarray, ratio: Sequence[int]) -> np.ndarray:
    """Per ``ratio`` block of ``mask`` (shape a multiple of it): is any voxel True."""
    for axis, r in enumerate(ratio):
        if r > 1:
            parts = [mask[(slice(None),) * axis + (slice(i, None, r),)] for i in range(r)]
            mask = parts[0].copy()
            for part in parts[1:]:
                mask |= part
    return mask


def _mode_into(out: np.ndarray, src: np.ndarray, ratio: Sequence[int], where: np.ndarray) -> None:
    """``out[where]`` = mode of the ``ratio`` blocks of ``src`` (shape ``out.shape`` × ratio)."""
    first = _strided(src, ratio, (0, 0, 0))
    uniform = where.copy()
    for offset in itertools.product(*(range(r) for r in ratio)):
        if any(offset):
            uniform &= _strided(src, ratio, offset) == first
    np.copyto(out, first, where=uniform)
    zi, yi, xi = np.nonzero(where & ~uniform)
    if zi.size:
        (z, y, x), (rz, ry, rx) = src.shape, ratio
        view = np.ascontiguousarray(src).reshape(z // rz, rz, y // ry, ry, x // rx, rx)
        blocks = view[zi, :, yi, :, xi, :].reshape(zi.size, -1)
        out[zi, yi, xi] = _block_mode(blocks)


def _block_mode(blocks: np.ndarray) -> np.ndarray:
    """Most frequent value of each row, ties to the smallest value."""
    out = blocks[:, 0].copy()
    if blocks.shape[1] == 1 or blocks.shape[0] == 0:
        return out
    mixed = np.flatnonzero((blocks != blocks[:, :1]).any(axis=1))
    if mixed.size:
        values = np.sort(blocks[mixed], axis=1)
        m, k = values.shape
        starts = np.ones((m, k), bool)
        starts[:, 1:] = values[:, 1:] != values[:, :-1]
        run = np.cumsum(starts.ravel()) - 1
        lengths = np.bincount(run)[run].reshape(m, k)
        best = np.argmax(lengths, axis=1)  # first maximal run: the smallest of the tied values
        out[mixed] = values[np.arange(m), best]
    return out


def downsample_mode_by(volume_zyx: np.ndarray, ratio_zyx: Sequence[int]) -> np.ndarray:
    """Downsample by ``ratio_zyx`` per axis, each block → its most frequent value, ties to the smallest.

    The end of an axis that is not a multiple of the ratio is padded by repeating the last voxel, so
    for ratio (2, 2, 2) this equals :func:`~napari_knossos.formats.knossos_writer.downsample_mode`.
    """
    volume = np.asarray(volume_zyx)
    ratio = _vec(ratio_zyx)
    if volume.ndim != 3 or min(ratio) < 1:
        raise ValueError(f"need a 3-D (z, y, x) volume and positive ratios, got {volume.shape} and {ratio_zyx}")
    pad = [(0, -s % r) for s, r in zip(volume.shape, ratio)]
    if any(p for _, p in pad):
        volume = np.pad(volume, pad, mode="edge")
    shape = tuple(s // r for s, r in zip(volume.shape, ratio))
    out = np.empty(shape, volume.dtype)
    _mode_into(out, volume, ratio, np.ones(shape, bool))
    return out


@lru_cache(maxsize=64)
def _brush_footprint(shape: str, radius_zyx: tuple[float, float, float]) -> np.ndarray:
    """Boolean (z, y, x) footprint centred in an array of side 2·floor(r)+1 per axis."""
    half = [math.floor(r) for r in radius_zyx]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    if shape == "square":
        mask = np.ones(tuple(2 * h + 1 for h in half), bool)
    else:
        dist = sum((g.astype(float) / r) ** 2 if r > 0 else np.zeros_like(g, float) for g, r in zip(grids, radius_zyx))
        mask = np.broadcast_to(dist <= 1.0 + 1e-9, tuple(2 * h + 1 for h in half)).copy()
    mask.flags.writeable = False
    return mask


_STRUCTURE_6 = None


def _component(mask: np.ndarray, seed: Sequence[int]) -> np.ndarray:
    """The 6-connected component of ``mask`` holding ``seed`` (a bool array of mask's shape)."""
    from scipy import ndimage

    global _STRUCTURE_6
    if _STRUCTURE_6 is None:
        _STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)
    labels, _ = ndimage.label(mask, structure=_STRUCTURE_6)
    return labels == labels[tuple(seed)]


_MAG_FOLDER = re.compile(r"mag(\d+)$")


# ------------------------------------------------------------------------------------ the model
class EditableVolume:
    """A segmentation pyramid plus in-memory edits per chunk of every mag (see the module docstring).

    ``layer=None`` makes a new, empty segmentation of mag-1 extent ``shape_zyx`` at ``offset_xyz``
    with the given ``mags`` (factors (x, y, z); mag (1, 1, 1) first), ``dtype`` and ``voxel_size``
    (nm, x y z). ``chunk_zyx`` is the size of the in-memory edit chunks (all mags). Undo keeps at most
    ``undo_limit`` steps and about ``undo_bytes`` of old values (the newest step always).
    """

    max_region_voxels = 512**3  # fill / relabel refuse larger regions (pass the view as bounds)

    def __init__(
        self,
        layer=None,
        *,
        shape_zyx: Sequence[int] | None = None,
        dtype=np.uint64,
        mags: Sequence = ((1, 1, 1),),
        voxel_size: Sequence[float] = (1, 1, 1),
        chunk_zyx: Sequence[int] = (32, 32, 32),
        offset_xyz: Sequence[int] = (0, 0, 0),
        undo_limit: int = 100,
        undo_bytes: int = 2 * 1024**3,
    ):
        from ..formats.model import mag_extent

        self.layer = layer
        self.chunk_zyx: Vec = _vec(chunk_zyx)
        self.undo_limit = int(undo_limit)
        self.undo_bytes = int(undo_bytes)
        if layer is not None:
            label = f"layer {layer.name!r} ({layer.source or layer.format})"
            if int(getattr(layer, "num_channels", 1)) != 1:
                raise ValueError(f"{label}: a segmentation has one channel, this one has {layer.num_channels}")
            self.dtype = np.dtype(layer.dtype)
            self.voxel_size = tuple(float(v) for v in layer.voxel_size)
            self.mags = [self._int_factor(m.factor, label) for m in layer.mags]
            self._arrays = [m.array for m in layer.mags]
            self._extents = []
            for mag, factor in zip(layer.mags, self.mags):
                arr = mag.array
                if hasattr(arr, "origin_zyx"):
                    origin = _vec(arr.origin_zyx)
                elif layer.size is not None:
                    origin = mag_extent(layer.size, layer.offset, factor)[0]
                else:
                    origin = (0, 0, 0)
                shape = _vec(tuple(arr.shape)[-3:])
                self._extents.append((origin, tuple(o + s for o, s in zip(origin, shape))))
            self.largest_id = int(layer.largest_segment_id or 0)
        else:
            label = "new segmentation"
            if shape_zyx is None:
                raise ValueError("a new segmentation overlay needs shape_zyx (its mag-1 extent)")
            self.dtype = np.dtype(dtype)
            self.voxel_size = tuple(float(v) for v in voxel_size)
            self.mags = [self._int_factor(m, label) for m in mags]
            self._arrays = [None] * len(self.mags)
            size_xyz = tuple(int(s) for s in shape_zyx)[::-1]
            self._extents = []
            for factor in self.mags:
                origin, shape = mag_extent(size_xyz, tuple(offset_xyz), factor)
                self._extents.append((origin, tuple(o + s for o, s in zip(origin, shape))))
            self.largest_id = 0
        if self.dtype.kind not in "ui":
            raise ValueError(f"{label}: segmentation ids must be integers, not {self.dtype}")
        if not self.mags or self.mags[0] != (1, 1, 1):
            raise ValueError(f"{label}: the first mag must be (1, 1, 1), got {self.mags[:1]}")
        if len(set(self.mags)) != len(self.mags):
            raise ValueError(f"{label}: duplicate mags {self.mags}")
        self._order, self._source = self._cascade_plan()
        self._overlay: list[dict[Vec, np.ndarray]] = [{} for _ in self.mags]
        self._undo: list[EditRecord] = []
        self._redo: list[EditRecord] = []
        self._subscribers: list[Callable[[RegionChange], None]] = []
        self._version = 0
        self._saved_version = 0
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        base = f"layer {self.layer.name!r}" if self.layer is not None else "new segmentation"
        edited = sum(len(o) for o in self._overlay)
        return (f"EditableVolume({base}, mags {self.mags}, {self.dtype}, {edited} edited chunks, "
                f"{len(self._undo)} undo steps{', unsaved' if self.dirty else ''})")

    # -------------------------------------------------------------------------------- basics
    @staticmethod
    def _int_factor(factor, label: str) -> Vec:
        f = np.broadcast_to(np.asarray(factor, float), 3)
        if np.any(f < 1) or np.any(f != np.round(f)):
            raise ValueError(f"{label}: mag {tuple(factor)} is not a positive integer factor; cannot edit it")
        return _vec(f)

    def _cascade_plan(self):
        """Mags in recompute order (by size) and, for each, the finer mag it is downsampled from."""
        order = sorted(range(len(self.mags)), key=lambda i: (math.prod(self.mags[i]), self.mags[i][::-1]))
        source: dict[int, int] = {}
        for pos, j in enumerate(order[1:], start=1):
            fj = self.mags[j]
            candidates = [k for k in order[:pos] if all(a % b == 0 for a, b in zip(fj, self.mags[k]))]
            source[j] = max(candidates, key=lambda k: (math.prod(self.mags[k]), order.index(k)))
        return order, source

    def mag_index(self, mag) -> int:
        """Index into :attr:`mags` of a mag given as factor (x, y, z) or an int (isotropic)."""
        factor = _vec(np.broadcast_to(np.asarray(mag, int), 3))
        try:
            return self.mags.index(factor)
        except ValueError:
            raise KeyError(f"no mag {factor} (x, y, z); the segmentation has {self.mags}") from None

    def _factor_zyx(self, mi: int) -> Vec:
        return self.mags[mi][::-1]

    def extent(self, mag) -> Box:
        """(start, stop) of the mag's voxels, global mag-local (z, y, x)."""
        return self._extents[self.mag_index(mag)]

    @property
    def bounds(self) -> Box:
        """The whole mag-1 extent (the default ``bounds`` of the tools)."""
        return self._extents[0]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def dirty(self) -> bool:
        """True when the edits differ from what was last saved (or loaded)."""
        return self._version != self._saved_version

    def subscribe(self, callback: Callable[[RegionChange], None]) -> None:
        """Call ``callback(RegionChange)`` after every edit, undo and redo."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[RegionChange], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _notify(self, box: Box, reason: str) -> None:
        change = RegionChange(box[0], box[1], reason)
        for callback in list(self._subscribers):
            callback(change)

    def touched_chunks(self, mag, chunk_zyx: Sequence[int] | None = None) -> set[Vec]:
        """Grid indices (z, y, x) of the chunks of ``chunk_zyx`` (default: the edit chunks) holding edits at ``mag``.

        The grid starts at global voxel 0 of that mag (the file grid of every supported format)."""
        mi = self.mag_index(mag)
        mine = self.chunk_zyx
        other = mine if chunk_zyx is None else _vec(chunk_zyx)
        if other == mine:
            return set(self._overlay[mi])
        out: set[Vec] = set()
        for idx in self._overlay[mi]:
            box = (tuple(i * c for i, c in zip(idx, mine)), tuple((i + 1) * c for i, c in zip(idx, mine)))
            box = _intersect(box, self._extents[mi])
            if _empty(box):
                continue
            lo, hi = _scale_box_down(box, other)
            out.update(itertools.product(*(range(a, b) for a, b in zip(lo, hi))))
        return out

    # --------------------------------------------------------------------------------- reading
    def _read_base(self, mi: int, box: Box) -> np.ndarray:
        """Base layer values of a global box; zeros outside the mag's extent."""
        shape = tuple(hi - lo for lo, hi in zip(*box))
        out = np.zeros(shape, self.dtype)
        inner = _intersect(box, self._extents[mi])
        arr = self._arrays[mi]
        if arr is None or _empty(inner):
            return out
        origin = self._extents[mi][0]
        if hasattr(arr, "read_region"):  # a fresh array of its own
            start = tuple(a - o for a, o in zip(inner[0], origin))
            stop = tuple(b - o for b, o in zip(inner[1], origin))
            data = arr.read_region(start, stop)
            data = data[0] if data.ndim == 4 else data
        else:  # may be a view of the caller's array
            data = np.array(arr[_slices(inner, origin)], copy=True)
        if data.shape == shape:
            return data if data.dtype == self.dtype else data.astype(self.dtype)
        out[_slices(inner, box[0])] = data
        return out

    def _chunk_ranges(self, box: Box):
        return [range(lo // c, (hi - 1) // c + 1) for lo, hi, c in zip(box[0], box[1], self.chunk_zyx)]

    def _chunk_box(self, idx: Vec) -> Box:
        return (tuple(i * c for i, c in zip(idx, self.chunk_zyx)), tuple((i + 1) * c for i, c in zip(idx, self.chunk_zyx)))

    def _read(self, mi: int, box: Box) -> np.ndarray:
        overlay = self._overlay[mi]
        hits = []
        if overlay and not _empty(box):
            for idx in itertools.product(*self._chunk_ranges(box)):
                chunk = overlay.get(idx)
                if chunk is not None:
                    hits.append((idx, chunk))
        n_chunks = math.prod(len(r) for r in self._chunk_ranges(box)) if not _empty(box) else 0
        inside = _intersect(box, self._extents[mi]) == box
        if hits and len(hits) == n_chunks and inside:
            out = np.empty(tuple(hi - lo for lo, hi in zip(*box)), self.dtype)
        else:
            out = self._read_base(mi, box)
        for idx, chunk in hits:
            cbox = self._chunk_box(idx)
            part = _intersect(cbox, box)
            out[_slices(part, box[0])] = chunk[_slices(part, cbox[0])]
        return out

    def read(self, mag, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> np.ndarray:
        """The edited values of ``[start, stop)`` (global mag-local voxels, z y x); zeros outside the data."""
        with self._lock:
            return self._read(self.mag_index(mag), (_vec(start_zyx), _vec(stop_zyx)))

    # --------------------------------------------------------------------------------- writing
    def _set(self, mi: int, start: Vec, values: np.ndarray) -> None:
        """Store ``values`` at ``start`` (clipped to the mag's extent) in the overlay; no undo, no notification."""
        box = (start, tuple(s + n for s, n in zip(start, values.shape)))
        box = _intersect(box, self._extents[mi])
        if _empty(box):
            return
        overlay = self._overlay[mi]
        for idx in itertools.product(*self._chunk_ranges(box)):
            cbox = self._chunk_box(idx)
            part = _intersect(cbox, box)
            chunk = overlay.get(idx)
            if chunk is None:
                if part == cbox:  # fully overwritten: no need to read the base
                    chunk = np.empty(self.chunk_zyx, self.dtype)
                else:
                    chunk = np.ascontiguousarray(self._read_base(mi, cbox))
                overlay[idx] = chunk
            chunk[_slices(part, cbox[0])] = values[_slices(part, start)]

    def _allowed_box(self, mi: int, bounds) -> Box:
        """Mag-local voxels whose whole mag-1 block lies in ``bounds`` (blocks cut by the data's end count as in)."""
        ext1 = self._extents[0]
        if bounds is None:
            b = ext1
        else:
            b = (_vec(bounds[0]), _vec(bounds[1]))
            if len(b[0]) != 3 or len(b[1]) != 3:
                raise ValueError(f"bounds must be ((z0, y0, x0), (z1, y1, x1)), got {bounds!r}")
            b = _intersect(b, ext1)
        if _empty(b):
            raise VolumeEditRefused("Edit refused: the movement area and the view do not overlap the segmentation")
        f = self._factor_zyx(mi)
        lo = tuple(s // k if s <= e else -(-s // k) for s, e, k in zip(b[0], ext1[0], f))
        hi = tuple(-(-s // k) if s >= e else s // k for s, e, k in zip(b[1], ext1[1], f))
        return _intersect((lo, hi), self._extents[mi])

    def _check_value(self, value) -> int:
        info = np.iinfo(self.dtype)
        v = int(value)
        if not info.min <= v <= info.max:
            raise SegmentIdOutOfRange(f"segment id {value} does not fit the segmentation's {self.dtype}")
        return v

    def _edit(self, kind: str, mi: int, start: Vec, values, mask: np.ndarray | None, bounds,
              condition: Callable[[np.ndarray], np.ndarray] | None = None,
              known: tuple[Vec, np.ndarray] | None = None) -> EditRecord:
        """Paint ``values`` (array or scalar) where ``mask`` at mag ``mi`` from ``start``; record one undo step.

        ``condition(old mag-1 values) -> bool mask`` restricts the mag-1 voxels written (erase only
        selected ids, overpaint); then the mag-N values are not forced but recomputed. ``known``:
        (start, current mag-1 values) the caller already read, to avoid reading them again."""
        record = EditRecord(kind, self.mags[mi])
        if mask is not None:
            mask = np.asarray(mask, bool)
            shape = mask.shape
        else:
            shape = np.shape(values)
        if len(shape) != 3:
            raise ValueError(f"values/mask must be 3-D (z, y, x), got shape {shape}")
        allowed = self._allowed_box(mi, bounds)
        box_n = _intersect((start, tuple(s + n for s, n in zip(start, shape))), allowed)
        if _empty(box_n):
            return record
        sl = _slices(box_n, start)
        scalar = np.ndim(values) == 0
        if scalar:
            vals_n = np.asarray(values, self.dtype)
        else:
            values = np.asarray(values)
            if values.shape != shape:
                raise ValueError(f"values of shape {values.shape} do not match the mask's {shape}")
            vals_n = values[sl].astype(self.dtype, copy=False)
        mask_n = None if mask is None else mask[sl]
        if mask_n is not None and not mask_n.any():
            return record

        # mag 1: the block of mag-1 voxels under each painted voxel
        f = self._factor_zyx(mi)
        full1 = (tuple(a * k for a, k in zip(box_n[0], f)), tuple(b * k for b, k in zip(box_n[1], f)))
        bounds1 = self._extents[0] if bounds is None else _intersect((_vec(bounds[0]), _vec(bounds[1])), self._extents[0])
        box1 = _intersect(_intersect(full1, self._extents[0]), bounds1)
        if _empty(box1):
            return record
        crop = _slices(box1, full1[0])
        if known is not None and _intersect(box1, (known[0], _add(known[0], known[1].shape))) == box1:
            old1 = known[1][_slices(box1, known[0])]
        else:
            old1 = self._read(0, box1)

        def up(a):
            for axis, k in enumerate(f):
                if k > 1:
                    a = np.repeat(a, k, axis=axis)
            return a[crop]

        mask1 = None if mask_n is None else up(mask_n)
        if condition is not None:
            cond = condition(old1)
            mask1 = cond if mask1 is None else mask1 & cond
        if scalar:
            new1 = old1.copy()
            if mask1 is None:
                new1[...] = vals_n
            else:
                new1[mask1] = vals_n
        else:
            vals1 = up(vals_n)
            new1 = vals1.copy() if mask1 is None else np.where(mask1, vals1, old1)
        changes: dict[int, tuple[Vec, np.ndarray]] = {}
        self._apply(0, box1[0], old1, new1, changes, record)
        forced = None
        if condition is None and mi != 0:
            forced = (box_n, vals_n, mask_n)
        self._cascade(changes, skip={0}, forced_mag=mi, forced=forced, record=record)
        return self._commit(record)

    def _apply(self, mi: int, start: Vec, old: np.ndarray, new: np.ndarray, changes: dict, record) -> None:
        """Store ``new`` where it differs from ``old``; note the change and the undo patch."""
        changed = new != old
        tight = _tight_box(changed)
        if tight is None:
            return
        changes[mi] = (start, changed)
        lo, hi = tight
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        at = tuple(s + a for s, a in zip(start, lo))
        if record is not None:
            kept = old[sl]
            record.patches.append((mi, at, kept.copy() if 2 * kept.size < old.size else kept))
            if mi == 0:
                record.voxels_changed += int(np.count_nonzero(changed[sl]))
        self._set(mi, at, np.ascontiguousarray(new[sl]))
        f = self._factor_zyx(mi)
        box1 = (tuple(s * k for s, k in zip(at, f)), tuple((s + n) * k for s, n, k in zip(at, changed[sl].shape, f)))
        if record is not None:
            earlier = (record.start_zyx, record.stop_zyx) if len(record.patches) > 1 else None
            record.start_zyx, record.stop_zyx = _union(earlier, _intersect(box1, self._extents[0]))

    def _cascade(self, changes: dict, skip: set, forced_mag: int | None = None, forced=None, record=None) -> None:
        """Recompute every mag not in ``skip`` where its source mag changed (``changes``), coarse after fine."""
        for j in self._order[1:]:
            if j in skip:
                continue
            k = self._source[j]
            ratio = tuple(a // b for a, b in zip(self._factor_zyx(j), self._factor_zyx(k)))
            region = None
            if k in changes:
                kstart, kchanged = changes[k]
                lo, hi = _tight_box(kchanged)
                kbox = (tuple(s + a for s, a in zip(kstart, lo)), tuple(s + b for s, b in zip(kstart, hi)))
                region = _scale_box_down(kbox, ratio)
            if j == forced_mag and forced is not None:
                region = _union(region, forced[0])
            if region is None:
                continue
            region = _intersect(region, self._extents[j])
            if _empty(region):
                continue
            old = self._read(j, region)
            new = old.copy()
            if k in changes:
                src_full = (tuple(a * r for a, r in zip(region[0], ratio)), tuple(b * r for b, r in zip(region[1], ratio)))
                src_box = _intersect(src_full, self._extents[k])
                if not _empty(src_box):
                    pad = [(a - c, d - b) for a, b, c, d in zip(src_box[0], src_box[1], src_full[0], src_full[1])]
                    src = self._read(k, src_box)
                    need = np.zeros(tuple(b - a for a, b in zip(*src_full)), bool)
                    cbox = _intersect(src_full, (kstart, tuple(s + n for s, n in zip(kstart, kchanged.shape))))
                    if not _empty(cbox):
                        need[_slices(cbox, src_full[0])] = kchanged[_slices(cbox, kstart)]
                    need_blocks = _block_any(need, ratio)
                    if need_blocks.any():
                        if any(p for pair in pad for p in pair):
                            src = np.pad(src, pad, mode="edge")
                        _mode_into(new, src, ratio, need_blocks)
            if j == forced_mag and forced is not None:
                fbox, fvals, fmask = forced
                fbox = _intersect(fbox, region)
                target = new[_slices(fbox, region[0])]
                if fmask is None:
                    target[...] = fvals if np.ndim(fvals) == 0 else fvals[_slices(fbox, forced[0][0])]
                elif np.ndim(fvals) == 0:
                    target[fmask[_slices(fbox, forced[0][0])]] = fvals
                else:
                    sl = _slices(fbox, forced[0][0])
                    np.copyto(target, fvals[sl], where=fmask[sl])
            self._apply(j, region[0], old, new, changes, record)

    def _commit(self, record: EditRecord) -> EditRecord:
        if not record.changed:
            return record
        self._undo.append(record)
        if len(self._undo) > self.undo_limit > 0:
            del self._undo[0]
        total = sum(r.nbytes for r in self._undo)
        while len(self._undo) > 1 and total > self.undo_bytes:  # the newest step is always kept
            total -= self._undo.pop(0).nbytes
        self._redo.clear()
        self._version += 1
        self._notify((record.start_zyx, record.stop_zyx), "edit")
        return record

    # ----------------------------------------------------------------------------------- tools
    def write(self, mag, start_zyx: Sequence[int], values: np.ndarray, mask: np.ndarray | None = None, *,
              bounds=None, kind: str = "write") -> EditRecord:
        """Write ``values`` (z, y, x) at ``start_zyx`` of ``mag`` (where ``mask``); one undo step.

        Voxels outside ``bounds`` (mag-1 box) are silently not written (the napari adapter's window
        may reach past the movement area)."""
        values = np.asarray(values)
        if values.ndim != 3:
            raise ValueError(f"values must be a 3-D (z, y, x) array, got shape {values.shape}")
        if values.size and values.dtype.kind in "ui":
            lo, hi = values.min(), values.max()
            self._check_value(lo)
            self._check_value(hi)
        with self._lock:
            record = self._edit(kind, self.mag_index(mag), _vec(start_zyx), values, mask, bounds)
            if record.changed:
                self.largest_id = max(self.largest_id, int(values.max()))
            return record

    def _check_region_size(self, region: Box, what: str) -> None:
        n = math.prod(max(b - a, 0) for a, b in zip(*region))
        if n > self.max_region_voxels:
            raise VolumeEditRefused(f"{what} refused: the region of {n:,} voxels is too large; limit it to the view "
                                    f"or a movement area (at most {self.max_region_voxels:,} voxels)")

    def _refuse_outside(self, mi: int, point: Vec, bounds, what: str) -> Box:
        allowed = self._allowed_box(mi, bounds)
        if _empty(allowed) or not all(lo <= p < hi for p, lo, hi in zip(point, *allowed)):
            raise VolumeEditRefused(f"{what} refused: {point[::-1]} (x, y, z, mag {self.mags[mi]}) is outside the "
                                    f"movement area / view")
        return allowed

    def brush(self, mag, center_zyx: Sequence[int], radius_vox, value: int, *, shape: str = "round", dims: int = 2,
              plane_axis: int = 0, mode: str = "paint", erase_only: set[int] | None = None,
              bounds=None) -> EditRecord:
        """One brush stab at ``center_zyx`` (mag-local voxels of ``mag``).

        ``radius_vox``: radius in voxels of that mag, a number or (rz, ry, rx) for an ellipsoid; a
        round brush takes the voxels with Σ(d/r)² ≤ 1, a square one the box of side 2·⌊r⌋+1.
        ``dims=2`` paints in the plane orthogonal to ``plane_axis`` (0 = z: the xy plane), 3 a ball/cube.
        ``mode``: ``paint`` writes ``value``; ``erase`` writes 0 (only over ids in ``erase_only`` if
        given); ``overpaint`` writes ``value`` but never onto background 0 (decided per mag-1 voxel).
        """
        if shape not in ("round", "square"):
            raise ValueError(f"brush shape must be 'round' or 'square', not {shape!r}")
        if dims not in (2, 3):
            raise ValueError(f"brush dims must be 2 or 3, not {dims!r}")
        if mode not in ("paint", "erase", "overpaint"):
            raise ValueError(f"brush mode must be 'paint', 'erase' or 'overpaint', not {mode!r}")
        radius = [float(r) for r in np.broadcast_to(np.asarray(radius_vox, float), 3)]
        if min(radius) < 0:
            raise ValueError(f"brush radius must not be negative, got {radius_vox!r}")
        if dims == 2:
            radius[int(plane_axis)] = 0.0
        value = 0 if mode == "erase" else self._check_value(value)
        center = _vec(center_zyx)
        with self._lock:
            mi = self.mag_index(mag)
            self._refuse_outside(mi, center, bounds, "Brush")
            footprint = _brush_footprint(shape, tuple(radius))
            start = tuple(c - s // 2 for c, s in zip(center, footprint.shape))
            condition = None
            if mode == "erase" and erase_only is not None:
                ids = np.array(sorted({int(i) for i in erase_only}), dtype=self.dtype)

                def condition(old):
                    return np.isin(old, ids)
            elif mode == "overpaint":
                def condition(old):
                    return old != 0
            record = self._edit(mode, mi, start, value, footprint, bounds, condition)
            if record.changed:
                self.largest_id = max(self.largest_id, value)
            return record

    def fill(self, mag, seed_zyx: Sequence[int], value: int, *, dims: int = 3, plane_axis: int = 0,
             bounds=None) -> EditRecord:
        """Flood fill the 6-connected region of the seed's id with ``value``, inside ``bounds``.

        ``dims=2`` fills only the seed's plane orthogonal to ``plane_axis`` (4-connected there).
        Works on the values seen at ``mag``; each filled voxel writes its whole mag-1 block."""
        if dims not in (2, 3):
            raise ValueError(f"fill dims must be 2 or 3, not {dims!r}")
        value = self._check_value(value)
        seed = _vec(seed_zyx)
        with self._lock:
            mi = self.mag_index(mag)
            region = self._refuse_outside(mi, seed, bounds, "Fill")
            if dims == 2:
                a = int(plane_axis)
                lo, hi = list(region[0]), list(region[1])
                lo[a], hi[a] = seed[a], seed[a] + 1
                region = (tuple(lo), tuple(hi))
            self._check_region_size(region, "Fill")
            data = self._read(mi, region)
            local = tuple(s - o for s, o in zip(seed, region[0]))
            seed_id = data[local]
            if int(seed_id) == value:
                return EditRecord("fill", self.mags[mi])
            component = _component(data == seed_id, local)
            lo, hi = _tight_box(component)
            component = component[tuple(slice(a, b) for a, b in zip(lo, hi))]
            start = tuple(o + a for o, a in zip(region[0], lo))
            known = (region[0], data) if mi == 0 else None
            record = self._edit("fill", mi, start, value, component, bounds, known=known)
            if record.changed:
                self.largest_id = max(self.largest_id, value)
            return record

    def relabel(self, ids, new_id: int, *, bounds) -> EditRecord:
        """Replace the ids ``ids`` by ``new_id`` at mag 1 inside ``bounds`` (a merge in the voxels); one undo step."""
        new_id = self._check_value(new_id)
        ids = np.asarray(sorted({int(i) for i in np.atleast_1d(ids)}), dtype=self.dtype)
        with self._lock:
            region = self._allowed_box(0, bounds)
            self._check_region_size(region, "Relabel")
            data = self._read(0, region)
            mask = np.isin(data, ids)
            tight = _tight_box(mask)
            if tight is None:
                return EditRecord("relabel", (1, 1, 1))
            lo, hi = tight
            start = tuple(o + a for o, a in zip(region[0], lo))
            record = self._edit("relabel", 0, start, new_id, mask[tuple(slice(a, b) for a, b in zip(lo, hi))], bounds,
                                known=(region[0], data))
            if record.changed:
                self.largest_id = max(self.largest_id, new_id)
            return record

    # ------------------------------------------------------------------------------- undo/redo
    def _swap(self, record: EditRecord) -> None:
        swapped = []
        for mi, start, values in reversed(record.patches):
            box = (start, tuple(s + n for s, n in zip(start, values.shape)))
            swapped.append((mi, start, self._read(mi, box)))
            self._set(mi, start, values)
        record.patches = swapped[::-1]

    @contextlib.contextmanager
    def stroke(self):
        """Edits made inside are one undo step (a brush drag: one stab per mouse move)."""
        before = self._undo[-1] if self._undo else None
        try:
            yield
        finally:
            with self._lock:
                at = next((i + 1 for i in range(len(self._undo) - 1, -1, -1) if self._undo[i] is before), 0)
                records = self._undo[at:]
                if len(records) > 1:
                    first = records[0]
                    for record in records[1:]:
                        first.patches.extend(record.patches)
                        first.start_zyx = tuple(min(a, b) for a, b in zip(first.start_zyx, record.start_zyx))
                        first.stop_zyx = tuple(max(a, b) for a, b in zip(first.stop_zyx, record.stop_zyx))
                        first.voxels_changed += record.voxels_changed
                    del self._undo[at + 1:]

    def undo(self) -> EditRecord | None:
        """Undo the last edit (exactly, every mag); returns it, or None when there is nothing to undo."""
        with self._lock:
            if not self._undo:
                return None
            record = self._undo.pop()
            self._swap(record)
            self._redo.append(record)
            self._version += 1
        self._notify((record.start_zyx, record.stop_zyx), "undo")
        return record

    def redo(self) -> EditRecord | None:
        """Redo the last undone edit; returns it, or None."""
        with self._lock:
            if not self._redo:
                return None
            record = self._redo.pop()
            self._swap(record)
            self._undo.append(record)
            self._version += 1
        self._notify((record.start_zyx, record.stop_zyx), "redo")
        return record

    # ----------------------------------------------------------------------------------- saving
    def _file_chunk(self, mi: int, idx: Vec, chunk_zyx: Vec) -> np.ndarray:
        """A full chunk of the file grid: the base chunk (also beyond the extent) with the edits over it."""
        box = (tuple(i * c for i, c in zip(idx, chunk_zyx)), tuple((i + 1) * c for i, c in zip(idx, chunk_zyx)))
        arr = self._arrays[mi]
        origin = self._extents[mi][0]
        if arr is not None and hasattr(arr, "read_region"):
            out = arr.read_region(tuple(a - o for a, o in zip(box[0], origin)),
                                  tuple(b - o for b, o in zip(box[1], origin)))[0].copy()
        else:
            out = self._read_base(mi, box).copy()
        inner = _intersect(box, self._extents[mi])
        if not _empty(inner):
            overlay = self._overlay[mi]
            for oidx in itertools.product(*self._chunk_ranges(inner)):
                chunk = overlay.get(oidx)
                if chunk is not None:
                    cbox = self._chunk_box(oidx)
                    part = _intersect(cbox, inner)
                    out[_slices(part, box[0])] = chunk[_slices(part, cbox[0])]
        return out

    def edited_chunks(self, mag, chunk_zyx: Sequence[int]) -> Iterator[tuple[Vec, np.ndarray]]:
        """``(grid index, full chunk)`` of every chunk of ``chunk_zyx`` (grid from global voxel 0 of ``mag``) that
        holds edits: the base chunk (also its part beyond the layer's bounding box) with the edits over it."""
        mi = self.mag_index(mag)
        grid = _vec(chunk_zyx)
        with self._lock:
            for idx in sorted(self.touched_chunks(self.mags[mi], grid)):
                yield idx, self._file_chunk(mi, idx, grid)

    def save_in_place(self) -> int:
        """Write the edited chunks of every mag back into the dataset; returns the number of chunks written.

        Raises formats.inplace.ReadOnlyDatasetError (before writing anything) when the dataset
        cannot be written. After a successful save the edits live in the dataset and the in-memory
        chunks are dropped; undo still works (it edits again)."""
        if self.layer is None:
            raise ValueError("a new segmentation has no dataset to write into; save it into an annotation "
                             "(.k.zip or webKnossos volume zip)")
        from ..formats.inplace import chunk_writer

        with self._lock:
            todo = [mi for mi in range(len(self.mags)) if self._overlay[mi]]
            writers = {mi: chunk_writer(self.layer, self.mags[mi]) for mi in todo}
            written = 0
            for mi in todo:
                writer = writers[mi]
                batch: dict[Vec, np.ndarray] = {}
                nbytes = 0
                for idx, chunk in self.edited_chunks(self.mags[mi], writer.chunk_zyx):
                    batch[idx] = chunk
                    nbytes += chunk.nbytes
                    if nbytes >= _SAVE_BATCH_BYTES:
                        writer.write_chunks(batch)
                        written += len(batch)
                        batch, nbytes = {}, 0
                if batch:
                    writer.write_chunks(batch)
                    written += len(batch)
                self._overlay[mi].clear()
            self._saved_version = self._version
        return written

    def kzip_mag_numbers(self) -> dict[int, int]:
        """mag index → the ``M`` of KNOSSOS cube names ``{EXP}_mag{M}x..``: the KNOSSOS mag folder number,
        else the factor of an isotropic mag. Anisotropic mags of other formats have no KNOSSOS name."""
        folders = (self.layer.extra.get("mag_folders") if self.layer is not None else None) or []
        out = {}
        for mi, factor in enumerate(self.mags):
            match = _MAG_FOLDER.search(folders[mi]) if mi < len(folders) else None
            if match:
                out[mi] = int(match[1])
            elif len(set(factor)) == 1:
                out[mi] = factor[0]
        return out

    def _kzip_cube_xyz(self) -> Vec:
        if self.layer is not None and self.layer.extra.get("cube_shape_xyz"):
            return _vec(self.layer.extra["cube_shape_xyz"])
        return KZIP_CUBE_XYZ

    def save_to_kzip(self, annotation, experiment: str | None = None) -> int:
        """Store the touched cubes of every mag as ``.seg.sz`` cubes in ``annotation.cubes``; returns their number.

        Cubes are the dataset's KNOSSOS cubes (128³ unless the KNOSSOS layer says otherwise), whole
        (edits over the base values), uint64. ``experiment`` (default: the annotation's, else the
        KNOSSOS dataset's) names the members. Mags without a KNOSSOS name are skipped with a warning;
        :meth:`from_kzip` recomputes them."""
        from .kzip import SegmentationCube

        exp = experiment or annotation.experiment or annotation.skeleton.parameters.experiment
        if not exp and self.layer is not None:
            exp = self.layer.extra.get("experiment_name") or ""
        if not exp:
            raise ValueError("segmentation cubes in a .k.zip need an experiment name (pass experiment=...)")
        annotation.experiment = exp
        cube_xyz = self._kzip_cube_xyz()
        cube_zyx = cube_xyz[::-1]
        numbers = self.kzip_mag_numbers()
        skipped = [self.mags[mi] for mi in range(len(self.mags)) if self._overlay[mi] and mi not in numbers]
        if skipped:
            warnings.warn(f"mags {skipped} have no KNOSSOS cube name; their edits are recomputed from mag 1 on load",
                          UserWarning, stacklevel=2)
        count = 0
        with self._lock:
            for mi, number in numbers.items():
                for idx in sorted(self.touched_chunks(self.mags[mi], cube_zyx)):
                    box = (tuple(i * c for i, c in zip(idx, cube_zyx)), tuple((i + 1) * c for i, c in zip(idx, cube_zyx)))
                    values = self._read(mi, box).astype("<u8", copy=False)
                    key = (number, idx[2], idx[1], idx[0])
                    cube = annotation.cubes.get(key)
                    if cube is not None and cube.decodable and tuple(cube.shape) == cube_xyz:
                        cube.array = values
                    else:
                        annotation.cubes[key] = SegmentationCube.from_array(values)
                    count += 1
            self._saved_version = self._version
        return count

    def _load_blocks(self, blocks: dict[int, list[tuple[Vec, np.ndarray]]]) -> None:
        """Overlay loaded blocks (mag index → [(global start zyx, values)]) and recompute the mags
        that got none where their source changed; not an undo step, not dirty."""
        changes: dict[int, tuple[Vec, np.ndarray]] = {}
        for mi, items in blocks.items():
            region = None
            for start, values in items:
                self._set(mi, start, values.astype(self.dtype, copy=False))
                region = _union(region, (start, tuple(s + n for s, n in zip(start, values.shape))))
                if values.size:
                    self.largest_id = max(self.largest_id, int(values.max()))
            if region is None:
                continue
            region = _intersect(region, self._extents[mi])
            if _empty(region):
                continue
            changed = self._read(mi, region) != self._read_base(mi, region)
            if changed.any():
                changes[mi] = (region[0], changed)
        self._cascade(changes, skip=set(blocks) | {0})

    @classmethod
    def from_kzip(cls, annotation, base_layer=None, **kwargs) -> EditableVolume:
        """The ``.seg.sz`` cubes of a :class:`~.kzip.Annotation` as an overlay of ``base_layer``
        (or of a new segmentation made with ``kwargs``, see :class:`EditableVolume`)."""
        vol = cls(base_layer, **kwargs)
        by_number = {n: mi for mi, n in vol.kzip_mag_numbers().items()}
        blocks: dict[int, list] = {}
        for (number, x, y, z), cube in annotation.cubes.items():
            if not cube.decodable:
                warnings.warn(f"{cube.member}: undecodable segmentation cube ignored", UserWarning, stacklevel=2)
                continue
            mi = by_number.get(number)
            if mi is None:
                warnings.warn(f"{annotation.cube_member_name((number, x, y, z))}: the segmentation has no mag "
                              f"{number}; cube ignored", UserWarning, stacklevel=2)
                continue
            values = cube.array
            cz, cy, cx = values.shape
            blocks.setdefault(mi, []).append(((z * cz, y * cy, x * cx), values))
        vol._load_blocks(blocks)
        return vol

    # ------------------------------------------------------------------ webKnossos volume zips
    def volume_layer_data(self, *, name: str = "Volume", volume_id: int = 0):
        """The edits as a formats.volume_zip.VolumeLayerData: every touched 32³ bucket of every mag, whole
        (edits over the base values); the base layer, if any, is the fallback layer."""
        from ..formats import volume_zip

        bucket = (volume_zip.BUCKET,) * 3
        buckets: dict[Vec, dict[Vec, np.ndarray]] = {}
        with self._lock:
            for mi, factor in enumerate(self.mags):
                mine = {}
                for idx in sorted(self.touched_chunks(factor, bucket)):
                    box = (tuple(i * c for i, c in zip(idx, bucket)), tuple((i + 1) * c for i, c in zip(idx, bucket)))
                    mine[idx] = self._read(mi, box)
                if mine:
                    buckets[factor] = mine
        start, stop = self._extents[0]
        return volume_zip.VolumeLayerData(
            dtype=self.dtype,
            buckets=buckets,
            id=int(volume_id),
            name=name,
            fallback_layer=self.layer.name if self.layer is not None else None,
            largest_segment_id=self.largest_id,
            bbox_offset=start[::-1],
            bbox_size=tuple(b - a for a, b in zip(start, stop))[::-1],
            voxel_size=self.voxel_size,
        )

    def save_to_volume_zip(self, path, nml_bytes: bytes, fmt: str = "zarr3", *, name: str = "Volume",
                           volume_id: int = 0) -> int:
        """Write a webKnossos volume-annotation zip (``fmt`` ``"zarr3"`` or ``"wkw"``) with the NML ``nml_bytes``
        and the touched buckets of every mag (see :meth:`volume_layer_data`); returns the number of buckets."""
        from ..formats import volume_zip

        with self._lock:
            data = self.volume_layer_data(name=name, volume_id=volume_id)
            volume_zip.write_volume_zip(nml_bytes, [data], path, fmt=fmt)
            self._saved_version = self._version
        return data.bucket_count()

    @classmethod
    def from_volume_zip(cls, volume, base_layer=None, *, name_or_id=None, **kwargs) -> EditableVolume:
        """A volume layer of a webKnossos volume annotation (a formats.volume_zip.VolumeAnnotation, a path or
        bytes; ``name_or_id`` picks the volume when there are several) as an overlay of ``base_layer``, its
        fallback segmentation. Without a base layer the volume is a new segmentation over its bounding box
        (``kwargs`` of :class:`EditableVolume` override shape, mags, ...)."""
        from ..formats import volume_zip

        if not hasattr(volume, "volumes"):
            volume = volume_zip.read_volume_zip(volume)
        data = volume.volume(name_or_id)
        if base_layer is None:
            kwargs.setdefault("dtype", data.dtype)
            kwargs.setdefault("mags", sorted({(1, 1, 1), *data.mags}, key=lambda m: (math.prod(m), m[::-1])))
            if data.voxel_size is not None:
                kwargs.setdefault("voxel_size", data.voxel_size)
            if "shape_zyx" not in kwargs:
                offset, size = data.bbox_offset, data.bbox_size
                if offset is None or size is None:  # the WKW variant has no box: the buckets' extent
                    boxes = [((tuple(i * volume_zip.BUCKET * f for i, f in zip(idx, mag[::-1]))),
                              tuple((i + 1) * volume_zip.BUCKET * f for i, f in zip(idx, mag[::-1])))
                             for mag in data.mags for idx in data.buckets[mag]]
                    lo, hi = functools.reduce(_union, boxes, None) or ((0, 0, 0), (0, 0, 0))
                    offset, size = lo[::-1], tuple(b - a for a, b in zip(lo, hi))[::-1]
                kwargs.setdefault("offset_xyz", tuple(int(v) for v in offset))
                kwargs["shape_zyx"] = tuple(int(v) for v in size)[::-1]
        vol = cls(base_layer, **kwargs)
        blocks: dict[int, list] = {}
        for mag in data.mags:
            try:
                mi = vol.mag_index(mag)
            except KeyError:
                warnings.warn(f"volume {data.name!r}: the segmentation has no mag {mag}; its buckets are ignored",
                              UserWarning, stacklevel=2)
                continue
            for idx, values in data.buckets[mag].items():
                blocks.setdefault(mi, []).append((tuple(i * s for i, s in zip(idx, values.shape)), values))
        vol._load_blocks(blocks)
        if data.largest_segment_id is not None:
            vol.largest_id = max(vol.largest_id, int(data.largest_segment_id))
        return vol
