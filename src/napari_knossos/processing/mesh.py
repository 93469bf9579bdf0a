"""Surface meshes of segments: marching cubes on a segment's voxels at a chosen mag, smoothed
and decimated with trimesh. Pure Python (numpy, scikit-image, trimesh, dask); no napari or Qt.

Sources: a formats :class:`~napari_knossos.formats.model.Layer`, a
:class:`~napari_knossos.formats.model.Dataset` or a dataset path (its segmentation layer), an
:class:`~napari_knossos.annotation.volume.EditableVolume` (edits included), or a numpy
``(z, y, x)`` volume (mag 1 only).

Coordinates:

* boxes (``bounds``, :func:`segment_bounding_boxes`) are mag-1 voxels ``((z0, y0, x0), (z1, y1,
  x1))``, stop exclusive, like the ``bounds`` of the editable volume;
* mesh vertices are nm (x, y, z) of mag 1, as in :mod:`napari_knossos.annotation.ply`: mag-1
  voxel ``i`` has its centre at ``i · voxel size``, so mag-``f`` voxel ``v`` (covering the mag-1
  voxels ``[v·f, (v+1)·f)``) has its centre at ``(v·f + (f-1)/2) · voxel size``;
* the surface is the 0.5 iso-surface of the segment's binary mask: on the voxel faces between
  segment and background, so a box of ``n`` voxels spans ``n · f · voxel size`` nm.

Finding a segment: without ``bounds`` the coarsest mag is scanned block by block for the
segment's bounding box (finer mags if it is not there, e.g. a thin segment lost to mode
downsampling), widened by one coarse voxel; while the mask read at the meshing mag touches a
side of its box that is not the end of the data, that side is widened and read again, so
parts of the segment connected to what the scan found are never cut off.

Decimation (``target_faces``): quadric edge collapse through trimesh's
``simplify_quadric_decimation`` when the ``fast-simplification`` package is installed, else
vertex clustering on a grid sized to reach the target (:func:`decimate`; coarser). Either may
leave a few non-manifold edges: a decimated mesh need not be watertight.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..annotation.ply import Mesh, write_ply
from ..formats.atomic import atomic_write_bytes
from ..formats.mags import mag_name
from ..formats.mags import parse_mag as parse_mag_name
from .scheduler import compute

__all__ = [
    "SegmentTooLarge",
    "SegmentationSource",
    "add_cli_commands",
    "decimate",
    "mesh_from_mask",
    "meshes_for_segments",
    "parse_mag",
    "parse_segments",
    "segment_bounding_boxes",
    "segment_mesh",
    "segmentation_source",
    "write_meshes",
]

Vec = tuple[int, int, int]
Box = tuple[Vec, Vec]

MAX_VOXELS = 512**3  # largest box meshed at once (marching cubes holds it as float32)
_SCAN_BLOCK = 128  # scanning/reading blocks: the chunk grid, at least this many voxels per axis
_TAUBIN_LAMBDA, _TAUBIN_NU = 0.5, 0.53  # pass band k ≈ 0.11: smooths without shrinking
_QUADRIC_LOCK = threading.Lock()
_THREADED_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded")


class SegmentTooLarge(ValueError):
    """The box of a segment at the meshing mag holds more voxels than allowed."""


# -------------------------------------------------------------------------------- sources
class SegmentationSource:
    """Uniform read access to the mags of a segmentation.

    ``mags``: integer-or-float factors (x, y, z); ``extents``: per mag the global mag-local
    voxel box (z, y, x) holding data; ``blocks``: per mag the block shape (z, y, x) to read
    in (a multiple of the storage chunks); ``reader(mag_index, start_zyx, stop_zyx)`` returns
    the ids of a box inside the extent.
    """

    def __init__(self, name: str, mags: Sequence, extents: Sequence[Box], voxel_size: Sequence[float],
                 blocks: Sequence[Vec], reader: Callable[[int, Vec, Vec], np.ndarray], dtype):
        self.name = name
        self.mags = [tuple(float(f) for f in m) for m in mags]
        self.extents = [(tuple(int(v) for v in lo), tuple(int(v) for v in hi)) for lo, hi in extents]
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.blocks = [tuple(int(v) for v in b) for b in blocks]
        self.dtype = np.dtype(dtype)
        self._reader = reader
        self._token = uuid.uuid4().hex
        if self.dtype.kind not in "ui":
            raise ValueError(f"{name}: segment ids must be integers, not {self.dtype}")

    def __repr__(self) -> str:
        return f"SegmentationSource({self.name!r}, mags {[mag_name(m) for m in self.mags]}, {self.dtype})"

    def __dask_tokenize__(self):
        return ("SegmentationSource", self._token)

    def mag_index(self, mag) -> int:
        """Index of a mag given as factor (x, y, z), an int (isotropic) or a name like ``"2-2-1"``."""
        factor = parse_mag(mag)
        for i, m in enumerate(self.mags):
            if m == factor:
                return i
        raise KeyError(f"{self.name}: no mag {mag_name(factor)}; it has {[mag_name(m) for m in self.mags]}")

    def factor_zyx(self, mi: int) -> np.ndarray:
        return np.asarray(self.mags[mi][::-1], np.float64)

    def read(self, mi: int, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> np.ndarray:
        """Ids of the global mag-local box ``[start, stop)`` of mag ``mi``; 0 outside the data."""
        start, stop = tuple(int(v) for v in start_zyx), tuple(int(v) for v in stop_zyx)
        shape = tuple(max(b - a, 0) for a, b in zip(start, stop))
        lo, hi = self.extents[mi]
        inner_lo = tuple(max(a, e) for a, e in zip(start, lo))
        inner_hi = tuple(min(b, e) for b, e in zip(stop, hi))
        if any(b <= a for a, b in zip(inner_lo, inner_hi)):
            return np.zeros(shape, self.dtype)
        data = np.asarray(self._reader(mi, inner_lo, inner_hi))
        if data.shape == shape:
            return data
        out = np.zeros(shape, data.dtype)
        out[tuple(slice(a - s, b - s) for a, b, s in zip(inner_lo, inner_hi, start))] = data
        return out


def parse_mag(mag, where: str = "mag") -> tuple[float, float, float]:
    """A mag factor (x, y, z) from a number, a 3-sequence or a name (``"2"``, ``"2-2-1"``, ``"2,2,1"``)."""
    return parse_mag_name(mag, where, integer=False, commas=True)


def _blocks_for(chunk_zyx) -> Vec:
    return tuple(int(c) * max(1, math.ceil(_SCAN_BLOCK / int(c))) for c in chunk_zyx)


def _layer_source(layer) -> SegmentationSource:
    from ..formats.model import mag_extent

    label = f"layer {layer.name!r} ({layer.source or layer.format})"
    if int(getattr(layer, "num_channels", 1)) != 1:
        raise ValueError(f"{label}: a segmentation has one channel, this one has {layer.num_channels}")
    extents, blocks, arrays = [], [], []
    for mag in layer.mags:
        arr = mag.array
        if hasattr(arr, "origin_zyx"):
            origin = tuple(int(v) for v in arr.origin_zyx)
        elif layer.size is not None:
            origin = mag_extent(layer.size, layer.offset, mag.factor)[0]
        else:
            origin = (0, 0, 0)
        shape = tuple(int(v) for v in tuple(arr.shape)[-3:])
        extents.append((origin, tuple(o + s for o, s in zip(origin, shape))))
        blocks.append(_blocks_for(getattr(arr, "chunk_zyx", (_SCAN_BLOCK,) * 3)))
        arrays.append(arr)

    def reader(mi: int, start: Vec, stop: Vec) -> np.ndarray:
        arr, origin = arrays[mi], extents[mi][0]
        a = tuple(s - o for s, o in zip(start, origin))
        b = tuple(s - o for s, o in zip(stop, origin))
        if hasattr(arr, "read_region"):
            data = arr.read_region(a, b)
            return data[0] if data.ndim == 4 else data
        return np.asarray(arr[tuple(slice(i, j) for i, j in zip(a, b))])

    return SegmentationSource(label, [m.factor for m in layer.mags], extents, layer.voxel_size, blocks, reader,
                              layer.dtype)


def _editable_source(volume) -> SegmentationSource:
    layer = getattr(volume, "layer", None)
    if layer is not None:
        chunks = [getattr(m.array, "chunk_zyx", volume.chunk_zyx) for m in layer.mags]
        label = f"edited layer {layer.name!r}"
    else:
        chunks = [volume.chunk_zyx] * len(volume.mags)
        label = "edited segmentation"
    mags = list(volume.mags)

    def reader(mi: int, start: Vec, stop: Vec) -> np.ndarray:
        return volume.read(mags[mi], start, stop)

    return SegmentationSource(label, mags, [volume.extent(m) for m in mags], volume.voxel_size,
                              [_blocks_for(c) for c in chunks], reader, volume.dtype)


def _array_source(volume: np.ndarray, voxel_size) -> SegmentationSource:
    if volume.ndim != 3:
        raise ValueError(f"a segmentation volume must be (z, y, x), got shape {volume.shape}")

    def reader(mi: int, start: Vec, stop: Vec) -> np.ndarray:
        return volume[tuple(slice(a, b) for a, b in zip(start, stop))]

    return SegmentationSource("array", [(1, 1, 1)], [((0, 0, 0), volume.shape)],
                              (1, 1, 1) if voxel_size is None else voxel_size,
                              [(_SCAN_BLOCK,) * 3], reader, volume.dtype)


def _dataset_layer(dataset, layer: str | None):
    if layer is not None:
        return dataset.layer(layer)
    for candidate in dataset.layers:
        if candidate.is_segmentation:
            return candidate
    names = [f"{lyr.name} ({lyr.category})" for lyr in dataset.layers]
    raise ValueError(f"{dataset.source}: no segmentation layer; layers: {names}; name one with layer=")


@functools.lru_cache(maxsize=8)
def _open_path(path: str, layer: str | None) -> SegmentationSource:
    from ..formats import open_dataset

    return _layer_source(_dataset_layer(open_dataset(path), layer))


def segmentation_source(source, layer: str | None = None, voxel_size_xyz=None) -> SegmentationSource:
    """A :class:`SegmentationSource` for a path/URL, Dataset, Layer, EditableVolume or numpy volume.

    ``layer`` names the layer of a dataset (default: its first segmentation layer).
    Paths are opened once per process."""
    if isinstance(source, SegmentationSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _open_path(os.fspath(source), layer)
    if hasattr(source, "layers") and hasattr(source, "layer"):
        return _layer_source(_dataset_layer(source, layer))
    if hasattr(source, "read") and hasattr(source, "extent") and hasattr(source, "mags"):
        return _editable_source(source)
    if hasattr(source, "mags") and all(hasattr(m, "array") for m in source.mags):
        return _layer_source(source)
    if isinstance(source, np.ndarray):
        return _array_source(source, voxel_size_xyz)
    raise TypeError(f"cannot read segment voxels from {type(source).__name__}: pass a dataset path, "
                    "Dataset, Layer, EditableVolume or a (z, y, x) numpy array")


# -------------------------------------------------------------------------------- scanning
def _ids_array(segment_ids, dtype) -> np.ndarray:
    ids = np.unique(np.asarray(list(segment_ids) if not np.isscalar(segment_ids) else [segment_ids], np.int64))
    if not len(ids):
        raise ValueError("no segment ids given")
    if ids[0] <= 0:
        raise ValueError(f"segment id {int(ids[0])} is not a segment (ids are positive; 0 is background)")
    info = np.iinfo(dtype)
    if int(ids[-1]) > info.max:
        raise ValueError(f"segment id {int(ids[-1])} does not fit the segmentation's {np.dtype(dtype)}")
    return ids.astype(dtype)


def _block_boxes(extent: Box, block: Vec, within: Box | None = None) -> list[Box]:
    """Blocks of the global grid ``block`` covering ``within`` (default ``extent``), clipped to both."""
    lo, hi = extent
    if within is not None:
        lo = tuple(max(a, b) for a, b in zip(lo, within[0]))
        hi = tuple(min(a, b) for a, b in zip(hi, within[1]))
    if any(b <= a for a, b in zip(lo, hi)):
        return []
    ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(lo, hi, block)]
    out = []
    for idx in itertools.product(*ranges):
        start = tuple(max(i * c, a) for i, c, a in zip(idx, block, lo))
        stop = tuple(min((i + 1) * c, b) for i, c, b in zip(idx, block, hi))
        out.append((start, stop))
    return out


def _scan_block(src: SegmentationSource, mi: int, box: Box, ids: np.ndarray) -> dict[int, Box]:
    """Per id found in the block: its voxel box (global mag-local z y x, stop exclusive)."""
    data = src.read(mi, *box)
    hit = np.isin(data, ids)
    if not hit.any():
        return {}
    coords = np.nonzero(hit)
    values = data[hit]
    order = np.argsort(values, kind="stable")
    values = values[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    found: dict[int, Box] = {}
    lows, highs = [], []
    for axis in range(3):
        c = coords[axis][order]
        lows.append(np.minimum.reduceat(c, starts) + box[0][axis])
        highs.append(np.maximum.reduceat(c, starts) + box[0][axis] + 1)
    for k, seg in enumerate(values[starts].tolist()):
        found[int(seg)] = (tuple(int(lows[a][k]) for a in range(3)), tuple(int(highs[a][k]) for a in range(3)))
    return found


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return tuple(min(x, y) for x, y in zip(a[0], b[0])), tuple(max(x, y) for x, y in zip(a[1], b[1]))


def _merge_found(parts: Iterable[dict[int, Box]]) -> dict[int, Box]:
    out: dict[int, Box] = {}
    for part in parts:
        for seg, box in part.items():
            out[seg] = _union(out.get(seg), box)
    return out


def _to_mag1(src: SegmentationSource, mi: int, boxes: dict[int, Box]) -> dict[int, Box]:
    """Mag-``mi`` voxel boxes as mag-1 boxes (z y x)."""
    f = src.factor_zyx(mi)
    return {seg: (tuple(math.floor(v * s) for v, s in zip(lo, f)),
                  tuple(math.ceil(v * s) for v, s in zip(hi, f))) for seg, (lo, hi) in boxes.items()}


def _scan_mags(src: SegmentationSource, mesh_mi: int) -> list[int]:
    """Mags to scan, coarsest first, down to (and including) the meshing mag."""
    size = [math.prod(m) for m in src.mags]
    finer_ok = [i for i in range(len(src.mags)) if size[i] >= size[mesh_mi]]
    return sorted(finer_ok, key=lambda i: -size[i])


def segment_bounding_boxes(source, segment_ids, *, mag=None, layer: str | None = None) -> dict[int, Box]:
    """Mag-1 boxes ``((z0, y0, x0), (z1, y1, x1))`` of every id found at ``mag`` (default the
    coarsest), in one pass over the blocks of that mag; ids not found are absent."""
    src = segmentation_source(source, layer)
    mi = _scan_mags(src, 0)[0] if mag is None else src.mag_index(mag)
    ids = _ids_array(segment_ids, src.dtype)
    parts = [_scan_block(src, mi, box, ids) for box in _block_boxes(src.extents[mi], src.blocks[mi])]
    return _to_mag1(src, mi, _merge_found(parts))


def _find_box(src: SegmentationSource, ids: np.ndarray, mesh_mi: int, known: Box | None, scanned: int | None) -> Box | None:
    """The mag-1 box of the union of ``ids``: ``known`` (found at mag ``scanned``), else a scan of
    ever finer mags down to the meshing mag; widened by one voxel of the mag it was found at."""
    mags = _scan_mags(src, mesh_mi)
    if known is None:
        start = mags.index(scanned) + 1 if scanned in mags else 0
        for mi in mags[start:]:
            parts = [_scan_block(src, mi, b, ids) for b in _block_boxes(src.extents[mi], src.blocks[mi])]
            union = None
            for box in _merge_found(parts).values():
                union = _union(union, box)
            if union is not None:
                known, scanned = _to_mag1(src, mi, {0: union})[0], mi
                break
        else:
            return None
    f = src.factor_zyx(scanned)
    return (tuple(int(a - s) for a, s in zip(known[0], f)), tuple(int(b + s) for b, s in zip(known[1], f)))


# -------------------------------------------------------------------------------- reading
def _read_mask(src: SegmentationSource, mi: int, ids: np.ndarray, box: Box) -> np.ndarray:
    lo, hi = box
    mask = np.zeros(tuple(b - a for a, b in zip(lo, hi)), bool)
    for block in _block_boxes(src.extents[mi], src.blocks[mi], box):
        data = src.read(mi, *block)
        mask[tuple(slice(a - o, b - o) for a, b, o in zip(block[0], block[1], lo))] = np.isin(data, ids)
    return mask


def _segment_mask(src: SegmentationSource, mi: int, ids: np.ndarray, box1: Box, *, grow: bool,
                  max_voxels: int) -> tuple[np.ndarray, Vec]:
    """Binary mask of ``ids`` at mag ``mi`` over the mag-1 box ``box1`` (widened while the segment
    touches a side, when ``grow``), cropped to the segment; with its origin (global mag voxels)."""
    f = src.factor_zyx(mi)
    ext_lo, ext_hi = src.extents[mi]
    lo = [max(math.floor(a / s), e) for a, s, e in zip(box1[0], f, ext_lo)]
    hi = [min(math.ceil(b / s), e) for b, s, e in zip(box1[1], f, ext_hi)]
    while True:
        voxels = math.prod(max(b - a, 0) for a, b in zip(lo, hi))
        if voxels > max_voxels:
            raise SegmentTooLarge(f"{src.name}: segment box {tuple(b - a for a, b in zip(lo, hi))} (z, y, x) at "
                                  f"mag {mag_name(src.mags[mi])} has {voxels} voxels, more than {max_voxels}; "
                                  "mesh it at a coarser mag or pass bounds")
        mask = _read_mask(src, mi, ids, (tuple(lo), tuple(hi)))
        if not grow or not mask.any():
            break
        grown = False
        for axis in range(3):
            step = max(src.blocks[mi][axis] // 2, (hi[axis] - lo[axis]) // 2, 1)
            if lo[axis] > ext_lo[axis] and np.take(mask, 0, axis=axis).any():
                lo[axis], grown = max(lo[axis] - step, ext_lo[axis]), True
            if hi[axis] < ext_hi[axis] and np.take(mask, -1, axis=axis).any():
                hi[axis], grown = min(hi[axis] + step, ext_hi[axis]), True
        if not grown:
            break
    if not mask.any():
        return mask[:0, :0, :0], tuple(lo)
    tight = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    crop = tuple(slice(int(t[0]), int(t[-1]) + 1) for t in tight)
    return mask[crop], tuple(int(a + t[0]) for a, t in zip(lo, tight))


# -------------------------------------------------------------------------------- meshing
def _has_quadric() -> bool:
    try:
        import fast_simplification  # noqa: F401
    except ImportError:
        return False
    return True


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """One int64 per row of non-negative ints, equal exactly for equal rows (row ids when too wide)."""
    top = rows.max(axis=0).astype(np.int64) + 1 if len(rows) else np.ones(3, np.int64)
    if float(np.prod(top.astype(np.float64))) < 2**62:
        return rows[:, 0] * (top[1] * top[2]) + rows[:, 1] * top[2] + rows[:, 2]
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


def _cluster(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    cells = np.floor(vertices / cell).astype(np.int64)
    cells -= cells.min(axis=0)
    _, inverse, counts = np.unique(_row_keys(cells), return_inverse=True, return_counts=True)
    merged = np.zeros((len(counts), 3))
    for axis in range(3):
        merged[:, axis] = np.bincount(inverse, weights=vertices[:, axis], minlength=len(counts)) / counts
    f = inverse[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    _, first = np.unique(_row_keys(np.sort(f, axis=1)), return_index=True)
    f = f[np.sort(first)]
    used = np.unique(f)
    remap = np.full(len(merged), -1, np.int64)
    remap[used] = np.arange(len(used))
    return merged[used], remap[f]


def decimate(mesh: Mesh, target_faces: int, method: str = "auto") -> Mesh:
    """``mesh`` with at most about ``target_faces`` triangles (normals dropped).

    ``method``: ``"quadric"`` (quadric edge collapse by trimesh + fast-simplification: keeps the
    shape closely), ``"cluster"`` (vertex clustering on the finest cubic grid that reaches the
    face count; no extra package, but coarser, thin parts suffer) or ``"auto"`` (quadric when
    available). Neither guarantees a watertight result."""
    if method not in ("auto", "quadric", "cluster"):
        raise ValueError(f"decimation method must be 'auto', 'quadric' or 'cluster', not {method!r}")
    target_faces = int(target_faces)
    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, not {target_faces}")
    if len(mesh.faces) <= target_faces:
        return mesh
    if method == "auto":
        method = "quadric" if _has_quadric() else "cluster"
    vertices, faces = mesh.vertices.astype(np.float64), mesh.faces
    if method == "quadric":
        if not _has_quadric():
            raise ImportError("quadric decimation needs the fast-simplification package (pip install "
                              "fast-simplification); method='cluster' works without it")
        import trimesh

        with _QUADRIC_LOCK:  # the C++ simplifier keeps its mesh in globals: one call at a time per process
            out = trimesh.Trimesh(vertices, faces, process=False).simplify_quadric_decimation(face_count=target_faces)
        return Mesh(out.vertices, out.faces)
    edges = vertices[faces[:, [1, 2, 0]]] - vertices[faces]
    small = float(np.sqrt((edges**2).sum(axis=2)).mean()) * 0.5  # below this nothing merges much
    big, result = small * 1.25, None
    while result is None:  # grow the cell until the target is met …
        v, f = _cluster(vertices, faces, big)
        if len(f) <= target_faces or len(f) <= 4:
            result = (v, f)
        else:
            small, big = big, big * 1.25
    for _ in range(6):  # … then bisect for the smallest cell that meets it (the most faces kept)
        mid = (small + big) / 2
        v, f = _cluster(vertices, faces, mid)
        if len(f) <= target_faces:
            big, result = mid, (v, f)
        else:
            small = mid
    return Mesh(*result)


def mesh_from_mask(mask_zyx: np.ndarray, origin_zyx: Sequence[int] = (0, 0, 0), factor_xyz=(1, 1, 1),
                   voxel_size_xyz=(1.0, 1.0, 1.0), *, smooth_iterations: int = 10, target_faces: int | None = None,
                   decimation: str = "auto") -> Mesh:
    """Surface of a binary ``(z, y, x)`` mask whose voxel ``[0, 0, 0]`` is global voxel
    ``origin_zyx`` of the mag with ``factor_xyz``: marching cubes at 0.5 on the zero-padded mask,
    vertices in mag-1 nm (x, y, z; see the module docstring), faces oriented outwards, then
    ``smooth_iterations`` of Taubin smoothing and decimation to ``target_faces``; vertex normals
    included. An empty mask gives an empty mesh."""
    import trimesh
    from skimage.measure import marching_cubes

    mask = np.asarray(mask_zyx, bool)
    if not mask.any():
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).view(np.uint8), level=0.5)
    factor = np.asarray(parse_mag(factor_xyz)[::-1])
    size = np.asarray(voxel_size_xyz, np.float64)[::-1]
    verts = ((verts - 1 + np.asarray(origin_zyx, np.float64)) * factor + (factor - 1) / 2) * size
    verts = np.ascontiguousarray(verts[:, ::-1])
    if _signed_volume(verts, faces) < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])
    if smooth_iterations:
        tm = trimesh.Trimesh(verts, faces, process=False)
        trimesh.smoothing.filter_taubin(tm, lamb=_TAUBIN_LAMBDA, nu=_TAUBIN_NU, iterations=int(smooth_iterations))
        verts = np.asarray(tm.vertices)
    if target_faces is not None and len(faces) > target_faces:
        small = decimate(Mesh(verts, faces), target_faces, decimation)
        verts, faces = small.vertices.astype(np.float64), small.faces
    return Mesh(verts, faces, normals=_vertex_normals(verts, faces))


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh, negative when its faces point inwards."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->", a, np.cross(b, c))) / 6


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the area-weighted mean of the normals of the faces around each vertex."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)  # length: twice the area
    normals = np.zeros_like(vertices)
    for axis in range(3):
        w = np.repeat(face_normals[:, axis], 3)
        normals[:, axis] = np.bincount(faces.reshape(-1), weights=w, minlength=len(vertices))
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def _box_of(bounds) -> Box:
    lo, hi = bounds
    box = (tuple(int(v) for v in lo), tuple(int(v) for v in hi))
    if len(box[0]) != 3 or len(box[1]) != 3 or any(b <= a for a, b in zip(*box)):
        raise ValueError(f"bounds must be ((z0, y0, x0), (z1, y1, x1)) with z0 < z1 …, got {bounds!r}")
    return box


def _mesh_segment(src: SegmentationSource, ids: np.ndarray, mi: int, *, voxel_size, smooth_iterations,
                  target_faces, bounds, decimation, max_voxels, known: Box | None = None,
                  scanned: int | None = None) -> Mesh | None:
    if bounds is not None:
        box1, grow = _box_of(bounds), False
    else:
        box1, grow = _find_box(src, ids, mi, known, scanned), True
        if box1 is None:
            return None
    mask, origin = _segment_mask(src, mi, ids, box1, grow=grow, max_voxels=max_voxels)
    if not mask.any():
        return None
    return mesh_from_mask(mask, origin, src.mags[mi], voxel_size, smooth_iterations=smooth_iterations,
                          target_faces=target_faces, decimation=decimation)


def segment_mesh(source, segment_ids, mag=(1, 1, 1), *, voxel_size_xyz=None, smooth_iterations: int = 10,
                 target_faces: int | None = None, bounds=None, layer: str | None = None, decimation: str = "auto",
                 max_voxels: int = MAX_VOXELS) -> Mesh:
    """Mesh of one segment, or of the union of several ids (an object of supervoxels), at ``mag``.

    ``source``: path, Dataset, Layer, EditableVolume or numpy volume (see the module docstring);
    ``layer``: the dataset's layer (default its first segmentation); ``voxel_size_xyz``: nm per
    mag-1 voxel (default the source's); ``bounds``: mag-1 box ``((z0, y0, x0), (z1, y1, x1))`` to
    mesh within (no scan, nothing outside it: the mesh is closed at the box). LookupError when
    the ids are not found; :class:`SegmentTooLarge` (a ValueError) when the segment's box exceeds
    ``max_voxels`` voxels at ``mag``.
    """
    src = segmentation_source(source, layer, voxel_size_xyz)
    ids = _ids_array(segment_ids, src.dtype)
    mi = src.mag_index(mag)
    voxel_size = src.voxel_size if voxel_size_xyz is None else tuple(float(v) for v in voxel_size_xyz)
    mesh = _mesh_segment(src, ids, mi, voxel_size=voxel_size,
                         smooth_iterations=smooth_iterations, target_faces=target_faces, bounds=bounds,
                         decimation=decimation, max_voxels=max_voxels)
    if mesh is None:
        where = f" inside {bounds}" if bounds is not None else ""
        raise LookupError(f"{src.name}: segment {ids.tolist()} not found at mag {mag_name(src.mags[mi])}"
                          f" or coarser{where}")
    return mesh


# -------------------------------------------------------------------------------- many segments
def _segments(segment_ids) -> dict:
    """``{key: ids}``: ints map to themselves, a mapping ``key → id or ids`` is kept."""
    if isinstance(segment_ids, Mapping):
        items = segment_ids.items()
    else:
        items = ((int(s), int(s)) for s in (segment_ids if not np.isscalar(segment_ids) else [segment_ids]))
    out = {}
    for key, ids in items:
        out[key] = [int(ids)] if np.isscalar(ids) else [int(i) for i in ids]
    if not out:
        raise ValueError("no segment ids given")
    return out


def _resolve(handle) -> SegmentationSource:
    if isinstance(handle, tuple):  # ("path", path, layer): opened on the worker
        return _open_path(handle[1], handle[2])
    return handle


def _scan_task(handle, mi: int, box: Box, ids: np.ndarray) -> dict[int, Box]:
    return _scan_block(_resolve(handle), mi, box, ids)


def _boxes_task(handle, mi: int, parts: list[dict[int, Box]]) -> dict[int, Box]:
    return _to_mag1(_resolve(handle), mi, _merge_found(parts))


def _mesh_task(handle, ids: np.ndarray, mi: int, found: dict, scanned: int, options: dict) -> Mesh | str | None:
    """The mesh; None when the ids are not found; the reason when the segment is too large."""
    src = _resolve(handle)
    boxes = [found[int(i)] for i in ids.tolist() if int(i) in found]
    known = None
    for box in boxes:
        known = _union(known, box)
    try:
        return _mesh_segment(src, ids, mi, known=known, scanned=scanned, **options)
    except SegmentTooLarge as err:
        return str(err)


def meshes_for_segments(source, segment_ids, mag=(1, 1, 1), *, voxel_size_xyz=None, smooth_iterations: int = 10,
                        target_faces: int | None = None, bounds=None, layer: str | None = None,
                        decimation: str = "auto", max_voxels: int = MAX_VOXELS, scheduler=None,
                        progress: bool = False) -> dict:
    """Meshes of many segments, one dask task each (after one scan of the coarsest mag for all
    their boxes, itself one task per block), on ``scheduler`` (None: local threads; a
    dask.distributed address or Client: that cluster).

    ``segment_ids``: ids (one mesh each, keyed by id) or a mapping ``key → id or ids`` (one
    mesh per key, of the union of its ids). Segments not found, or with more than ``max_voxels``
    voxels in their box, are left out with a RuntimeWarning naming them.
    Distributed workers in other processes need ``source`` as a path or URL they can open
    (opened once per worker); in-memory layers and edited volumes cannot be sent to them.
    """
    import dask

    segments = _segments(segment_ids)
    src = segmentation_source(source, layer, voxel_size_xyz)
    mi = src.mag_index(mag)
    all_ids = _ids_array(sorted({i for ids in segments.values() for i in ids}), src.dtype)
    if isinstance(source, (str, os.PathLike)):
        handle = ("path", os.fspath(source), layer)
    elif scheduler is None or scheduler in _THREADED_SCHEDULERS:
        handle = dask.delayed(src, name=f"segmentation-source-{src._token}")
    else:
        raise TypeError(f"{src.name}: an opened layer or edited volume cannot be sent to the workers of "
                        f"scheduler {scheduler!r}; pass the dataset path (or use the local threads)")
    voxel_size = src.voxel_size if voxel_size_xyz is None else tuple(float(v) for v in voxel_size_xyz)
    options = {"voxel_size": voxel_size, "smooth_iterations": smooth_iterations,
                   "target_faces": target_faces, "bounds": bounds, "decimation": decimation, "max_voxels": max_voxels}
    token = uuid.uuid4().hex[:12]
    if bounds is None:
        scan_mi = _scan_mags(src, mi)[0]
        scan = [dask.delayed(_scan_task, pure=True)(handle, scan_mi, box, all_ids,
                                                    dask_key_name=f"segment-scan-{token}-{k}")
                for k, box in enumerate(_block_boxes(src.extents[scan_mi], src.blocks[scan_mi]))]
        found = dask.delayed(_boxes_task, pure=True)(handle, scan_mi, scan, dask_key_name=f"segment-boxes-{token}")
    else:
        scan_mi, found = None, {}
    keys = list(segments)
    tasks = [dask.delayed(_mesh_task, pure=True)(handle, _ids_array(segments[key], src.dtype), mi, found, scan_mi,
                                                 options, dask_key_name=f"segment-mesh-{token}-{n}")
             for n, key in enumerate(keys)]
    results = compute(tasks, scheduler=scheduler, progress=progress)
    meshes = {key: mesh for key, mesh in zip(keys, results) if isinstance(mesh, Mesh)}
    missing = [key for key, mesh in zip(keys, results) if mesh is None]
    too_large = [key for key, mesh in zip(keys, results) if isinstance(mesh, str)]
    if missing:
        warnings.warn(f"{src.name}: segments not found at mag {mag_name(src.mags[mi])}: {missing}",
                      RuntimeWarning, stacklevel=2)
    if too_large:
        warnings.warn(f"{src.name}: segments skipped, more than {max_voxels} voxels in their box at mag "
                      f"{mag_name(src.mags[mi])} (use a coarser mag): {too_large}", RuntimeWarning, stacklevel=2)
    return meshes


def write_meshes(meshes: Mapping, out_dir, binary: bool = True) -> list[Path]:
    """Write every mesh as ``{key}.ply`` in ``out_dir`` (created), each atomically; the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, mesh in meshes.items():
        path = out / f"{key}.ply"
        atomic_write_bytes(path, write_ply(mesh, binary=binary), durable=False)
        paths.append(path)
    return paths


# -------------------------------------------------------------------------------- command line
def parse_segments(text: str) -> dict:
    """``"1,2,5-7,10+11"`` → ``{1: [1], 2: [2], 5: [5], 6: [6], 7: [7], 10: [10, 11]}``
    (``a-b`` a range, ``a+b`` one object of several ids, keyed by its first id)."""
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "+" in part:
                ids = [int(v) for v in part.split("+")]
                out[ids[0]] = ids
            elif "-" in part[1:]:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a or b - a > 10_000_000:
                    raise ValueError
                out.update({i: [i] for i in range(a, b + 1)})
            else:
                out[int(part)] = [int(part)]
        except ValueError:
            raise ValueError(f"--segments: cannot read {part!r} (use ids, a-b ranges and a+b objects)") from None
    if not out:
        raise ValueError("--segments: no segment ids")
    return out


def _run_mesh(args) -> int:
    segments = parse_segments(args.segments)
    if args.faces is not None and args.decimation == "quadric" and not _has_quadric():
        raise RuntimeError("--decimation quadric needs the fast-simplification package; use --decimation cluster")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        meshes = meshes_for_segments(
            args.path, segments, parse_mag(args.mag, "--mag"), layer=args.layer, smooth_iterations=args.smooth,
            target_faces=args.faces, decimation=args.decimation, scheduler=args.scheduler, progress=args.progress,
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    paths = write_meshes(meshes, args.out)
    faces = sum(len(m.faces) for m in meshes.values())
    print(f"wrote {len(paths)} meshes ({faces} triangles) to {args.out}")
    return 0 if len(meshes) == len(segments) else 1


def add_cli_commands(subparsers) -> None:
    """Add ``mesh PATH --segments ...`` (see :mod:`napari_knossos.cli`: handler in ``run``)."""
    from ..cli import add_scheduler_arguments

    p = subparsers.add_parser(
        "mesh", help="meshes of segments to PLY files",
        description="Marching-cubes meshes of segments (Taubin-smoothed, optionally decimated), written as "
        "OUT/{id}.ply with vertices in nm. Exit code 1 when a segment got no mesh (not found, too large).")
    p.add_argument("path", metavar="PATH", help="dataset path or URL")
    p.add_argument("--segments", required=True,
                   help="ids: 1,2,3; ranges 5-9; several supervoxels as one object 10+11")
    p.add_argument("--layer", help="segmentation layer (default: the first segmentation layer)")
    p.add_argument("--mag", default="1", help="mag to mesh at: 2 or x-y-z such as 2-2-1 (default: 1)")
    p.add_argument("--out", default="meshes", help="output folder (default: ./meshes)")
    p.add_argument("--smooth", type=int, default=10, metavar="N", help="Taubin smoothing iterations (default: 10)")
    p.add_argument("--faces", type=int, default=None, metavar="N", help="decimate each mesh to about N triangles")
    p.add_argument("--decimation", choices=["auto", "quadric", "cluster"], default="auto",
                   help="quadric (needs fast-simplification) or vertex clustering; auto: quadric when installed")
    add_scheduler_arguments(p)
    p.set_defaults(run=_run_mesh)
