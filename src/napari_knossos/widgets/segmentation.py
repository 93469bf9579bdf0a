"""The segmentation dock widget (magicgui): brush, bucket fill, merge, objects (fields and a table),
mappings, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea

from ..formats.inplace import ReadOnlyDatasetError
from ..segmentation_layers import SegmentationSession, find_segmentation_layers
from .movement_area import session_for
from .objects import ObjectTableWidget

__all__ = ["SegmentationWidget", "format_color", "parse_color"]

TOOLS = {"Off": None, "Paint": "paint", "Fill": "fill", "Merge": "merge"}
COLOR_HELP = "#rrggbb or r,g,b (0-255); empty: the lookup-table colour"


def parse_color(text: str) -> tuple[int, int, int] | None:
    """An object colour typed as ``#rrggbb`` or ``r,g,b``, or None for an empty text; ValueError
    saying what is wrong otherwise (the 0-255 range is checked by ``SegmentObjects.set_color``)."""
    text = str(text).strip()
    if not text:
        return None
    if text.startswith("#"):
        if len(text) != 7:
            raise ValueError(f"colour {text!r}: expected #rrggbb")
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            raise ValueError(f"colour {text!r}: not hexadecimal") from None
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        rgb = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"colour {text!r}: expected {COLOR_HELP}") from None
    if len(rgb) != 3:
        raise ValueError(f"colour {text!r}: expected three values 0-255")
    return rgb


def format_color(rgb) -> str:
    return "" if rgb is None else "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


TARGETS = ["annotation (.k.zip)", "dataset (in place)", "webKnossos volume zip", "webKnossos volume zip (WKW)"]


class SegmentationWidget(Container):
    """Edit a segmentation layer at any mag (see :mod:`napari_knossos.segmentation_layers`)."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.session: SegmentationSession | None = None
        self.layer_choice = ComboBox(label="segmentation", choices=self._layer_names)
        self.start_button = PushButton(text="Edit this layer")
        self.new_button = PushButton(text="New empty segmentation")
        self.tool = RadioButtons(label="tool", choices=list(TOOLS), value="Off", orientation="horizontal")
        self.active_id = SpinBox(label="paint id", min=0, max=2**53, value=1)
        self.new_id_button = PushButton(text="New id")
        self.radius = FloatSpinBox(label="brush radius", min=0.5, max=10_000, value=5, step=0.5)
        self.radius_unit = ComboBox(label="unit", choices=["voxels", "nm"], value="voxels")
        self.shape = ComboBox(label="brush shape", choices=["round", "square"], value="round")
        self.brush_3d = CheckBox(text="3-D brush", value=False)
        self.overpaint = CheckBox(text="overpaint (never onto background)", value=False)
        self.erase_selected = CheckBox(text="erase only the selected object", value=False)
        self.fill_3d = CheckBox(text="3-D fill", value=False)
        self.merged_view = CheckBox(text="merged view (colour by object)", value=False)
        self.borders = CheckBox(text="borders only", value=False)
        self.opacity = FloatSlider(label="opacity", min=0.0, max=1.0, step=0.05, value=0.6)
        self.merge_tracing = CheckBox(text="merge tracing (nodes merge their supervoxel)", value=False)
        self.agglomerate = ComboBox(label="agglomerate", choices=["(none)"], value="(none)")
        self.object_label = Label(value="no object selected")
        self.lock = CheckBox(text="locked", value=False)
        self.todo = CheckBox(text="todo", value=False)
        self.comment = LineEdit(label="object comment")
        self.category = LineEdit(label="object category")
        self.color = LineEdit(label="object colour", tooltip=COLOR_HELP)
        self.color_button = PushButton(text="Pick object colour…")
        self.new_colors_button = PushButton(text="New colours (Shift+L)")
        self.jump_button = PushButton(text="Jump to object")
        self.mesh_button = PushButton(text="Mesh selected object (or paint id)")
        self.attach_mesh_button = PushButton(text="Attach last mesh to the active tree")
        self.undo_button = PushButton(text="Undo")
        self.redo_button = PushButton(text="Redo")
        self.target = ComboBox(label="save to", choices=TARGETS, value=TARGETS[0])
        self.save_button = PushButton(text="Save segmentation")
        self.cursor = Label(value="")
        self.status = Label(value="")
        self.objects_table = ObjectTableWidget()
        super().__init__(widgets=[
            self.layer_choice, self.start_button, self.new_button, self.tool, self.active_id, self.new_id_button, self.radius,
            self.radius_unit, self.shape, self.brush_3d, self.overpaint, self.erase_selected, self.fill_3d,
            self.merged_view, self.borders, self.opacity, self.merge_tracing, self.agglomerate, self.object_label,
            self.lock, self.todo, self.comment, self.category, self.color, self.color_button,
            self.new_colors_button, self.jump_button, self.mesh_button,
            self.attach_mesh_button, self.undo_button, self.redo_button,
            self.target, self.save_button, self.cursor, self.status])
        self.start_button.changed.connect(lambda *_: self.start())
        self.new_button.changed.connect(lambda *_: self.new_segmentation())
        self.tool.changed.connect(self._on_tool)
        self.active_id.changed.connect(lambda v: self.session and setattr(self.session, "active_id", int(v)))
        self.new_id_button.changed.connect(self.new_id)
        for w in (self.radius, self.radius_unit, self.shape, self.brush_3d, self.overpaint, self.erase_selected,
                  self.fill_3d):
            w.changed.connect(lambda *_: self._apply_settings())
        self.merged_view.changed.connect(lambda on: self.session and self.session.set_merged_view(on))
        self.borders.changed.connect(self._on_borders)
        self.opacity.changed.connect(self._on_opacity)
        self.merge_tracing.changed.connect(lambda on: self.session and setattr(self.session, "merge_tracing", on))
        self.agglomerate.changed.connect(self._on_agglomerate)
        self.lock.changed.connect(lambda on: self._object_edit("set_immutable", on))
        self.todo.changed.connect(lambda on: self._object_edit("set_todo", on))
        self.comment.changed.connect(lambda text: self._object_edit("set_comment", text))
        self.category.changed.connect(lambda text: self._object_edit("set_category", text))
        # applied when typing is done (Enter, focus out), not per keystroke: one undo step per colour
        self.color.native.editingFinished.connect(lambda: self.set_object_color(self.color.value))
        self.color_button.changed.connect(lambda *_: self.pick_object_color())
        self.new_colors_button.changed.connect(lambda *_: self.session and self.session.new_colors())
        self.jump_button.changed.connect(self.jump_to_object)
        self.mesh_button.changed.connect(lambda *_: self.mesh_selected())
        self.attach_mesh_button.changed.connect(lambda *_: self.attach_mesh())
        self.last_mesh = None
        self.undo_button.changed.connect(lambda *_: self.session and self.session.undo())
        self.redo_button.changed.connect(lambda *_: self.session and self.session.redo())
        self.save_button.changed.connect(lambda *_: self.save())
        napari_viewer.layers.events.inserted.connect(lambda *_: self.layer_choice.reset_choices())
        napari_viewer.layers.events.removed.connect(lambda *_: self.layer_choice.reset_choices())
        self.native.layout().addWidget(self.objects_table)  # a Qt table in the magicgui container
        self.objects_table.object_clicked.connect(self.pick_object)
        self.objects_table.object_activated.connect(self._jump_to)
        self.objects_table.delete_requested.connect(self.delete_object)
        if find_segmentation_layers(napari_viewer):
            self.start()

    def _layer_names(self, *_):
        return [layer.name for layer in find_segmentation_layers(self.viewer)]

    # -- session ----------------------------------------------------------------------------------
    def start(self) -> SegmentationSession | None:
        """Make the chosen segmentation layer editable."""
        name = self.layer_choice.value
        if not name:
            self.status.value = "open a dataset with a segmentation layer first"
            return None
        if self.session is not None and self.session.labels.name == name:
            return self.session
        if self.session is not None:
            self.session.uninstall()
        tracing = session_for(self.viewer)
        labels = self.viewer.layers[name]
        volume, applied = self._volume_with_overlay(labels)
        self.session = SegmentationSession(self.viewer, labels, tracing=tracing, status=self._show_status,
                                           volume=volume)
        self.session.add_status_callback(lambda text: setattr(self.cursor, "value", text))
        self.session.install()
        self.session.segments.subscribe(lambda *_: self._show_object())
        segments = self.session.segments
        segments.subscribe(lambda change: self._on_objects_changed(segments, change))
        self.session.active_id_callbacks.append(self._on_key_active_id)
        self.session.selection_callbacks.append(self._on_selection)
        self.session.brush_callbacks.append(self._on_brush)
        self.objects_table.set_segments(segments)
        self.objects_table.show_selected(self.session.selected_object)
        self.active_id.value = int(self.session.active_id)
        self._apply_settings()
        self._on_opacity(self.opacity.value)
        self._find_agglomerates()
        message = f"editing {name} at mag {self.session.volume.mags[self.session.level]}"
        if applied is not None:
            message += f"; the edits of {applied.name} are applied to it"
        self._show_status(message)
        return self.session

    def _volume_with_overlay(self, labels):
        """An annotation's segmentation edits opened as an overlay layer (a .k.zip's cubes, a
        webKnossos volume zip) are applied to the dataset layer being edited, and the overlay hidden."""
        from ..annotation.kzip import Annotation
        from ..annotation.volume import EditableVolume
        from ..layer_data import METADATA_KEY

        meta0 = labels.metadata[METADATA_KEY]
        model = meta0.get("model")
        if model is None or meta0.get("volume") is not None:
            return meta0.get("volume"), None  # an overlay itself, or already being edited: keep its edits
        for layer in self.viewer.layers:
            meta = layer.metadata.get(METADATA_KEY)
            if layer is labels or layer.metadata.get("napari_knossos_role") != "segmentation overlay":
                continue
            ann = meta.get("annotation")
            try:
                if isinstance(ann, Annotation):
                    volume = EditableVolume.from_kzip(ann, model)
                else:
                    volume = EditableVolume.from_volume_zip(ann, model, name_or_id=meta.get("volume_id"))
            except (ValueError, KeyError) as error:
                self._show_status(f"{layer.name} not applied: {error}")
                continue
            layer.visible = False
            return volume, layer
        return None, None

    def new_segmentation(self, name: str = "new segmentation") -> SegmentationSession | None:
        """An empty uint64 segmentation over the dataset's extent and mags, to paint from scratch
        (saved into the annotation or a volume zip; it has no dataset to write into)."""
        from ..annotation.volume import EditableVolume
        from ..layer_data import METADATA_KEY
        from ..segmentation_layers import overlay_layer_data

        model = next((layer.metadata[METADATA_KEY]["model"] for layer in self.viewer.layers
                      if isinstance(layer.metadata.get(METADATA_KEY), dict)
                      and layer.metadata[METADATA_KEY].get("model") is not None), None)
        if model is None or model.size is None:
            self.status.value = "open a dataset first: the new segmentation takes its extent and mags"
            return None
        mags = [tuple(int(f) for f in m.factor) for m in model.mags]
        volume = EditableVolume(None, shape_zyx=tuple(model.size)[::-1], offset_xyz=tuple(model.offset),
                                mags=mags, voxel_size=tuple(model.voxel_size), dtype=np.uint64)
        data, kwargs, _ = overlay_layer_data(volume, name, source="")
        kwargs["metadata"]["napari_knossos_role"] = "new segmentation"
        self.viewer.add_labels(data, **kwargs)
        self.layer_choice.reset_choices()
        self.layer_choice.value = name
        return self.start()

    def _show_status(self, message: str) -> None:
        self.status.value = message

    def _on_tool(self, value) -> None:
        session = self.start()
        if session is not None:
            session.set_tool(TOOLS[value])

    def _apply_settings(self) -> None:
        s = self.session
        if s is None:
            return
        radius = float(self.radius.value)
        if self.radius_unit.value == "nm":  # nm → voxels of the current mag (in-plane voxel size)
            radius = radius / float(s.scale_zyx[-1] * s.factor_zyx()[-1])
        s.brush_radius = max(radius, 0.5)
        s.brush_shape = self.shape.value
        s.brush_dims = 3 if self.brush_3d.value else 2
        s.overpaint = bool(self.overpaint.value)
        s.erase_selected_only = bool(self.erase_selected.value)
        s.fill_dims = 3 if self.fill_3d.value else 2

    def new_id(self, *_) -> int | None:
        if self.start() is None:
            return None
        self.active_id.value = self.session.new_object_id()
        return int(self.active_id.value)

    def _on_borders(self, on) -> None:
        s = self.session
        if s is None:
            return
        for layer in (s.labels, s.window):
            if layer is not None:
                layer.contour = 1 if on else 0

    def _on_opacity(self, value) -> None:
        """The segmentation's opacity: the editable window's (the pyramid under it stays transparent
        while editing, and gets this opacity back afterwards)."""
        s = self.session
        if s is None:
            return
        s._base_opacity = float(value)
        if s.window is not None:
            s.window.opacity = float(value)

    # -- agglomerates -----------------------------------------------------------------------------
    def _find_agglomerates(self) -> None:
        from ..formats.agglomerate import agglomerate_files

        try:
            files = agglomerate_files(self.session.model) if self.session.model is not None else {}
        except (OSError, ValueError, KeyError) as error:  # a listing problem must not stop editing
            files = {}
            self._show_status(f"agglomerate files not listed: {error}")
        self._agglomerate_files = files
        self.agglomerate.choices = ["(none)", *files]

    def _on_agglomerate(self, name) -> None:
        from ..formats.agglomerate import AgglomerateMapping

        if self.session is None:
            return
        if name in (None, "(none)"):
            self.session.set_agglomerate(None)
            return
        path, _ = self._agglomerate_files[name]
        try:
            self.session.set_agglomerate(AgglomerateMapping(path))
        except (OSError, ValueError) as error:
            self._show_status(f"{name}: {error}")

    # -- objects ----------------------------------------------------------------------------------
    def _show_object(self) -> None:
        s = self.session
        obj = s.selected_object if s is not None else None
        if obj is None or obj not in s.segments.objects:
            self.object_label.value = "no object selected"
            return
        o = s.segments.objects[obj]
        self.object_label.value = f"object {obj}: {len(o.supervoxels)} supervoxels"
        for widget, value in ((self.lock, o.immutable), (self.todo, o.todo), (self.comment, o.comment or ""),
                              (self.category, o.category or ""), (self.color, format_color(o.color))):
            if widget.value != value:  # unchanged text keeps its cursor
                with widget.changed.blocked():
                    widget.value = value

    def select_object(self, object_id: int | None) -> None:
        """Select an object (as a left-click on it does): the fields and the table show it."""
        if self.session is not None:
            self.session.select_object(object_id)

    def pick_object(self, object_id: int) -> None:
        """A click on the object's table row: select it and paint with its first supervoxel (ascending),
        as a left-click on it in the canvas does."""
        s = self.session
        if s is None or object_id not in s.segments.objects:
            return
        supervoxels = s.segments.supervoxels_of(object_id)
        if supervoxels.size:
            s.active_id = int(supervoxels[0])
            for callback in list(s.active_id_callbacks):
                callback(s.active_id)
        s.select_object(object_id)

    def _on_selection(self, object_id) -> None:
        self._show_object()
        self.objects_table.show_selected(object_id)

    def _on_objects_changed(self, segments, change) -> None:
        if self.session is not None and self.session.segments is segments:
            self.objects_table.refresh(self.session.selected_object, getattr(change, "object_ids", None))

    def _jump_to(self, object_id) -> None:
        self.pick_object(object_id)
        self.jump_to_object()

    def delete_object(self, object_id: int | None = None) -> bool:
        """Delete the selected object (or ``object_id``); one undo step, refused in Review mode and
        for a locked object."""
        s = self.session
        object_id = s.selected_object if s is not None and object_id is None else object_id
        if s is None or object_id is None or object_id not in s.segments.objects:
            self._show_status("select an object to delete")
            return False
        s.guarded(s.segments.delete_object, object_id)
        if object_id in s.segments.objects:
            return False
        if s.selected_object == object_id:
            s.select_object(None)
        self._show_status(f"object {object_id} deleted")
        return True

    def _on_brush(self, radius: float) -> None:
        """A key or the wheel resized the brush: show it (in the unit chosen)."""
        s = self.session
        value = radius if self.radius_unit.value == "voxels" else radius * float(s.scale_zyx[-1] * s.factor_zyx()[-1])
        with self.radius.changed.blocked():
            self.radius.value = value

    def _object_edit(self, method: str, value) -> None:
        """A field of the selected object was edited: store it (one undo step); refused (Review mode, a
        locked object) the field shows the stored value again."""
        s = self.session
        if s is None or s.selected_object is None:
            return
        s.guarded(getattr(s.segments, method), s.selected_object, value)
        self._show_object()

    def _on_key_active_id(self, value: int) -> None:
        """Key ``C`` made an object: show its id as the paint id and the object's fields."""
        with self.active_id.changed.blocked():
            self.active_id.value = int(value)
        self._show_object()

    def set_object_color(self, text) -> None:
        """Custom colour of the selected object (undoable, saved in the mergelist); empty: default."""
        s = self.session
        if s is None or s.selected_object is None:
            return
        try:
            rgb = parse_color(text) if isinstance(text, str) else text
            if rgb != s.segments.objects[s.selected_object].color:
                s.guarded(s.segments.set_color, s.selected_object, rgb)
        except ValueError as error:  # parse_color's or set_color's (the 0-255 range)
            self._show_status(f"object {s.selected_object}: {error}")
        self._show_object()  # the stored colour (the same text unless refused or invalid)

    def pick_object_color(self) -> None:
        """Choose the selected object's colour in Qt's colour dialog."""
        from qtpy.QtGui import QColor
        from qtpy.QtWidgets import QColorDialog

        s = self.session
        if s is None or s.selected_object is None:
            self._show_status("select an object first")
            return
        rgb = s.segments.objects[s.selected_object].color
        color = QColorDialog.getColor(QColor(*rgb) if rgb else QColor(255, 255, 255), None, "Object colour")
        if color.isValid():
            self.color.value = format_color((color.red(), color.green(), color.blue()))
            self.set_object_color(self.color.value)

    def jump_to_object(self, *_) -> None:
        s = self.session
        if s is None or s.selected_object is None:
            return
        o = s.segments.objects[s.selected_object]
        if o.position is None:
            self._show_status(f"object {o.id} has no position")
            return
        x, y, z = o.position
        world = np.array([z, y, x], np.float64) * s.scale_zyx
        offset = self.viewer.dims.ndim - 3
        for axis in range(3):
            self.viewer.dims.set_point(offset + axis, float(world[axis]))
        self.viewer.scene.camera.center = tuple(world.tolist())

    # -- meshes ------------------------------------------------------------------------------------
    def mesh_selected(self, *, block: bool = False):
        """Mesh the selected object (or the paint id's segment) at the mag shown, in a background
        thread with napari's progress bar; the result becomes a Surface layer."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        s = self.start()
        if s is None:
            return None
        label, ids = s.mesh_ids()
        bar = progress(total=0, desc=f"meshing {label}")
        worker = create_worker(s.compute_mesh, ids)

        def done(mesh):
            bar.close()
            self.last_mesh = (label, mesh)
            self.mesh_layer = s.add_mesh_layer(mesh, label)
            self._show_status(f"{label}: mesh of {len(mesh.faces)} triangles")

        def failed(error):
            bar.close()
            self._show_status(f"{label}: no mesh ({error})")

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.start()
        self.mesh_worker = worker
        return worker

    def attach_mesh(self) -> int | None:
        """Give the active tree the last mesh (KNOSSOS keeps one mesh per tree; saved in the .k.zip)."""
        s = self.session
        if s is None or self.last_mesh is None:
            self._show_status("make a mesh first")
            return None
        editor = s.tracing.editor
        tree = editor.active_tree
        if tree is None:
            self._show_status("no active tree: trace or select one first")
            return None
        label, mesh = self.last_mesh
        s.guarded(editor.set_mesh, tree, mesh)
        self._show_status(f"{label} is now the mesh of tree {tree}")
        return tree

    # -- saving -----------------------------------------------------------------------------------
    def save(self, path: str | None = None) -> str | int | None:
        """Save the edits where the user chose (annotation, dataset in place, volume zip)."""
        s = self.start()
        if s is None:
            return None
        target = self.target.value
        try:
            if target == TARGETS[1]:
                return s.save_to_dataset()
            if target in (TARGETS[2], TARGETS[3]):
                if path is None:
                    from qtpy.QtWidgets import QFileDialog

                    path, _ = QFileDialog.getSaveFileName(None, "Save volume annotation", "volume.zip", "zip (*.zip)")
                    if not path:
                        return None
                from ..annotation.nml import write_nml

                n = s.volume.save_to_volume_zip(path, write_nml(s.tracing.skel, dialect="webknossos"),
                                                fmt="wkw" if target == TARGETS[3] else "zarr3", name=s.labels.name)
                self._show_status(f"{n} buckets written to {Path(path).name}")
                return path
            n = s.store_in_annotation()
            self._show_status(f"{n} cubes and {len(s.segments)} objects put into the annotation; "
                              "save it with the tracing widget")
            return n
        except ReadOnlyDatasetError as error:
            self._show_status(f"{error} — choose 'annotation (.k.zip)' to keep the edits")
            return None
        except (OSError, ValueError) as error:
            self._show_status(f"not saved: {error}")
            return None


class SegmentationDock(QScrollArea):
    """The Segmentation widget in a vertical scroll area, as napari's Plugins menu docks it.

    The widget is taller than small screens, and napari docks a magicgui widget's inner QWidget
    (magicgui's own ``scrollable`` does not reach the dock), so the scroll area is made here. napari
    passes the viewer to a class's ``napari_viewer`` argument (not to a plain function's). The
    magicgui widget is ``.segmentation``.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.segmentation = SegmentationWidget(napari_viewer)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(self.segmentation.native)
        inner = self.segmentation.native.minimumSizeHint().width()
        self.setMinimumWidth(inner + self.verticalScrollBar().sizeHint().width())
