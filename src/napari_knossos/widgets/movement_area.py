"""The movement-area dock widget (magicgui): numbers, the current view, or a drawn rectangle."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container, FloatSlider, Label, PushButton, SpinBox

from ..annotation.editing import EditRefused
from ..movement_area import MovementAreaOverlay, box_from_rectangle, box_from_view
from ..tracing import SESSION_KEY, TracingSession, find_skeleton_layers
from ..view_geometry import displayed_axes, hidden_axis

__all__ = ["MovementAreaWidget", "session_for"]

MAX_VOXELS = 2**31 - 1


def session_for(viewer) -> TracingSession:
    """The viewer's tracing session (the one the tracing widget made), or a new one."""
    points, _ = find_skeleton_layers(viewer)
    if points is not None and SESSION_KEY in points.metadata:
        return points.metadata[SESSION_KEY]
    session = TracingSession(viewer)
    session.install()
    return session


class MovementAreaWidget(Container):
    """Define the KNOSSOS movement area; outside it is darkened and edits are refused."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.session: TracingSession | None = None
        self.overlay: MovementAreaOverlay | None = None
        self._drawing = None
        self.min_x, self.min_y, self.min_z = (SpinBox(label=f"min {a}", min=-MAX_VOXELS, max=MAX_VOXELS)
                                              for a in "xyz")
        self.size_x, self.size_y, self.size_z = (SpinBox(label=f"size {a}", min=1, max=MAX_VOXELS, value=256)
                                                 for a in "xyz")
        self.depth = SpinBox(label="depth (view / drawn)", min=1, max=MAX_VOXELS, value=64,
                             tooltip="slices the area spans along the axis you look along")
        self.apply_button = PushButton(text="Apply")
        self.view_button = PushButton(text="From current view")
        self.draw_button = PushButton(text="Draw rectangle")
        self.clear_button = PushButton(text="Clear")
        self.darkness = FloatSlider(label="darken outside", min=0.0, max=1.0, step=0.05, value=0.6)
        self.status = Label(value="")
        super().__init__(widgets=[self.min_x, self.min_y, self.min_z, self.size_x, self.size_y, self.size_z,
                                  self.apply_button, self.view_button, self.depth, self.draw_button,
                                  self.clear_button, self.darkness, self.status])
        self.apply_button.changed.connect(self.apply)
        self.view_button.changed.connect(self.from_view)
        self.draw_button.changed.connect(self.start_drawing)
        self.clear_button.changed.connect(self.clear)
        self.darkness.changed.connect(lambda value: self.overlay and self.overlay.set_darkness(value))
        if len(napari_viewer.layers):
            self.attach()

    # -- session --------------------------------------------------------------------------
    def attach(self) -> TracingSession:
        if self.session is None:
            self.session = session_for(self.viewer)
            self.overlay = MovementAreaOverlay(self.viewer, self.session, self.darkness.value)
            self.session.editor.subscribe(self._on_change)
            self._show_area()
        return self.session

    def _on_change(self, change) -> None:
        if change.kind in ("parameters", "full"):
            self._show_area()

    def _show_area(self) -> None:
        area = self.session.skel.parameters.movement_area
        if area is None:
            self.status.value = "no movement area: everything is editable"
            return
        for box, values in (((self.min_x, self.min_y, self.min_z), area.top_left),
                            ((self.size_x, self.size_y, self.size_z), area.size)):
            for spin, v in zip(box, values):
                with spin.changed.blocked():
                    spin.value = int(v)
        lo = tuple(int(v) for v in area.top_left)
        hi = tuple(int(a + s) for a, s in zip(area.top_left, area.size))
        self.status.value = f"movement area x {lo[0]}–{hi[0]}, y {lo[1]}–{hi[1]}, z {lo[2]}–{hi[2]} (voxels)"

    def _set(self, top_left, size) -> None:
        try:
            self.attach().editor.set_movement_area(top_left, size)
        except EditRefused as refused:
            self.status.value = str(refused)
            self.session.status(str(refused))

    # -- actions --------------------------------------------------------------------------
    def apply(self, *_) -> None:
        """Set the area from the numbers."""
        self._set((self.min_x.value, self.min_y.value, self.min_z.value),
                  (self.size_x.value, self.size_y.value, self.size_z.value))

    def from_view(self, *_) -> None:
        """The current 2-D field of view, ``depth`` slices deep."""
        session = self.attach()
        if self.viewer.dims.ndisplay != 2:
            self.status.value = "switch to a 2-D view first"
            return
        top_left, size = box_from_view(self.viewer, session.scale_zyx, int(self.depth.value))
        self._set(top_left, size)

    def clear(self, *_) -> None:
        try:
            self.attach().editor.set_movement_area()
        except EditRefused as refused:
            self.status.value = str(refused)

    def start_drawing(self, *_) -> None:
        """Add a Shapes layer in rectangle mode; the first rectangle drawn becomes the area."""
        session = self.attach()
        if self._drawing is not None:
            return
        layer = self.viewer.add_shapes(name="draw the movement area", ndim=3, scale=tuple(session.scale_zyx),
                                       units=("nm", "nm", "nm"), edge_color="yellow", face_color="transparent")
        layer.mode = "add_rectangle"
        layer.events.data.connect(self._on_drawn)
        self._drawing = layer
        self.status.value = "drag a rectangle in the view"

    def _on_drawn(self, event) -> None:
        layer = self._drawing
        action = str(getattr(event, "action", "")).rsplit(".", 1)[-1].lower()
        if layer is None or action != "added" or not len(layer.data):
            return
        corners = np.asarray(layer.data[-1], np.float64)  # layer data: voxels (z, y, x)
        displayed = displayed_axes(self.viewer)
        hidden = hidden_axis(self.viewer)
        current = round(float(corners[0, hidden]))
        depth = int(self.depth.value)
        top_left, size = box_from_rectangle(corners + 0.5, displayed, (current - depth // 2, current - depth // 2 + depth))
        self._drawing = None
        layer.events.data.disconnect(self._on_drawn)
        self._set(top_left, size)
        # remove the drawing layer once napari has finished handling this mouse event
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: layer in self.viewer.layers and self.viewer.layers.remove(layer))
