"""napari adapter for segmentation editing on (terabyte) pyramids. No Qt here.

napari cannot paint a multiscale Labels layer (napari/napari#1587), so the pyramid stays
visible and read-only, and edits go to an :class:`~napari_knossos.annotation.volume.EditableVolume`
through our own tools (brush, fill, merge), driven by mouse callbacks on the viewer. A
single-scale Labels layer, the *editable window*, shows the edited voxels at the current mag over
the movement area (or the current field of view) on top of the pyramid; moving the area, the
view or the slice moves the window, and since every edit already lives in the volume, moving it
never drops an edit. Objects (KNOSSOS mergelist) are a
:class:`~napari_knossos.annotation.segments.SegmentObjects`; the merged view recolours
supervoxels by object through a lazy id mapping of every pyramid level (the same mechanism
applies a webKnossos agglomerate mapping).

Mouse (KNOSSOS in brackets), while a tool is chosen in the widget: Paint: right-drag paints with
the active id (right-drag), Shift+right-drag erases (Shift+right-drag), Shift+wheel brush size
(Shift+wheel); Fill: right-click fills (middle-click; middle-click fills with every tool);
Merge: right-click merges the object under the cursor into the selected one, Ctrl only that
supervoxel, Shift unmerges the object, Ctrl+Shift unmerges the supervoxel (same). Left-drag pans
as always.

Left-click (no drag) with any tool selects the object under the cursor (KNOSSOS left-click in the
segmentation modes: the object the supervoxel is shown as, a new one-supervoxel object if it has
none); Ctrl+left-click toggles it (one object is selected at a time here, KNOSSOS allows several).

Keys (:data:`SEGMENTATION_KEYS`): ``C`` with Paint or Fill makes a new object whose id is the paint
id (KNOSSOS ``C`` in paint modes; otherwise ``C`` stays tracing's new tree), ``Shift+L`` draws new
lookup-table colours; objects with a custom colour keep it (:meth:`SegmentationSession.apply_colors`).
``Ctrl+Z`` / ``Ctrl+Shift+Z`` with any tool on undo/redo the segmentation (else tracing's), ``-`` and
``=`` with Paint on shrink/grow the brush by one voxel (KNOSSOS Shift+'-'/Shift+'+': napari drops
Shift on these keys and cannot bind '+', so ``=``, the '+' key unshifted, grows it).

In the tracing session's Review mode (read-only), every segmentation edit is refused with a status
message: paint, erase, fill, merge, new, changed and deleted objects, undo and redo (all go through
:meth:`SegmentationSession.guarded` or the undo step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from .annotation.editing import EditRefused, Mode
from .annotation.segments import SegmentEditRefused, SegmentObjects
from .annotation.volume import EditableVolume
from .formats.chunked import ArrayLikeMixin
from .layer_data import AXIS_LABELS, METADATA_KEY, UNITS
from .movement_area import area_box_zyx
from .view_geometry import current_slice, displayed_axes, field_of_view, hidden_axis

__all__ = ["SEGMENTATION_KEYS", "MappedLevel", "SegmentationSession", "VolumeLevel", "find_segmentation_layers"]

ROLE = "napari_knossos_role"
# KNOSSOS keys while editing segmentation: key → (action, description); napari key names
SEGMENTATION_KEYS: dict[str, tuple[str, str]] = {
    "C": ("create_object", "new object, its id becomes the paint id (Paint and Fill tools; else the tracing key)"),
    "Shift-L": ("new_colors", "new random colours for every id without a custom colour"),
    "Control-Z": ("undo", "undo the last segmentation edit (any tool on; else the tracing key)"),
    "Control-Shift-Z": ("redo", "redo a segmentation edit (any tool on; else the tracing key)"),
    "-": ("brush_smaller", "brush radius - 1 voxel (Paint; also Shift+'-'; else napari's key)"),
    "=": ("brush_larger", "brush radius + 1 voxel (Paint; the '+' key; else napari's key)"),
}
PAINT_TOOLS = ("paint", "fill")
TOOLS = ("paint", "fill", "merge")
# which tools a key needs to be ours (else the binding it replaced runs); None: always ours
KEY_TOOLS: dict[str, tuple[str, ...] | None] = {
    "C": PAINT_TOOLS, "Shift-L": None, "Control-Z": TOOLS, "Control-Shift-Z": TOOLS, "-": ("paint",), "=": ("paint",),
}
REVIEW_REFUSED = "Review mode: the segmentation is read-only"
CLICK_TOLERANCE_PX = 3  # a left press and release this close is a click (select), farther a pan
WINDOW_ROLE = "editable window"
SLAB_HALF_DEPTH = 8  # slices above and below the current one in the window (no movement area)
MAX_WINDOW_VOXELS = 64 * 1024**2
MAX_TRACKED_IDS = 1_000_000  # ids kept in a direct colormap before it is rebuilt from the window alone


def distinct_ids(data: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a label array: runs of one id (long in segmentations) are
    collapsed first, so the sort sees far fewer values than ``np.unique`` would."""
    flat = np.ascontiguousarray(data).reshape(-1)
    if flat.size == 0:
        return flat[:0].copy()
    starts = np.empty(flat.size, bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    return np.unique(flat[starts])


def box_difference(start, stop, old_start, old_stop) -> list[tuple[tuple, tuple]]:
    """Boxes (start, stop) covering the box ``start``-``stop`` minus the box ``old_start``-``old_stop``."""
    lo, hi = list(start), list(stop)
    parts = []
    for axis in range(len(lo)):
        inner_lo, inner_hi = max(lo[axis], old_start[axis]), min(hi[axis], old_stop[axis])
        if inner_lo >= inner_hi:
            parts.append((tuple(lo), tuple(hi)))
            return [(a, b) for a, b in parts if all(x < y for x, y in zip(a, b))]
        if lo[axis] < inner_lo:
            parts.append((tuple(lo), tuple(hi[:axis] + [inner_lo] + hi[axis + 1:])))
        if inner_hi < hi[axis]:
            parts.append((tuple(lo[:axis] + [inner_hi] + lo[axis + 1:]), tuple(hi)))
        lo[axis], hi[axis] = inner_lo, inner_hi
    return [(a, b) for a, b in parts if all(x < y for x, y in zip(a, b))]


def find_segmentation_layers(viewer) -> list:
    """The Labels layers our reader opened: dataset segmentations (with their model) and overlays
    of annotation edits (with their volume)."""
    return [layer for layer in viewer.layers if type(layer).__name__ == "Labels"
            and isinstance(layer.metadata.get(METADATA_KEY), dict)
            and ("model" in layer.metadata[METADATA_KEY] or "volume" in layer.metadata[METADATA_KEY])]


def overlay_layer_data(volume: EditableVolume, name: str, source: str, annotation=None, volume_id=None) -> tuple:
    """A Labels layer (multiscale when the volume has several mags) showing an annotation's
    segmentation edits on their own (zeros are transparent, so it overlays the dataset)."""
    levels = [VolumeLevel(volume, mag) for mag in volume.mags]
    vx, vy, vz = (float(v) for v in volume.voxel_size)
    start = np.asarray(volume.extent(volume.mags[0])[0], np.float64)
    kwargs = {"name": name, "scale": (vz, vy, vx), "translate": tuple((start * (vz, vy, vx)).tolist()),
              "units": UNITS, "axis_labels": AXIS_LABELS, "multiscale": len(levels) > 1,
              "metadata": {METADATA_KEY: {"volume": volume, "source": source, "annotation": annotation,
                                          "volume_id": volume_id, "category": "segmentation", "dataset": name},
                           ROLE: "segmentation overlay"}}
    return (levels if len(levels) > 1 else levels[0]), kwargs, "labels"


class VolumeLevel(ArrayLikeMixin):
    """One mag of an :class:`EditableVolume` as a lazy array (napari layer data): reads see the
    edits. Index 0 is the mag's first voxel (``volume.extent(mag)[0]``)."""

    def __init__(self, volume: EditableVolume, mag):
        self.volume, self.mag = volume, mag
        self.start, stop = (np.asarray(v) for v in volume.extent(mag))
        self.shape = tuple(int(v) for v in stop - self.start)
        self.dtype = np.dtype(volume.dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        lo, hi, post = [], [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, (int, np.integer)):
                k = int(k) + (n if k < 0 else 0)
                lo.append(k)
                hi.append(k + 1)
                post.append(0)
            elif isinstance(k, slice) and k.step in (None, 1):
                a, b, _ = k.indices(n)
                lo.append(a)
                hi.append(max(a, b))
                post.append(slice(None))
            else:
                return np.asarray(self)[key]
        out = self.volume.read(self.mag, tuple(self.start + lo), tuple(self.start + hi))
        return out[tuple(post)]

    def __array__(self, dtype=None, copy=None):
        out = self[(slice(None),) * 3]
        return out if dtype is None else out.astype(dtype, copy=False)


class MappedLevel(ArrayLikeMixin):
    """A lazy array whose reads go through ``mapping`` (ids → ids, vectorised): the merged view
    (supervoxel → object) or a webKnossos agglomerate mapping, applied only to what napari reads."""

    def __init__(self, base, mapping: Callable[[np.ndarray], np.ndarray]):
        self.base, self.mapping = base, mapping
        self.shape = tuple(base.shape)
        self.dtype = np.dtype(base.dtype)
        self.chunks = getattr(base, "chunks", None)

    def __getitem__(self, key):
        out = self.base[key]
        if isinstance(out, np.ndarray) or np.isscalar(out):
            return self.mapping(np.asarray(out)).astype(self.dtype, copy=False)
        return MappedLevel(out, self.mapping)

    def __array__(self, dtype=None, copy=None):
        out = self.mapping(np.asarray(self.base)).astype(self.dtype, copy=False)
        return out if dtype is None else out.astype(dtype, copy=False)


class SegmentationSession:
    """Editing one segmentation layer on a napari viewer (tools, window, objects, mappings)."""

    def __init__(self, viewer, labels, *, tracing=None, status: Callable[[str], None] | None = None,
                 segments: SegmentObjects | None = None, volume: EditableVolume | None = None):
        meta = labels.metadata[METADATA_KEY]
        self.viewer, self.labels, self.tracing = viewer, labels, tracing
        self.model = meta.get("model")  # formats.model.Layer (None for an overlay of edits alone)
        self.volume = volume or meta.get("volume") or EditableVolume(self.model)
        ann = getattr(tracing, "annotation", None)
        if segments is None:  # kept from an earlier session on this layer, else the annotation's mergelist
            segments = meta.get("segments") or SegmentObjects(getattr(ann, "objects", None) or (),
                                                              largest_segment_id=self._largest_segment_id())
        self.segments = segments
        meta["volume"], meta["segments"] = self.volume, self.segments  # edits outlive this session
        self._status = [status] if status else []
        self.scale_zyx = np.asarray(labels.scale, np.float64)[-3:]  # mag-1 voxel size (level 0)
        self.base_levels = list(labels.data) if labels.multiscale else [labels.data]
        self.tool: str | None = None  # "paint" | "fill" | "merge"
        self.brush_radius = 5.0  # voxels of the current mag
        self.brush_shape = "round"
        self.brush_dims = 2
        self.overpaint = False
        self.erase_selected_only = False
        self.fill_dims = 2
        self.active_id = int(max(self.volume.largest_id, self._largest_segment_id() or 0)) + 1
        self.selected_object: int | None = None
        self.merged_view = False
        self.agglomerate = None
        self.merge_tracing = False
        self._tree_objects: dict[int, int] = {}
        self.window = None
        self.window_box: tuple | None = None  # (mag index, start zyx, stop zyx) mag-local
        self._installed = False
        self._relocating = False
        self._history: list[str] = []  # which store each undoable edit went to, oldest first
        self._future: list[str] = []
        self._replaying = False
        self._in_stroke = self._stroke_recorded = False
        self.active_id_callbacks: list[Callable[[int], None]] = []  # told when a key changes the paint id
        self.selection_callbacks: list[Callable[[int | None], None]] = []  # told when the selection changes
        self.brush_callbacks: list[Callable[[float], None]] = []  # told when a key or the wheel resizes the brush
        self._bound_keys: list[tuple] = []  # (target, key, handler, the binding it replaced)
        self._lut = None  # the layer's colormap (napari): colours of ids without a custom colour
        self._shown_ids: np.ndarray | None = None  # ids ever shown in the window, once custom colours need them
        self._custom_cache: tuple | None = None  # ((segments.version, merged view), custom_colors())
        self._applied_colors: tuple | None = None  # what the window's direct colormap was built from
        self._setting_colormap = False  # our own colormap assignments (not the user's)
        self._window_mapping: tuple | None = None  # (merged view, agglomerate) the window's ids went through
        self._direct_colormap = None  # the last direct colormap apply_colors gave the window
        self.volume.subscribe(self._on_volume_change)
        self._window_follows_edits = True  # until uninstall(): the window mirrors every edit
        self._unsubscribe_segments = self.segments.subscribe(self._on_segments_change)
        if tracing is not None:
            tracing.editor.subscribe(self._on_tracing_change)

    def _largest_segment_id(self) -> int | None:
        return getattr(self.model, "largest_segment_id", None)

    # -- status -----------------------------------------------------------------------------------
    def status(self, message: str) -> None:
        self.viewer.status = message
        for callback in self._status:
            callback(message)

    def add_status_callback(self, callback) -> None:
        self._status.append(callback)

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def level(self) -> int:
        """The pyramid level napari shows (the mag tools work at)."""
        return int(self.labels.data_level) if self.labels.multiscale else 0

    def factor_zyx(self, level: int | None = None) -> np.ndarray:
        return np.asarray(self.volume.mags[self.level if level is None else level], np.int64)[::-1]

    def _mag1_float(self, world) -> np.ndarray:
        """Global mag-1 voxel coordinates of a world position: level-0 data index i is global voxel
        origin + i, drawn at ``translate + i * scale``."""
        origin = np.asarray(self.volume.extent(self.volume.mags[0])[0], np.float64)
        translate = np.asarray(self.labels.translate, np.float64)[-3:]
        return (np.asarray(world, np.float64)[-3:] - translate) / self.scale_zyx + origin

    def voxel_of_world(self, world, level: int | None = None) -> np.ndarray:
        """Global mag-local voxel (z, y, x) of a world position (nm)."""
        mag1 = self._mag1_float(world)
        return np.floor(mag1 / self.factor_zyx(level) + 0.5 / self.factor_zyx(level)).astype(np.int64)

    def _mag1_voxel(self, world) -> np.ndarray:
        return np.round(self._mag1_float(world)).astype(np.int64)

    def _hidden_axis(self) -> int:
        return hidden_axis(self.viewer)

    def area_box(self):
        """The movement area as a mag-1 box (start, stop) zyx, or None."""
        if self.tracing is None:
            return None
        box = area_box_zyx(self.tracing.skel.parameters.movement_area)
        return None if box is None else (tuple(box[0].tolist()), tuple(box[1].tolist()))

    def view_box(self, pad: float = 0.5) -> tuple[tuple, tuple]:
        """The visible 2-D field of view (mag-1 voxels, padded by ``pad`` on each side) and a slab of
        slices around the current one, clipped to the data."""
        ext_lo, ext_hi = (np.asarray(v) for v in self.volume.bounds)
        hidden = hidden_axis(self.viewer)
        view_lo, view_hi = field_of_view(self.viewer, self.scale_zyx, pad)
        lo, hi = ext_lo.copy(), ext_hi.copy()
        for axis in displayed_axes(self.viewer)[-2:]:
            lo[axis] = int(np.floor(view_lo[axis]))
            hi[axis] = int(np.ceil(view_hi[axis])) + 1
        current = round(current_slice(self.viewer, self.scale_zyx))
        f = int(self.factor_zyx()[hidden])
        lo[hidden] = current - SLAB_HALF_DEPTH * f
        hi[hidden] = current + (SLAB_HALF_DEPTH + 1) * f
        lo, hi = np.maximum(lo, ext_lo), np.minimum(hi, ext_hi)
        return tuple(lo.tolist()), tuple(np.maximum(hi, lo).tolist())

    def bounds(self) -> tuple[tuple, tuple]:
        """Where tools may write: the movement area (if any) within the data."""
        lo, hi = (np.asarray(v) for v in self.volume.bounds)
        area = self.area_box()
        if area is not None:
            lo, hi = np.maximum(lo, area[0]), np.minimum(hi, area[1])
        return tuple(lo.tolist()), tuple(np.maximum(hi, lo).tolist())

    def fill_bounds(self) -> tuple[tuple, tuple]:
        """Fill is bounded by the visible view intersected with the movement area."""
        view_lo, view_hi = (np.asarray(v) for v in self.view_box(pad=0.0))
        hidden = self._hidden_axis()
        lo, hi = (np.asarray(v) for v in self.bounds())  # the movement area (else the data)
        view_lo[hidden], view_hi[hidden] = lo[hidden], hi[hidden]  # its depth, not the window slab
        lo, hi = np.maximum(lo, view_lo), np.minimum(hi, view_hi)
        return tuple(lo.tolist()), tuple(np.maximum(hi, lo).tolist())

    # -- the editable window ------------------------------------------------------------------------
    def _wanted_window(self):
        """(level, start, stop) mag-local voxels the window should cover now."""
        level = self.level
        f = self.factor_zyx(level)
        area = self.area_box()
        lo1, hi1 = self.view_box()
        if area is not None:
            alo, ahi = np.asarray(area[0]), np.asarray(area[1])
            if np.prod((ahi - alo) // f + 1) <= MAX_WINDOW_VOXELS:
                lo1, hi1 = alo, ahi  # the whole movement area
            else:
                lo1, hi1 = np.maximum(lo1, alo), np.minimum(hi1, ahi)
        ext_lo, ext_hi = (np.asarray(v) for v in self.volume.extent(self.volume.mags[level]))
        start = np.maximum(np.asarray(lo1) // f, ext_lo)
        stop = np.minimum(-(-np.asarray(hi1) // f), ext_hi)
        return level, tuple(start.tolist()), tuple(np.maximum(stop, start).tolist())

    def _covers(self, wanted) -> bool:
        if self.window_box is None or self.window_box[0] != wanted[0]:
            return False
        _, start, stop = self.window_box
        _, ws, we = wanted
        hidden = self._hidden_axis()
        current_ok = start[hidden] <= (ws[hidden] + we[hidden]) // 2 < stop[hidden]
        inplane = all(start[a] <= ws[a] and we[a] <= stop[a] for a in range(3) if a != hidden)
        size = np.prod(np.subtract(stop, start), dtype=np.float64)
        needed = np.prod(np.subtract(we, ws), dtype=np.float64)
        return current_ok and inplane and size <= 4 * max(needed, 1)  # zoomed in a lot: shrink it

    def relocate(self, force: bool = False) -> bool:
        """Move the editable window to the current view/area/mag if it no longer covers it (2-D views
        only: a 3-D view keeps the window where it was)."""
        if self.viewer.dims.ndisplay != 2:
            return False
        wanted = self._wanted_window()
        if not force and self._covers(wanted):
            return False
        level, start, stop = wanted
        mag = self.volume.mags[level]
        data = self.volume.read(mag, start, stop)
        if self.merged_view or self.agglomerate is not None:
            data = self._display_map(data)
        f = self.factor_zyx(level)
        scale = tuple((self.scale_zyx * f).tolist())
        origin = np.asarray(self.volume.extent(self.volume.mags[0])[0], np.float64)
        translate = tuple(((np.asarray(start) * f - origin) * self.scale_zyx
                           + np.asarray(self.labels.translate, np.float64)[-3:]).tolist())
        if self.window is None:
            from napari.layers import Labels

            self.window = Labels(data, name=f"{self.labels.name} (editable)", scale=scale, translate=translate,
                                 units=UNITS, axis_labels=AXIS_LABELS, opacity=getattr(self, "_base_opacity", self.labels.opacity),
                                 metadata={ROLE: WINDOW_ROLE, "napari_knossos_session": self})
            self._set_colormap(self.window, self.lut)
            self.window.editable = False  # our tools write to the volume, not napari's paint
            if self._installed:
                self.window.events.colormap.connect(self._on_layer_colormap)
                self.labels.opacity = 0.0  # see install()
            active = self.viewer.layers.selection.active
            index = self.viewer.layers.index(self.labels) + 1
            self.viewer.layers.insert(index, self.window)
            if active is not None:
                self.viewer.layers.selection.active = active
        else:
            self.window.data = data
            self.window.scale = scale
            self.window.translate = translate
        old_box, mapping = self.window_box, (self.merged_view, self.agglomerate)
        self.window_box = (level, start, stop)
        if self._shown_ids is not None:  # only the ids of what the window did not show before
            if old_box is None or old_box[0] != level or mapping != self._window_mapping:
                parts = [(start, stop)]
            else:
                parts = box_difference(start, stop, old_box[1], old_box[2])
            for lo, hi in parts:
                self._add_shown_ids(data[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))])
        self._window_mapping = mapping
        self.apply_colors()
        return True

    def _display_map(self, ids: np.ndarray) -> np.ndarray:
        out = ids
        if self.agglomerate is not None:
            out = self.agglomerate.map(out)
        if self.merged_view:
            out = self.segments.map_ids(out)
        return np.asarray(out).astype(ids.dtype, copy=False)

    def _on_volume_change(self, change) -> None:
        """Refresh the part of the window an edit (or undo) touched."""
        if change.reason == "edit":
            self._record("volume")
        if self.window is None or self.window_box is None:
            return
        level, start, stop = self.window_box
        f = self.factor_zyx(level)
        lo = np.maximum(np.asarray(change.start_zyx) // f, start)
        hi = np.minimum(-(-np.asarray(change.stop_zyx) // f), stop)
        if (hi <= lo).any():
            return
        part = self.volume.read(self.volume.mags[level], tuple(lo.tolist()), tuple(hi.tolist()))
        if self.merged_view or self.agglomerate is not None:
            part = self._display_map(part)
        sl = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
        self.window.data[sl] = part
        if self._shown_ids is not None and self._add_shown_ids(part):
            self.apply_colors()
        self.window.refresh()

    # -- mappings (merged view, agglomerates) ---------------------------------------------------------
    def set_merged_view(self, on: bool) -> None:
        self.merged_view = bool(on)
        self._apply_mapping()

    def set_agglomerate(self, mapping) -> None:
        """Apply (or, with None, remove) a webKnossos agglomerate mapping on the fly."""
        self.agglomerate = mapping
        self._apply_mapping()

    def _apply_mapping(self) -> None:
        if self.merged_view or self.agglomerate is not None:
            levels = [MappedLevel(level, self._display_map) for level in self.base_levels]
        else:
            levels = self.base_levels
        self.labels.data = levels if self.labels.multiscale else levels[0]
        self.relocate(force=True)

    def _on_segments_change(self, change=None) -> None:
        self._record("segments")
        if self.merged_view:
            self._apply_mapping()  # relocates, which applies the colours
        else:
            self.apply_colors()

    # -- tools ------------------------------------------------------------------------------------
    def guarded(self, action, *args, **kwargs):
        """Run one edit of the segments or the volume, ``action(*args, **kwargs)``: refused in Review mode,
        and a refused edit (locked object, no permission ...) becomes a status message; None then."""
        if self.refuse_if_read_only():
            return None
        try:
            return action(*args, **kwargs)
        except (EditRefused, SegmentEditRefused) as refused:
            self.status(str(refused))
        except PermissionError as error:
            self.status(str(error))
        return None

    @property
    def read_only(self) -> bool:
        """The tracing session is in Review mode: no segmentation edit either (KNOSSOS)."""
        editor = getattr(self.tracing, "editor", None)
        return editor is not None and editor.mode is Mode.REVIEW

    def refuse_if_read_only(self) -> bool:
        """True (and a status message) in Review mode."""
        if self.read_only:
            self.status(REVIEW_REFUSED)
            return True
        return False

    def paint_at(self, world, erase: bool = False):
        """One brush stab at a world position (current mag, widget settings); refused in Review mode."""
        if self.refuse_if_read_only():
            return None
        level = self.level
        mode = "erase" if erase else ("overpaint" if self.overpaint else "paint")
        erase_only = None
        if erase and self.erase_selected_only and self.selected_object is not None:
            erase_only = {int(s) for s in self.segments.supervoxels_of(self.selected_object)} or None
        return self.guarded(self.volume.brush, self.volume.mags[level], tuple(self.voxel_of_world(world, level).tolist()),
                           self.brush_radius, 0 if erase else self.active_id, shape=self.brush_shape,
                           dims=self.brush_dims, plane_axis=self._hidden_axis(), mode=mode, erase_only=erase_only,
                           bounds=self.bounds())

    def fill_at(self, world):
        """Bucket fill at a world position; refused in Review mode."""
        if self.refuse_if_read_only():
            return None
        level = self.level
        return self.guarded(self.volume.fill, self.volume.mags[level], tuple(self.voxel_of_world(world, level).tolist()),
                           self.active_id, dims=self.fill_dims, plane_axis=self._hidden_axis(),
                           bounds=self.fill_bounds())

    def segment_at(self, world) -> int:
        """The (edited) supervoxel id at a world position (mag 1): from the editable window when it
        holds that voxel's supervoxel id (mag 1, no mapping), else read from the volume."""
        v = self._mag1_voxel(world)
        in_window = self._window_id(v)
        if in_window is not None:
            return in_window
        lo, hi = (np.asarray(b) for b in self.volume.bounds)
        if ((v < lo) | (v >= hi)).any():
            return 0
        return int(self.volume.read(self.volume.mags[0], tuple(v.tolist()), tuple((v + 1).tolist()))[0, 0, 0])

    def _window_id(self, voxel) -> int | None:
        """The id at a mag-1 voxel (z, y, x) in the editable window's array, or None when the window
        does not hold it (elsewhere, another mag, a merged or agglomerate view, or no longer edited)."""
        box, window = self.window_box, self.window
        if (box is None or window is None or box[0] != 0 or not self._window_follows_edits
                or self.merged_view or self.agglomerate is not None):
            return None
        data = window.data
        index = tuple(int(v) - s for v, s in zip(voxel, box[1]))
        if all(0 <= i < n for i, n in zip(index, data.shape)):
            return int(data[index])
        return None

    def _inside_area(self, world) -> bool:
        area = self.area_box()
        if area is None:
            return True
        v = self._mag1_voxel(world)
        return bool(((v >= area[0]) & (v < area[1])).all())

    def merge_at(self, world, *, only_supervoxel: bool = False, unmerge: bool = False):
        """KNOSSOS Merge mode at the clicked supervoxel (see module docstring); refused in Review mode."""
        if self.refuse_if_read_only():
            return None
        if not self._inside_area(world):
            self.status("outside the movement area: merging is refused")
            return None
        sv = self.segment_at(world)
        if sv == 0:
            self.status("background: nothing to merge")
            return None
        position = tuple(int(c) for c in self._mag1_voxel(world)[::-1])
        if unmerge:
            if self.selected_object is None:
                self.status("select an object to unmerge from")
                return None
            return self.guarded(self.segments.unmerge_at, sv, self.selected_object, only_supervoxel=only_supervoxel,
                               position=position)
        if self.selected_object is None or self.selected_object not in self.segments.objects:
            obj = self.guarded(self.segments.new_object, [sv], position=position)
            self.select_object(obj)
            return obj
        return self.guarded(self.segments.merge_at, sv, self.selected_object, only_supervoxel=only_supervoxel,
                           position=position)

    def select_object(self, object_id: int | None) -> None:
        """Make ``object_id`` (or nothing) the selected object and tell :attr:`selection_callbacks`."""
        self.selected_object = None if object_id is None else int(object_id)
        for callback in list(self.selection_callbacks):
            callback(self.selected_object)

    def select_at(self, world, *, toggle: bool = False) -> int | None:
        """KNOSSOS left-click in a segmentation mode: select the object the supervoxel under the cursor
        is shown as (:meth:`SegmentObjects.object_of`), creating a one-supervoxel object there if it has
        none (one undo step; not in Review mode); its supervoxel becomes the paint id. ``toggle``
        (Ctrl+left-click) deselects it if it is the selected object. Background and clicks outside the
        movement area change nothing. Returns the selected object."""
        if not self._inside_area(world):
            self.status("outside the movement area: nothing selected")
            return self.selected_object
        sv = self.segment_at(world)
        if sv == 0:
            self.status("background: no object to select")
            return self.selected_object
        obj = self.segments.object_of(sv)
        if toggle and obj is not None and obj == self.selected_object:
            self.select_object(None)
            self.status(f"object {obj} deselected")
            return None
        if obj is None:
            if self.refuse_if_read_only():
                return self.selected_object
            position = tuple(int(c) for c in self._mag1_voxel(world)[::-1])
            obj = self.guarded(self.segments.new_object, [sv], position=position)
            if obj is None:
                return self.selected_object
        self.active_id = int(sv)
        for callback in self.active_id_callbacks:
            callback(self.active_id)
        self.select_object(obj)
        self.status(f"object {obj} selected (segment {sv})")
        return obj

    def change_brush(self, step: float) -> float:
        """Brush radius + ``step`` voxels (at least 0.5), as Shift+wheel and the ``-``/``=`` keys do."""
        self.brush_radius = float(max(0.5, self.brush_radius + step))
        for callback in list(self.brush_callbacks):
            callback(self.brush_radius)
        self.status(f"brush radius {self.brush_radius:g} voxels")
        return self.brush_radius

    def new_object_id(self) -> int:
        """A fresh id to paint with: ``largestSegmentId`` + 1 (KNOSSOS ``C`` in paint modes)."""
        self.active_id = max(self.segments.next_id(), self.volume.largest_id + 1)
        return self.active_id

    def _record(self, store: str) -> None:
        """A new paint/fill ('volume') or object ('segments') edit: it is the next to undo."""
        if self._replaying or (self._in_stroke and self._history[-1:] == ["volume"] and self._stroke_recorded):
            return  # a drag's stabs are one undo step of the volume
        self._stroke_recorded = self._in_stroke
        self._history.append(store)
        self._future.clear()

    def undo(self) -> None:
        """Undo the newest edit, whether a paint/fill or a merge/unmerge (refused in Review mode)."""
        self._step(self._history, self._future, "undo")

    def redo(self) -> None:
        """Redo the edit undone last (refused in Review mode)."""
        self._step(self._future, self._history, "redo")

    def _step(self, source: list, target: list, what: str) -> None:
        if self.refuse_if_read_only():
            return
        while source:
            store = source.pop()
            model = self.volume if store == "volume" else self.segments
            if not getattr(model, f"can_{what}"):
                continue  # that history was trimmed
            self._replaying = True
            try:
                getattr(model, what)()
            finally:
                self._replaying = False
            target.append(store)
            return
        self.status(f"nothing to {what}")

    # -- merge tracing ------------------------------------------------------------------------------
    def _on_tracing_change(self, change) -> None:
        """Merge tracing: every node placed on a supervoxel merges it into its tree's object."""
        if not self.merge_tracing or change.kind != "nodes_added":
            return
        skel = self.tracing.skel
        for nid in np.asarray(change.node_ids).tolist():
            if not skel.has_node(nid):
                continue
            x, y, z = skel.position(nid)
            sv = self.segment_at(np.array([z, y, x]) * self.scale_zyx)
            if not sv:
                continue
            tree = skel.tree_of(nid)
            obj = self._tree_objects.get(tree)
            if obj is None or obj not in self.segments.objects:
                obj = self.segments.object_under_cursor(sv) or self.guarded(
                    self.segments.new_object, [sv], position=(int(x), int(y), int(z)))
                self._tree_objects[tree] = obj
            elif sv not in set(self.segments.supervoxels_of(obj).tolist()):
                self.guarded(self.segments.merge_at, sv, obj, only_supervoxel=True, position=(int(x), int(y), int(z)))

    # -- mouse ------------------------------------------------------------------------------------
    def _on_mouse_drag(self, viewer, event):
        if self.tool is None and event.button != 3:
            return
        from .tracing import _modifiers

        mods = _modifiers(event)
        if event.button == 1:  # a click selects the object under the cursor, a drag stays napari's pan
            if mods - {"control"}:
                return
            world, start = tuple(event.position), np.asarray(event.pos, float)
            yield
            while event.type == "mouse_move":
                yield
            if (np.linalg.norm(np.asarray(event.pos, float) - start) <= CLICK_TOLERANCE_PX
                    and self.viewer.dims.ndisplay == 2):
                self.select_at(world, toggle="control" in mods)
            return
        if event.button == 3 or (event.button == 2 and self.tool == "fill"):  # middle-click fills (KNOSSOS)
            if self.tool is None:
                return  # middle-drag stays the tracing node move
            world, start = tuple(event.position), np.asarray(event.pos, float)
            yield
            while event.type == "mouse_move":
                yield
            if np.linalg.norm(np.asarray(event.pos, float) - start) <= 3 and self.viewer.dims.ndisplay == 2:
                self.fill_at(world)
            return
        if event.button != 2:
            return
        if self.viewer.dims.ndisplay != 2:
            self.status("edit segmentation in a 2-D view")
            return
        if self.tool == "merge":
            self.merge_at(event.position, only_supervoxel="control" in mods, unmerge="shift" in mods)
            return
        if self.tool != "paint":
            return
        if self.refuse_if_read_only():
            return
        erase = "shift" in mods
        self._in_stroke, self._stroke_recorded = True, False
        try:
            with self.volume.stroke():  # one drag, one undo step
                self.paint_at(event.position, erase=erase)
                event.handled = True  # napari must not zoom on this right-drag
                yield
                while event.type == "mouse_move":
                    self.paint_at(event.position, erase=erase)
                    event.handled = True
                    yield
        finally:
            self._in_stroke = False

    def _on_mouse_wheel(self, viewer, event):
        if self.tool != "paint":
            return
        from .tracing import _modifiers

        if "shift" in _modifiers(event):
            delta = event.delta[1] if event.delta[1] else event.delta[0]
            self.change_brush(1 if delta > 0 else -1)
            event.handled = True

    def _on_mouse_move(self, viewer, event):
        """Segment id and object under the cursor, in napari's status bar and the widget."""
        sv = self.segment_at(event.position)
        obj = self.segments.object_under_cursor(sv) if sv else None
        self.cursor_text = f"segment {sv}" + (f", object {obj}" if obj is not None else "")
        if self.viewer.help != self.cursor_text:  # the right-hand side of napari's status bar
            self.viewer.help = self.cursor_text  # (an evented setter: costly even when equal)
        for callback in self._status[1:]:
            callback(self.cursor_text)

    def set_tool(self, tool: str | None) -> None:
        """"paint", "fill", "merge" or None; while a tool is on, the tracing mouse is off."""
        self.tool = tool
        if self.tracing is not None:
            self.tracing.mouse_enabled = tool is None
        if tool is not None:
            self.bind_keys()  # again: layers added (or keys rebound by tracing) since install
            self.relocate()

    def install(self) -> None:
        if self._installed:
            return
        self.viewer.mouse_drag_callbacks.insert(0, self._on_mouse_drag)
        self.viewer.mouse_wheel_callbacks.append(self._on_mouse_wheel)
        self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
        # napari re-slices the pyramid after every pan, zoom, slice or level change: follow it
        self.labels.events.set_data.connect(self._on_view_change)
        self.labels.events.colormap.connect(self._on_layer_colormap)
        if self.window is not None:
            self.window.events.colormap.connect(self._on_layer_colormap)
        self._installed = True
        self.bind_keys()
        self._follow_tracing_installs()
        # the window shows the same ids where nothing was edited: two translucent layers would
        # double the colour, so the pyramid is drawn transparent (it still picks the level)
        self._base_opacity = self.labels.opacity
        self.relocate(force=True)  # no window yet in a 3-D view: made on the first 2-D relocate
        if self.window is not None:
            self.window.opacity = self._base_opacity
            self.labels.opacity = 0.0

    def _on_view_change(self, event=None) -> None:
        if self._relocating:
            return
        self._relocating = True
        try:
            self.relocate()
        finally:
            self._relocating = False

    def uninstall(self) -> None:
        for callbacks, cb in ((self.viewer.mouse_drag_callbacks, self._on_mouse_drag),
                              (self.viewer.mouse_wheel_callbacks, self._on_mouse_wheel),
                              (self.viewer.mouse_move_callbacks, self._on_mouse_move)):
            if cb in callbacks:
                callbacks.remove(cb)
        self._installed = False
        self.unbind_keys()
        self.labels.events.set_data.disconnect(self._on_view_change)
        for layer in (self.labels, self.window):
            if layer is not None:
                layer.events.colormap.disconnect(self._on_layer_colormap)
        self.labels.opacity = getattr(self, "_base_opacity", self.labels.opacity)
        self.volume.unsubscribe(self._on_volume_change)  # the volume and objects stay with the layer
        self._window_follows_edits = False
        self._stop_following_tracing_installs()
        if callable(self._unsubscribe_segments):
            self._unsubscribe_segments()
        if self.tracing is not None:
            self.tracing.editor.unsubscribe(self._on_tracing_change)
        if self.tracing is not None:
            self.tracing.mouse_enabled = True

    # -- keys (C, Shift+L, Ctrl+Z, Ctrl+Shift+Z, -, =) ---------------------------------------------------
    def _key_handler(self, key: str, previous):
        """A key of :data:`SEGMENTATION_KEYS` is ours while a tool of :data:`KEY_TOOLS` is on (``C``:
        Paint or Fill creates an object; ``Ctrl+Z``: any tool undoes the segmentation; ``-``/``=``:
        Paint resizes the brush), else it runs ``previous``, what it replaced (tracing's new tree or
        undo, or napari's own binding of the layer type such as an image's auto-contrast or the
        label-id keys of a Labels layer); ``Shift+L`` always reseeds the colours. A press/release
        ``previous`` (a generator function, which napari steps on key release) gets a generator handler."""
        action = SEGMENTATION_KEYS[key][0]
        tools = KEY_TOOLS.get(key)

        def ours() -> bool:
            return tools is None or self.tool in tools

        if inspect.isgeneratorfunction(previous):
            def handler(target):
                if ours():
                    self.action(action)()
                    return
                yield from previous(target)
        else:
            def handler(target):
                if ours():
                    self.action(action)()
                    return None
                return previous(target) if callable(previous) else None

        handler.segmentation_session = self
        return handler

    def action(self, name: str) -> Callable[[], object]:
        """The callable behind a :data:`SEGMENTATION_KEYS` action name."""
        return {"create_object": self.create_object, "new_colors": self.new_colors, "undo": self.undo,
                "redo": self.redo, "brush_smaller": lambda: self.change_brush(-1),
                "brush_larger": lambda: self.change_brush(1)}[name]

    @staticmethod
    def _class_binding(target, keybinding):
        """What napari binds ``keybinding`` to for the target's type (``class_keymap`` along the MRO,
        napari's order), or None."""
        for cls in type(target).__mro__:
            func = getattr(cls, "class_keymap", {}).get(keybinding)
            if func is not None:
                return func
        return None

    def bind_keys(self) -> None:
        """Bind :data:`SEGMENTATION_KEYS` on the viewer and on every layer where the key already does
        something (its own binding, such as tracing's ``C``, or its type's, such as an image's ``C``):
        napari asks the active layer before the viewer. What was bound stays reachable (``C`` without a
        paint tool) and the layer's own binding comes back on :meth:`unbind_keys`. Idempotent."""
        from napari.utils.key_bindings import coerce_keybinding

        self._drop_stale_bindings()
        for target in [self.viewer, *self.viewer.layers]:
            for key in SEGMENTATION_KEYS:
                keybinding = coerce_keybinding(key)
                current = target.keymap.get(keybinding)
                if getattr(current, "segmentation_session", None) is self:
                    continue
                previous = current if current is not None else self._class_binding(target, keybinding)
                if target is not self.viewer and previous is None:
                    continue  # nothing here: napari goes on to the viewer, where ours is
                handler = self._key_handler(key, previous)
                target.bind_key(key, handler, overwrite=True)
                self._bound_keys.append((target, key, handler, current))

    def _drop_stale_bindings(self) -> None:
        """Forget bindings whose layer left the viewer or whose key another binding took over."""
        from napari.utils.key_bindings import coerce_keybinding

        layers = list(self.viewer.layers)
        self._bound_keys = [
            entry for entry in self._bound_keys
            if (entry[0] is self.viewer or any(entry[0] is layer for layer in layers))
            and entry[0].keymap.get(coerce_keybinding(entry[1])) is entry[2]]

    def unbind_keys(self) -> None:
        """Give every key binding :meth:`bind_keys` replaced back (where ours is still bound)."""
        from napari.utils.key_bindings import coerce_keybinding

        for target, key, handler, previous in reversed(self._bound_keys):
            if target.keymap.get(coerce_keybinding(key)) is handler:
                target.bind_key(key, previous, overwrite=True)
        self._bound_keys.clear()

    def _follow_tracing_installs(self) -> None:
        """Tracing's ``install()`` binds its keys anew, over ours: bind ours again right after it."""
        if self.tracing is not None and self._rebind_keys not in self.tracing.install_callbacks:
            self.tracing.install_callbacks.append(self._rebind_keys)

    def _stop_following_tracing_installs(self) -> None:
        if self.tracing is not None and self._rebind_keys in self.tracing.install_callbacks:
            self.tracing.install_callbacks.remove(self._rebind_keys)

    def _rebind_keys(self) -> None:
        if self._installed:
            self.bind_keys()

    def _view_center_mag1(self) -> tuple[int, int, int]:
        """The centre of the view (x, y, z mag-1 voxels), where a new object is placed."""
        point = np.asarray(self.viewer.dims.point, np.float64)[-3:].copy()
        center = np.asarray(self.viewer.scene.camera.center, np.float64)
        for i, axis in enumerate(displayed_axes(self.viewer)[-2:]):
            point[axis] = center[-2:][i]
        xyz = self._mag1_voxel(point)[::-1]
        return tuple(int(v) for v in np.clip(xyz, -(2**31), 2**31 - 1))

    def create_object(self) -> int | None:
        """KNOSSOS ``C`` in paint modes: a new object (id ``largestSegmentId`` + 1, as "New id") with
        that id as its one supervoxel, selected and made the paint id; one undo step (refused in Review mode)."""
        if self.refuse_if_read_only():
            return None
        oid = max(self.segments.next_id(), self.volume.largest_id + 1)
        obj = self.guarded(self.segments.new_object, object_id=oid, position=self._view_center_mag1())
        if obj is None:
            return None
        self.select_object(obj)
        self.active_id = int(next(iter(self.segments.objects[obj].supervoxels)))
        for callback in self.active_id_callbacks:
            callback(self.active_id)
        self.status(f"object {obj} created: painting with id {self.active_id}")
        return obj

    # -- colours ------------------------------------------------------------------------------------
    @property
    def lut(self):
        """The napari label colormap (cyclic or direct) colouring ids without a custom colour: the
        segmentation layer's, then whatever the user gives the layer or the window (napari's layer
        controls, ``layer.colormap = …``) or :meth:`new_colors` draws."""
        if self._lut is None:
            self._lut = self.labels.colormap
        return self._lut

    def _set_colormap(self, layer, colormap) -> None:
        """Our own colormap assignment (not taken as the user's choice by :meth:`_on_layer_colormap`)."""
        self._setting_colormap = True
        try:
            layer.colormap = colormap
        finally:
            self._setting_colormap = False

    def _on_layer_colormap(self, event=None) -> None:
        """The user gave the segmentation layer or the window another colormap: it becomes the table
        of ids without a custom colour (on both layers)."""
        layer = getattr(event, "source", None)
        if self._setting_colormap or layer is None:
            return
        colormap = layer.colormap
        if colormap is self._lut or colormap is self._direct_colormap:
            return  # ours, or an event that changed no colormap
        self._lut = colormap
        self._applied_colors = None
        if layer is not self.labels:
            self._set_colormap(self.labels, colormap)
        self.apply_colors()

    def new_colors(self, seed: float | None = None):
        """KNOSSOS Shift+L: a new random lookup table (every index gets another colour); objects with
        a custom colour keep theirs. ``seed`` in [0, 1) for reproducible colours."""
        from napari.utils.colormaps import CyclicLabelColormap, label_colormap

        old = self.lut
        cyclic = isinstance(old, CyclicLabelColormap)
        rng = np.random.default_rng()
        for _ in range(20):
            new = label_colormap(len(old.colors) - 1 if cyclic else 49,
                                 seed=float(rng.random() if seed is None else seed))
            if not cyclic or (np.abs(new.colors[1:] - old.colors[1:]).max(axis=1) > 0).all():
                break
            seed = None  # a colour repeated at the same index: draw again
        self._lut = new
        self._applied_colors = None
        self._set_colormap(self.labels, new)
        self.apply_colors()
        self.status("new colours")
        return new

    def custom_colors(self) -> dict[int, tuple[float, float, float, float]]:
        """Displayed id → RGBA (0-1) of every object with a custom colour: the object id in the merged
        view, else each supervoxel shown as that object. Cached until the objects change (do not
        modify the returned dict)."""
        key = (self.segments.version, self.merged_view)
        if self._custom_cache is not None and self._custom_cache[0] == key:
            return self._custom_cache[1]
        objects = self.segments.objects
        colored = {o: objects[o].color for o in objects if objects[o].color is not None}
        out: dict[int, tuple] = {}
        if colored and self.merged_view:
            for oid, rgb in colored.items():
                out[int(oid)] = (*(c / 255 for c in rgb), 1.0)
        elif colored:
            keys, values = self.segments.lookup()
            for oid, rgb in colored.items():
                rgba = (*(c / 255 for c in rgb), 1.0)
                out.update(dict.fromkeys((int(k) for k in keys[values == np.uint64(oid)]), rgba))
        self._custom_cache = (key, out)
        return out

    def apply_colors(self) -> None:
        """Colour the window: the lookup table (:attr:`lut`, as it is) while no object has a custom
        colour; else a direct colormap with the custom colours and the table's colour of every id the
        window has shown, rebuilt only when ids were added or colours changed."""
        if self.window is None:
            return
        custom = self.custom_colors()
        if not custom:
            self._applied_colors = None
            if self.window.colormap is not self.lut:
                self._set_colormap(self.window, self.lut)
            return
        from napari.utils.colormaps import DirectLabelColormap

        if self._shown_ids is None:  # the first custom colour: the ids in the window, once
            self._shown_ids = distinct_ids(np.asarray(self.window.data))
        applied = self._applied_colors
        if (applied is not None and (applied[0] is custom or applied[0] == custom) and applied[1] is self.lut
                and applied[2] == self._shown_ids.size and self.window.colormap is self._direct_colormap):
            return
        ids = self._shown_ids[self._shown_ids != 0]
        colors = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
        if ids.size:
            colors.update(zip(ids.tolist(), (tuple(c) for c in self.lut.map(ids).tolist())))
        colors.update(custom)
        self._direct_colormap = DirectLabelColormap(color_dict=colors)
        self._set_colormap(self.window, self._direct_colormap)
        self._applied_colors = (custom, self.lut, self._shown_ids.size)

    def _add_shown_ids(self, part: np.ndarray) -> bool:
        """Note the ids of newly shown data (read or painted into the window); True if any is new."""
        new = np.setdiff1d(distinct_ids(part), self._shown_ids, assume_unique=True)
        if not new.size:
            return False
        if self._shown_ids.size + new.size > MAX_TRACKED_IDS:  # too many for one colormap: the window's only
            self._shown_ids = distinct_ids(np.asarray(self.window.data))
            self._applied_colors = None
        else:
            self._shown_ids = np.union1d(self._shown_ids, new)
        return True

    # -- meshes -----------------------------------------------------------------------------------
    def mesh_ids(self) -> tuple[str, list[int]]:
        """What "mesh" meshes: the selected object's supervoxels, else the paint id's segment."""
        if self.selected_object is not None and self.selected_object in self.segments.objects:
            return f"object {self.selected_object}", sorted(int(v) for v in self.segments.supervoxels_of(self.selected_object))
        return f"segment {self.active_id}", [int(self.active_id)]

    def compute_mesh(self, ids, mag=None, smooth_iterations: int = 10):
        """Marching cubes of ``ids`` (edits included) at ``mag`` (default: the mag shown); pure
        work, safe in a worker thread. Returns an :class:`~napari_knossos.annotation.ply.Mesh`."""
        from .processing.mesh import segment_mesh

        mag = self.volume.mags[self.level] if mag is None else mag
        return segment_mesh(self.volume, ids, mag, smooth_iterations=smooth_iterations)

    def add_mesh_layer(self, mesh, name: str):
        """The mesh as a Surface layer on the dataset's grid (nm), to look at, save as PLY, or attach
        to a tree (saved in the .k.zip)."""
        from .annotation_layers import mesh_layer_data

        data, kwargs, _ = mesh_layer_data(mesh, self.volume.voxel_size, f"{self.labels.name} {name}",
                                          metadata={"napari_knossos_mesh": mesh, ROLE: "segment mesh"})
        active = self.viewer.layers.selection.active
        layer = self.viewer.add_surface(data, **kwargs)
        if active is not None:
            self.viewer.layers.selection.active = active
        return layer

    # -- saving -----------------------------------------------------------------------------------
    def save_to_dataset(self) -> int:
        """Write the edits back into the dataset (touched chunks only, each atomically)."""
        n = self.volume.save_in_place()
        self.status(f"{n} chunks written to {getattr(self.model, 'source', '') or self.labels.name}")
        return n

    def store_in_annotation(self, annotation=None) -> int:
        """Put the edits (``.seg.sz`` cubes) and the objects (mergelist) into the .k.zip annotation."""
        annotation = annotation if annotation is not None else self.tracing.annotation
        meta = self.labels.metadata[METADATA_KEY]
        experiment = (annotation.experiment or annotation.skeleton.parameters.experiment
                      or getattr(self.model, "extra", {}).get("experiment_name") or meta.get("dataset")
                      or self.labels.name)
        n = self.volume.save_to_kzip(annotation, experiment)
        annotation.objects = self.segments.to_objects()
        return n
