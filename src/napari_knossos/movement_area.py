"""napari adapter for the KNOSSOS movement area: darken what lies outside, define it from a view
or a drawn rectangle. No Qt here (the dock widget is :mod:`napari_knossos.widgets.movement_area`).

The area itself lives in the skeleton's parameters (``parameters.movement_area``, a mag-1 voxel
box ``[top_left, top_left + size)``), so it is saved in NML and .k.zip as KNOSSOS saves it, and
setting it is an undoable editor step. The editor refuses node placement outside it; the
segmentation tools take it as their bounds.
"""

from __future__ import annotations

import numpy as np

from .skeleton_layers import AXIS_LABELS, UNITS
from .view_geometry import current_slice, displayed_axes, field_of_view, hidden_axis, slice_world

__all__ = ["MovementAreaOverlay", "area_box_zyx", "box_from_rectangle", "box_from_view"]

OVERLAY_ROLE = "movement area"
EDGE_COLOR = (1.0, 0.85, 0.2, 1.0)


def area_box_zyx(area) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, stop) mag-1 voxels (z, y, x) of a :class:`~.annotation.skeleton.BoundingBox`."""
    if area is None:
        return None
    lo = np.asarray(area.top_left, np.int64)[::-1]
    return lo, lo + np.asarray(area.size, np.int64)[::-1]


def box_from_rectangle(corners_zyx, displayed, hidden_range) -> tuple[tuple, tuple]:
    """(top_left, size) (x, y, z) voxels from a drawn rectangle's corners (voxels, z y x) in the
    ``displayed`` axes and a (lo, hi) voxel range on the third axis."""
    corners = np.asarray(corners_zyx, np.float64)
    lo = np.zeros(3, np.int64)
    hi = np.zeros(3, np.int64)
    for axis in range(3):
        if axis in displayed:
            lo[axis] = int(np.floor(corners[:, axis].min()))
            hi[axis] = int(np.ceil(corners[:, axis].max()))
        else:
            lo[axis], hi[axis] = int(hidden_range[0]), int(hidden_range[1])
    hi = np.maximum(hi, lo + 1)
    return tuple(lo[::-1].tolist()), tuple((hi - lo)[::-1].tolist())


def box_from_view(viewer, scale_zyx, depth: int) -> tuple[tuple, tuple]:
    """(top_left, size) (x, y, z) voxels of napari's current 2-D field of view, ``depth`` slices
    deep around the current slice."""
    lo, hi = field_of_view(viewer, scale_zyx)
    current = round(current_slice(viewer, scale_zyx))
    half = depth // 2
    return box_from_rectangle(np.stack([lo, hi]), displayed_axes(viewer), (current - half, current - half + depth))


class MovementAreaOverlay:
    """A Shapes layer that darkens everything outside the movement area in the current 2-D
    slice (four bands around it, or the whole plane when the slice is outside its depth) and
    outlines it. Follows the slice, the axis order and the editor's changes."""

    def __init__(self, viewer, session, darkness: float = 0.6):
        self.viewer, self.session = viewer, session
        self.darkness = float(darkness)
        self.layer = None
        self._updating = False
        self.scale_zyx = np.asarray(session.scale_zyx, np.float64)
        viewer.dims.events.current_step.connect(self.update)
        viewer.dims.events.order.connect(self.update)
        viewer.dims.events.ndisplay.connect(self.update)
        session.editor.subscribe(self._on_change)
        self.update()

    def close(self) -> None:
        for event in (self.viewer.dims.events.current_step, self.viewer.dims.events.order,
                      self.viewer.dims.events.ndisplay):
            event.disconnect(self.update)
        self.session.editor.unsubscribe(self._on_change)

    @property
    def area(self):
        return self.session.skel.parameters.movement_area

    def set_darkness(self, darkness: float) -> None:
        self.darkness = float(np.clip(darkness, 0.0, 1.0))
        self.update()

    def _on_change(self, change) -> None:
        if change.kind in ("parameters", "full"):
            self.update()

    def _extent_voxels(self) -> tuple[np.ndarray, np.ndarray]:
        """The viewer's world extent (all layers) in mag-1 voxels (z, y, x)."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for layer in self.viewer.layers:
            if layer is self.layer or layer.ndim < 3:
                continue
            world = np.asarray(layer.extent.world, np.float64)[:, -3:]
            lo, hi = np.fmin(lo, world[0]), np.fmax(hi, world[1])  # empty layers have NaN extents
        if not np.isfinite(lo).all():
            lo, hi = np.zeros(3), np.zeros(3)
        return np.floor(lo / self.scale_zyx), np.ceil(hi / self.scale_zyx)

    def _slice(self) -> tuple[int, float]:
        """(voxel index shown, world offset): napari's slice positions can sit half a voxel off
        the grid (a mesh reaching to -0.5 shifts the dims range), and Shapes are only drawn when
        the slice falls on an integer data coordinate, so the layer is translated by the offset."""
        hidden = hidden_axis(self.viewer)
        world = slice_world(self.viewer)
        step = float(self.scale_zyx[hidden])
        index = round(world / step)
        return index, world - index * step

    def shapes(self) -> list[np.ndarray]:
        """Rectangles (4 corners each, voxels z y x) to draw in the current slice: the dark
        bands, then the area's outline (last)."""
        box = area_box_zyx(self.area)
        if box is None or self.viewer.dims.ndisplay != 2:
            return []
        lo, hi = box
        e_lo, e_hi = self._extent_voxels()
        e_lo, e_hi = np.minimum(e_lo, lo) - 1, np.maximum(e_hi, hi) + 1
        displayed = displayed_axes(self.viewer)
        hidden = hidden_axis(self.viewer)
        current, _ = self._slice()
        a, b = displayed

        def rect(a0, a1, b0, b1):
            corners = np.zeros((4, 3))
            corners[:, hidden] = current
            corners[:, a] = np.array([a0, a0, a1, a1]) - 0.5  # voxel i covers [i - 0.5, i + 0.5)
            corners[:, b] = np.array([b0, b1, b1, b0]) - 0.5
            return corners

        if not lo[hidden] <= current < hi[hidden]:
            return [rect(e_lo[a], e_hi[a], e_lo[b], e_hi[b])]
        bands = [rect(e_lo[a], lo[a], e_lo[b], e_hi[b]), rect(hi[a], e_hi[a], e_lo[b], e_hi[b]),
                 rect(lo[a], hi[a], e_lo[b], lo[b]), rect(lo[a], hi[a], hi[b], e_hi[b])]
        return [*bands, rect(lo[a], hi[a], lo[b], hi[b])]

    def update(self, event=None) -> None:
        if self._updating:  # adding the layer changes the dims, which calls us again
            return
        self._updating = True
        try:
            self._update()
        finally:
            self._updating = False

    def _update(self) -> None:
        rects = self.shapes()
        if self.layer is None:
            if not rects:
                return
            self.layer = self.viewer.add_shapes(
                name="movement area", scale=tuple(self.scale_zyx), units=UNITS, axis_labels=AXIS_LABELS,
                ndim=3, metadata={"napari_knossos_role": OVERLAY_ROLE}, blending="translucent_no_depth", opacity=1.0)
            active = self.viewer.layers.selection.active
            self.viewer.layers.move(self.viewer.layers.index(self.layer), len(self.viewer.layers) - 1)
            if active is not None and active is not self.layer:
                self.viewer.layers.selection.active = active
        layer = self.layer
        layer.visible = bool(rects)
        if rects:
            translate = np.zeros(3)
            translate[hidden_axis(self.viewer)] = self._slice()[1]
            if not np.allclose(layer.translate, translate):
                layer.translate = translate
        if not rects:
            return
        outline = len(rects) == 5
        faces = [(0.0, 0.0, 0.0, self.darkness)] * (4 if outline else 1) + ([(0, 0, 0, 0)] if outline else [])
        edges = [(0, 0, 0, 0)] * (4 if outline else 1) + ([EDGE_COLOR] if outline else [])
        layer.data = []
        layer.add_rectangles(rects, face_color=faces, edge_color=edges, edge_width=0.0)
        if outline:
            widths = [0.0] * 4 + [max(1.0 / max(float(self.viewer.scene.camera.zoom) * self.scale_zyx[-1], 1e-6), 0.5)]
            layer.edge_width = widths
        layer.editable = False
