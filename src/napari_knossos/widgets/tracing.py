"""The tracing dock widget: KNOSSOS work modes, undo, tables, synapses, properties, cheat sheet.

Qt only here; the work happens in :class:`napari_knossos.tracing.TracingSession` (napari
adapter) and the pure annotation model. Timers: folding new nodes into the main layers when
the user pauses, the working-time display, and autosave to a recovery file.
"""

from __future__ import annotations

import html
import os
import re
import warnings
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..annotation import autosave
from ..annotation.editing import EditRefused, Mode
from ..annotation.synapses import (
    synapse_table,
    write_connectivity_csv,
    write_synapses_csv,
)
from ..annotation.worktime import WorkTimer
from ..segmentation_layers import SEGMENTATION_KEYS
from ..settings import CommentSlot, TracingSettings, load_settings, save_settings, settings_path
from ..tracing import KEYS, TracingSession, find_skeleton_layers
from .tables import SkeletonTablesWidget

__all__ = ["TracingWidget", "cheat_sheet_html", "user_data_dir"]

FLUSH_DELAY_MS = 1500  # fold the "(new)" layers into the main ones after this pause
DEFAULT_DEPTH = 2  # slices either side of the current one in which the skeleton shows
SAVE_DELAY_MS = 500  # write the settings file this long after the last settings change
STYLE_DELAY_MS = 300  # restyle the nodes this long after the last typed style change

MOUSE = [
    ("right-click", "place a node (linked to the active node per mode)", "right-click"),
    ("Ctrl + right-click", "place a linked stub, pushed as a branch point; the active node stays", "Ctrl + right-click"),
    ("left-click a node", "make it the active node", "left-click"),
    ("Shift / Ctrl + left-click", "add to / toggle in the selection", "Shift / Ctrl + left-click"),
    ("Shift / Ctrl + left-drag elsewhere", "box: add / toggle the shown nodes inside it", "Shift / Ctrl + left-drag"),
    ("left-drag a node", "move it (middle-drag too)", "middle-drag"),
    ("Alt + left-click a node", "link / unlink it with the active node", "Alt + left-click"),
    ("Shift + wheel", "active node radius ± 10 %", "Shift + wheel"),
    ("left-drag / right-drag elsewhere", "pan / zoom (napari)", "left-drag / Ctrl + wheel"),
]
READ_ONLY_ACTIONS = {"save", "jump_to_active", "traverse_forward", "traverse_backward", "next_node", "previous_node",
                     "next_tree", "previous_tree", "jump_to_cycle", "pop_branchpoint"}
ADVANCED_ONLY = {"synapse", "reverse_synapse"}
REVIEW_MOUSE = {"left-click a node", "Shift / Ctrl + left-click", "Shift / Ctrl + left-drag elsewhere",
                "left-drag / right-drag elsewhere"}  # selecting and moving the view: allowed in Review
ACTIVITY_EVENTS = frozenset((QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick,
                             QEvent.Type.Wheel))
FILTERED_EVENTS = ACTIVITY_EVENTS | {QEvent.Type.ShortcutOverride}  # the app-wide filter looks at these only


def user_data_dir() -> str:
    """Where recovery files go when the annotation's folder is not writable or unnamed."""
    override = os.environ.get("NAPARI_KNOSSOS_DATA_DIR")
    if override:
        return override
    from platformdirs import user_data_dir as platform_dir

    return platform_dir("napari-knossos", appauthor=False)


def _key_text(key: str) -> str:
    """napari's key name as shown: ``Control-Shift-Z`` → ``Ctrl+Shift+Z``; the keys ``-`` and ``=`` stay."""
    return html.escape(re.sub(r"(?<=\w)-(?=.)", "+", key.replace("Control", "Ctrl")))


def cheat_sheet_html(mode: Mode) -> str:
    """The keys and mouse actions of ``mode`` as an HTML table (KNOSSOS equivalents alongside),
    and the Segmentation widget's keys (from :data:`~napari_knossos.segmentation_layers.SEGMENTATION_KEYS`)."""
    rows = []
    for key, (name, text) in KEYS.items():
        if mode is Mode.REVIEW and name not in READ_ONLY_ACTIONS and not name.startswith("undo"):
            continue
        if mode is Mode.TRACING and name in ADVANCED_ONLY:
            continue
        rows.append(f"<tr><td><b>{_key_text(key)}</b></td><td>{html.escape(text)}</td></tr>")
    mouse = "".join(f"<tr><td><b>{html.escape(a)}</b></td><td>{html.escape(b)}</td><td>{html.escape(k)}</td></tr>"
                    for a, b, k in MOUSE if mode is not Mode.REVIEW or a in REVIEW_MOUSE)
    segmentation = "".join(f"<tr><td><b>{_key_text(key)}</b></td><td>{html.escape(text)}</td></tr>"
                           for key, (_name, text) in SEGMENTATION_KEYS.items())
    notes = {
        Mode.TRACING: "One tree at a time; every new node is linked to the active node; no cycles.",
        Mode.TRACING_ADVANCED: "Several trees, unlinked nodes (linking option), cycles and synapses allowed.",
        Mode.REVIEW: "Read-only: every edit is refused with a message; navigation works.",
    }[mode]
    return (f"<h3>{html.escape(mode.value)}</h3><p>{html.escape(notes)}</p>"
            "<h4>Keys</h4><table>" + "".join(rows) + "</table>"
            "<h4>Mouse</h4><table><tr><th>napari</th><th>does</th><th>KNOSSOS</th></tr>" + mouse + "</table>"
            "<p>With a Labels layer selected, napari's label keys (E F L M P X B Z) win; "
            "select the image or skeleton layer to trace. The image layer's C (auto-contrast) and "
            "X/Y/Z (3-D plane) keys are replaced while tracing; Ctrl+S saves the annotation instead of "
            "napari's \"Save layers\".</p>"
            "<h4>Segmentation</h4><p>Keys of the Segmentation widget while one of its tools is on:</p>"
            "<table>" + segmentation + "</table>")


def _is_save_key(event) -> bool:
    """Ctrl+S (Cmd+S on macOS)."""
    mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return event.key() == Qt.Key.Key_S and mods == Qt.KeyboardModifier.ControlModifier


def _format_ms(ms: int) -> str:
    s = int(ms) // 1000
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class TracingWidget(QWidget):
    """Dock widget: trace skeletons and synapses the KNOSSOS way on the napari viewer."""

    status_changed = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: TracingSession | None = None
        self.timer: WorkTimer | None = None
        self.autosaver = autosave.Autosaver()
        self.recovery: Path | None = None
        self._synapses_stale = True
        self._slot_colors: list[tuple | None] = [None] * 10
        self._wanted_size_property = self._wanted_color_property = ""
        self._loading = False
        self._build()
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.timeout.connect(lambda: self.save_settings())
        self._style_timer = QTimer(self)
        self._style_timer.setSingleShot(True)
        self._style_timer.timeout.connect(self.apply_style)
        self.settings_file = settings_path()
        self.load_settings()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._on_tick)
        self._tick.start(1000)
        self._filtering = False  # the app-wide event filter (working time, Ctrl+S) is installed
        self._closed = False
        points, _ = find_skeleton_layers(napari_viewer)
        if points is not None or len(napari_viewer.layers):
            self.start()

    # -- layout ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.start_button = QPushButton("Start tracing")
        self.start_button.setToolTip("Trace the skeleton on the viewer, or a new one on the image")
        self.start_button.clicked.connect(self.start)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([m.value for m in Mode])
        self.mode_combo.setToolTip("KNOSSOS work mode")
        self.mode_combo.currentTextChanged.connect(self._on_mode_combo)
        self.mode_label = QLabel()
        self.mode_label.setStyleSheet("font-weight: bold")
        top.addWidget(self.start_button)
        top.addWidget(QLabel("Mode:"))
        top.addWidget(self.mode_combo, 1)
        layout.addLayout(top)
        layout.addWidget(self.mode_label)

        buttons = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save")
        self.save_as_button = QPushButton("Save as…")
        self.undo_button.clicked.connect(lambda: self.session and self.session.undo())
        self.redo_button.clicked.connect(lambda: self.session and self.session.redo())
        self.save_button.clicked.connect(lambda: self.save())
        self.save_as_button.clicked.connect(lambda: self.save(ask=True))
        for b in (self.undo_button, self.redo_button, self.save_button, self.save_as_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        self.dirty_label = QLabel()
        self.time_label = QLabel()
        info = QHBoxLayout()
        info.addWidget(self.dirty_label)
        info.addStretch(1)
        info.addWidget(self.time_label)
        layout.addLayout(info)
        self.active_label = QLabel("no active node")
        self.active_label.setWordWrap(True)
        layout.addWidget(self.active_label)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #e8a33d")
        layout.addWidget(self.status_label)

        self.recovery_box = QGroupBox("Recovery")
        rlay = QHBoxLayout(self.recovery_box)
        self.recovery_text = QLabel()
        self.recovery_text.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard")
        self.restore_button.clicked.connect(self.restore_recovery)
        self.discard_button.clicked.connect(self.discard_recovery)
        rlay.addWidget(self.recovery_text, 1)
        rlay.addWidget(self.restore_button)
        rlay.addWidget(self.discard_button)
        self.recovery_box.hide()
        layout.addWidget(self.recovery_box)

        self.tabs = QTabWidget()
        self.tables_holder = QWidget()
        QVBoxLayout(self.tables_holder).setContentsMargins(0, 0, 0, 0)
        self.tables: SkeletonTablesWidget | None = None
        self.tabs.addTab(self.tables_holder, "Tables")
        self.tabs.addTab(self._build_synapses(), "Synapses")
        self.tabs.addTab(self._build_properties(), "Properties")
        self.tabs.addTab(self._build_settings(), "Settings")
        self.cheat_sheet = QTextBrowser()
        self.tabs.addTab(self.cheat_sheet, "Keys")
        self.tabs.currentChanged.connect(lambda _i: self._refresh_synapses_if_visible())
        layout.addWidget(self.tabs, 1)
        self._update_mode_ui(Mode.TRACING)

    def _build_synapses(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.synapse_table = QTableWidget(0, 7)
        self.synapse_table.setHorizontalHeaderLabels(["cleft tree", "pre tree", "post tree", "cleft size nm",
                                                      "x", "y", "z"])
        self.synapse_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.synapse_table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.synapse_table.setSortingEnabled(True)
        self.synapse_table.cellDoubleClicked.connect(self._on_synapse_clicked)
        self.synapse_table.setToolTip("Double-click: pre tree column jumps to the pre-synapse, post tree to the "
                                      "post-synapse, any other to the cleft")
        lay.addWidget(self.synapse_table, 1)
        row = QHBoxLayout()
        self.show_synapse_trees = QCheckBox("show synapse trees")
        self.show_synapse_trees.setChecked(True)
        self.show_synapse_trees.toggled.connect(self.set_synapse_trees_visible)
        export = QPushButton("Export synapses CSV…")
        export.clicked.connect(lambda: self.export_synapses())
        matrix = QPushButton("Export connectivity CSV…")
        matrix.clicked.connect(lambda: self.export_connectivity())
        row.addWidget(self.show_synapse_trees)
        row.addStretch(1)
        row.addWidget(export)
        row.addWidget(matrix)
        lay.addLayout(row)
        return w

    def _build_properties(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.prop_key = QLineEdit()
        self.prop_key.setPlaceholderText("key")
        self.prop_value = QLineEdit()
        self.prop_value.setPlaceholderText("text or number")
        set_node = QPushButton("Set on active node")
        set_node.clicked.connect(lambda: self.set_property("node"))
        set_tree = QPushButton("Set on active tree")
        set_tree.clicked.connect(lambda: self.set_property("tree"))
        form.addRow("Property", self.prop_key)
        form.addRow("Value", self.prop_value)
        both = QHBoxLayout()
        both.addWidget(set_node)
        both.addWidget(set_tree)
        form.addRow(both)
        self.size_by = QComboBox()
        self.color_by = QComboBox()
        self.colormap = QComboBox()
        self.colormap.addItems(["viridis", "magma", "plasma", "turbo", "gray"])
        # the chosen names, kept while an annotation lacks them (the combos only list its properties)
        self.size_by.currentTextChanged.connect(
            lambda _t: setattr(self, "_wanted_size_property", self._chosen(self.size_by)))
        self.color_by.currentTextChanged.connect(
            lambda _t: setattr(self, "_wanted_color_property", self._chosen(self.color_by)))
        for combo in (self.size_by, self.color_by, self.colormap):
            combo.activated.connect(lambda _i: self.apply_style())
            combo.activated.connect(lambda _i: self._settings_changed())
        self.radius_scale = QDoubleSpinBox()
        self.radius_scale.setRange(0.001, 1e6)
        self.radius_scale.setDecimals(3)
        self.radius_scale.setValue(1.0)
        self.radius_scale.setToolTip("node radius (voxels) = scale × the property's value")
        self.color_auto = QCheckBox("auto")
        self.color_auto.setChecked(True)
        self.color_auto.setToolTip("colour range = the property's own min and max")
        self.color_min, self.color_max = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, value in ((self.color_min, 0.0), (self.color_max, 1.0)):
            spin.setRange(-1e12, 1e12)
            spin.setDecimals(3)
            spin.setValue(value)
        self.color_auto.toggled.connect(lambda on: (self.color_min.setEnabled(not on), self.color_max.setEnabled(not on)))
        self.color_min.setEnabled(False)
        self.color_max.setEnabled(False)
        for widget in (self.radius_scale, self.color_auto, self.color_min, self.color_max):
            signal = getattr(widget, "toggled", None) or widget.valueChanged
            signal.connect(lambda *_: self._style_changed())
        self.mesh_opacity = QDoubleSpinBox()
        self.mesh_opacity.setRange(0.0, 1.0)
        self.mesh_opacity.setSingleStep(0.1)
        self.mesh_opacity.setValue(0.6)
        self.mesh_opacity.valueChanged.connect(lambda v: self.session and self.session.set_mesh_opacity(v))
        jump_mesh = QPushButton("Jump to the active tree's mesh")
        jump_mesh.clicked.connect(lambda: self.session and self.session.jump_to_mesh())
        remove_mesh = QPushButton("Remove the active tree's mesh")
        remove_mesh.clicked.connect(self.remove_mesh)
        form.addRow("Mesh opacity", self.mesh_opacity)
        form.addRow(jump_mesh)
        form.addRow(remove_mesh)
        form.addRow("Node radius by", self.size_by)
        form.addRow("radius scale", self.radius_scale)
        form.addRow("Node colour by", self.color_by)
        form.addRow("Colormap", self.colormap)
        span = QHBoxLayout()
        span.addWidget(self.color_auto)
        span.addWidget(QLabel("min"))
        span.addWidget(self.color_min, 1)
        span.addWidget(QLabel("max"))
        span.addWidget(self.color_max, 1)
        form.addRow("colour range", span)
        self.mesh_opacity.valueChanged.connect(lambda _v: self._settings_changed())
        return w

    def _build_settings(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.slot_edits, self.slot_color_buttons, self.slot_radius_spins = [], [], []
        for i in range(10):
            edit = QLineEdit()
            edit.setPlaceholderText(f"comment for Ctrl+{(i + 1) % 10}")
            edit.textChanged.connect(lambda text, i=i: self._set_slot(i, text))
            color = QPushButton()
            color.setToolTip("highlight colour of nodes whose comment contains this text (first matching slot wins)")
            color.clicked.connect(lambda _c=False, i=i: self._pick_slot_color(i))
            clear = QToolButton()
            clear.setText("×")
            clear.setToolTip("no highlight colour")
            clear.clicked.connect(lambda _c=False, i=i: self.set_slot_color(i, None))
            radius = QDoubleSpinBox()
            radius.setRange(0.0, 1e4)
            radius.setSingleStep(0.5)
            radius.setSpecialValueText("radius –")
            radius.setToolTip("node radius (voxels) of nodes whose comment contains this text; – keeps theirs")
            radius.valueChanged.connect(lambda _v: self._slots_changed())
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(color)
            row.addWidget(clear)
            row.addWidget(radius)
            form.addRow(f"Ctrl+{(i + 1) % 10}", row)
            self.slot_edits.append(edit)
            self.slot_color_buttons.append(color)
            self.slot_radius_spins.append(radius)
            self._show_slot_color(i)
        self.comment_colors = QCheckBox("comment colours")
        self.comment_colors.setChecked(True)
        self.comment_radii = QCheckBox("comment radii")
        self.comment_radii.setChecked(True)
        for box in (self.comment_colors, self.comment_radii):
            box.toggled.connect(lambda _on: self._slots_changed())
        both = QHBoxLayout()
        both.addWidget(self.comment_colors)
        both.addWidget(self.comment_radii)
        form.addRow("highlight", both)
        self.show_comments = QCheckBox("show comments")
        self.show_comments.setToolTip("draw each node's comment beside it (KNOSSOS: show node comments)")
        self.show_comments.toggled.connect(lambda on: self.session and self.session.sync.set_show_comments(on))
        self.show_comments.toggled.connect(lambda _on: self._settings_changed())
        form.addRow(self.show_comments)
        self.default_radius = QDoubleSpinBox()
        self.default_radius.setRange(0.01, 1e4)
        self.default_radius.setSingleStep(0.5)
        self.default_radius.setValue(1.5)
        self.default_radius.setToolTip("radius (voxels) of new nodes")
        self.default_radius.valueChanged.connect(
            lambda v: self.session and setattr(self.session.editor, "default_radius", float(v)))
        self.default_radius.valueChanged.connect(lambda _v: self._settings_changed())
        form.addRow("default radius (voxels)", self.default_radius)
        self.linking = QCheckBox("link new nodes (Tracing Advanced; A cycles)")
        self.linking.setChecked(True)
        self.linking.toggled.connect(lambda on: self.session and setattr(self.session.editor, "linking", on))
        self.linking.toggled.connect(lambda _on: self._settings_changed())
        form.addRow(self.linking)
        self.locking = QCheckBox("radius locking")
        self.locking_word = QLineEdit("seed")
        self.locking_radius = QDoubleSpinBox()
        self.locking_radius.setRange(1, 1e6)
        self.locking_radius.setValue(100)
        for widget in (self.locking, self.locking_word, self.locking_radius):
            signal = getattr(widget, "toggled", None) or getattr(widget, "textChanged", None) or widget.valueChanged
            signal.connect(lambda *_: self._apply_locking())
            signal.connect(lambda *_: self._settings_changed())
        form.addRow(self.locking)
        form.addRow("locking word", self.locking_word)
        form.addRow("locking radius (voxels)", self.locking_radius)
        self.depth = QSpinBox()
        self.depth.setRange(0, 100)
        self.depth.setValue(DEFAULT_DEPTH)
        self.depth.setToolTip("nodes and edges this many slices above and below the current one are shown (and clickable)")
        self.depth.valueChanged.connect(lambda v: self.session and self.session.set_skeleton_depth(v))
        self.depth.valueChanged.connect(lambda _v: self._settings_changed())
        form.addRow("skeleton depth (slices each side)", self.depth)
        self.autosave_on = QCheckBox("autosave")
        self.autosave_on.setChecked(True)
        self.autosave_minutes = QSpinBox()
        self.autosave_minutes.setRange(1, 120)
        self.autosave_minutes.setValue(5)
        self.autosave_on.toggled.connect(lambda on: setattr(self.autosaver, "enabled", on))
        self.autosave_minutes.valueChanged.connect(lambda m: setattr(self.autosaver, "interval_s", 60.0 * m))
        self.autosave_on.toggled.connect(lambda _on: self._settings_changed())
        self.autosave_minutes.valueChanged.connect(lambda _m: self._settings_changed())
        form.addRow(self.autosave_on)
        form.addRow("every (minutes)", self.autosave_minutes)
        return w

    # -- session --------------------------------------------------------------------------
    def start(self) -> TracingSession:
        """Attach to the viewer's skeleton (or a new one on the image) and bind keys/mouse."""
        if self.session is not None:
            return self.session
        session = TracingSession(self.viewer, status=self._show_status)
        self.session = session
        session.install()
        session.activity_callbacks.append(self.activity)
        session.save_handler = self.save
        self._set_filtering(True)  # working time: any key, click or wheel
        session.editor.linking = self.linking.isChecked()
        session.editor.default_radius = float(self.default_radius.value())
        session.sync.set_show_comments(self.show_comments.isChecked())
        session.set_skeleton_depth(self.depth.value())
        session.editor.comment_slots[:] = [edit.text() for edit in self.slot_edits]
        self._apply_locking()
        session.set_mesh_opacity(self.mesh_opacity.value())
        self.timer = WorkTimer.from_skeleton(session.skel)
        session.editor.subscribe(self._on_change)
        self.tables = SkeletonTablesWidget(session.editor)
        self.tables_holder.layout().addWidget(self.tables)
        self.tables.status.connect(self._show_status)
        self.tables.jump_requested.connect(session.jump_to)
        session.table_navigator = self.tables
        self.mode_combo.setCurrentText(session.editor.mode.value)
        self._update_mode_ui(session.editor.mode)
        self._refresh_property_choices()
        if self._style_wanted():
            self.apply_style()
        self.start_button.setEnabled(False)
        self.start_button.setText("Tracing")
        self._check_recovery()
        self._update_labels()
        return session

    def activity(self) -> None:
        """A key press, mouse press or wheel turn in the viewer: counts for the working time."""
        if self.timer is not None:
            self.timer.activity()

    def _set_filtering(self, on: bool) -> None:
        """Install / remove the app-wide event filter (only while a session exists)."""
        if on != self._filtering:
            app = QApplication.instance()
            (app.installEventFilter if on else app.removeEventFilter)(self)
            self._filtering = on

    def _main_window(self) -> QWidget | None:
        """napari's main window: up the parent chain to the QMainWindow (also when the dock floats)."""
        w = self.parentWidget()
        while w is not None and not isinstance(w, QMainWindow):
            w = w.parentWidget()
        return w

    def _in_viewer(self, obj) -> bool:
        """Is ``obj`` in napari's main window, or in this widget's own floating dock?"""
        if self.session is None or not isinstance(obj, QWidget):
            return False
        window, own = obj.window(), self.window()
        return window is self._main_window() or (window is own and own is not self)

    def eventFilter(self, obj, event) -> bool:
        """Application-wide, as KNOSSOS' ActivityEventFilter: key presses, mouse presses and wheel
        turns in the viewer's window (and this widget's floating dock) count as activity (also
        napari's own keys and pans). Other events return at once.

        Ctrl+S there saves the annotation (:data:`~napari_knossos.tracing.KEYS`' "save", the Save
        button) instead of napari's "Save Selected Layers" menu shortcut: the shortcut is claimed
        (ShortcutOverride accepted) and the key press handled here."""
        kind = event.type()
        if kind not in FILTERED_EVENTS:
            return False
        if kind in ACTIVITY_EVENTS and self._in_viewer(obj):
            self.activity()
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and _is_save_key(event) \
                and self._in_viewer(obj):
            event.accept()
            if kind == QEvent.Type.KeyPress and not event.isAutoRepeat():
                self.session.save_key()
            return True
        return False

    def _show_status(self, message: str) -> None:
        self.status_label.setText(message)
        self.status_changed.emit(message)

    def _on_mode_combo(self, text: str) -> None:
        mode = Mode(text)
        if self.session is not None and self.session.editor.mode is not mode:
            self.session.editor.set_mode(mode)
        self._update_mode_ui(mode)

    def _update_mode_ui(self, mode: Mode) -> None:
        self.mode_label.setText(f"Mode: {mode.value}" + ("  (read-only)" if mode is Mode.REVIEW else ""))
        self.cheat_sheet.setHtml(cheat_sheet_html(mode))
        self.linking.setEnabled(mode is Mode.TRACING_ADVANCED)

    def _on_change(self, change) -> None:
        if change.kind == "mode":
            self.mode_combo.blockSignals(True)
            self.mode_combo.setCurrentText(self.session.editor.mode.value)
            self.mode_combo.blockSignals(False)
            self._update_mode_ui(self.session.editor.mode)
        if change.kind not in ("selection", "active", "mode"):
            self._synapses_stale = True
            self._refresh_synapses_if_visible()
            self._flush_timer.start(FLUSH_DELAY_MS)
            if change.kind in ("nodes_changed", "full"):
                self._refresh_property_choices()
        self._update_labels()

    def _flush(self) -> None:
        if self.session is not None:
            self.session.sync.flush()

    def _update_labels(self) -> None:
        s = self.session
        if s is None:
            self.active_label.setText("no skeleton: open an annotation or an image, then Start tracing")
            return
        ed = s.editor
        self.undo_button.setEnabled(ed.can_undo)
        self.redo_button.setEnabled(ed.can_redo)
        self.undo_button.setToolTip(f"Undo {ed.undo_text} (Ctrl+Z)" if ed.can_undo else "nothing to undo")
        self.redo_button.setToolTip(f"Redo {ed.redo_text} (Ctrl+Shift+Z)" if ed.can_redo else "nothing to redo")
        self.dirty_label.setText("● unsaved changes" if ed.dirty else "saved")
        self.dirty_label.setStyleSheet("color: #e05050" if ed.dirty else "color: gray")
        nid = ed.active_node
        if nid is None or not s.skel.has_node(nid):
            self.active_label.setText(f"{s.skel.num_nodes} nodes in {len(s.skel.trees)} trees; no active node")
        else:
            x, y, z = (int(c) for c in s.skel.position(nid))
            comment = s.skel.comments.get(nid, "")
            state = getattr(ed, "synapse_state", "idle")
            extra = "" if state == "idle" else f" — synapse: {state.replace('_', ' ')}"
            self.active_label.setText(f"active node {nid} (tree {s.skel.tree_of(nid)}) at ({x}, {y}, {z})"
                                      + (f" “{comment}”" if comment else "") + extra)

    def _on_tick(self) -> None:
        if self.session is None or self.timer is None:
            return
        self.time_label.setText(f"work time {_format_ms(self.timer.elapsed_ms)}")
        if self.autosaver.due(self.session.editor.dirty):
            self.autosave_now()

    # -- saving and recovery ----------------------------------------------------------------
    def _annotation_path(self) -> str | None:
        src = self.session.source if self.session else ""
        return src if src and ";" not in src else None

    def save(self, path: str | None = None, ask: bool = False) -> str | None:
        """Save the annotation (Ctrl+S in KNOSSOS) atomically; working time goes into the NML."""
        s = self.session
        if s is None:
            return None
        if ask or (path is None and self._annotation_path() is None):
            start = self._annotation_path() or str(Path.home() / autosave.default_annotation_name())
            path, _ = QFileDialog.getSaveFileName(self, "Save annotation", start, "KNOSSOS (*.k.zip);;NML (*.nml)")
            if not path:
                return None
        self.timer.apply_to(s.skel)
        try:
            written = s.save(path)
        except (OSError, ValueError) as error:
            self._show_status(f"not saved: {error}")
            return None
        self.autosaver.mark_done()
        for candidate in autosave.recovery_candidates(written, user_data_dir()):
            autosave.discard_recovery(candidate)
        self._update_labels()
        return written

    def autosave_now(self) -> Path | None:
        """Write the recovery file (never the annotation itself)."""
        s = self.session
        s.sync.flush()
        self.timer.apply_to(s.skel)
        s.annotation.skeleton = s.skel
        target = autosave.recovery_path(self._annotation_path(), user_data_dir())
        try:
            autosave.write_recovery(s.annotation, target)
        except (OSError, ValueError) as error:
            self.autosaver.mark_done()  # try again after the next interval, not every second
            self._show_status(f"autosave failed: {error}")
            return None
        self.autosaver.mark_done()
        self._show_status(f"autosaved to {target}")
        return target

    def _check_recovery(self) -> None:
        found = autosave.find_recovery(self._annotation_path(), user_data_dir())
        self.recovery = found
        if found is None:
            self.recovery_box.hide()
            return
        self.recovery_text.setText(f"A newer recovery file exists: {found.name}. Restore it?")
        self.recovery_box.show()

    def restore_recovery(self) -> None:
        """Replace the skeleton with the recovery file's (one undo step)."""
        from ..annotation.kzip import read_kzip

        if self.recovery is None or self.session is None:
            return
        try:
            ann = read_kzip(self.recovery)
        except (OSError, ValueError) as error:
            self._show_status(f"{self.recovery.name} not restored: {error}")
            return
        ed = self.session.editor
        current = self.session.annotation
        try:
            ed.replace_model(ann.skeleton)
        except EditRefused as refused:
            self._show_status(str(refused))
            return
        current.meshes.clear()  # the same dict the editor merges and deletes meshes in
        current.meshes.update(ann.meshes)
        current.objects, current.cubes = ann.objects, ann.cubes
        self.session.sync_meshes()
        self.timer = WorkTimer.from_skeleton(self.session.skel)
        self.recovery_box.hide()
        self._show_status(f"restored {self.recovery.name}")
        self.recovery = None

    def discard_recovery(self) -> None:
        if self.recovery is not None:
            autosave.discard_recovery(self.recovery)
        self.recovery = None
        self.recovery_box.hide()

    # -- synapses -------------------------------------------------------------------------
    def _refresh_synapses_if_visible(self) -> None:
        if self._synapses_stale and self.session is not None and self.tabs.currentIndex() == 1:
            self.refresh_synapses()

    def refresh_synapses(self) -> None:
        table = synapse_table(self.session.skel, self.session.voxel_size_xyz)
        self._synapses = table
        w = self.synapse_table
        w.setSortingEnabled(False)
        w.setRowCount(len(table.cleft_tree))
        for r in range(len(table.cleft_tree)):
            values = [table.cleft_tree[r], table.pre_tree[r], table.post_tree[r], table.cleft_size_nm[r],
                      table.x[r], table.y[r], table.z[r]]
            for c, v in enumerate(values):
                item = QTableWidgetItem()
                v = float(v)
                item.setData(Qt.ItemDataRole.DisplayRole, int(v) if c < 3 or not np.isfinite(v) or c > 3 and v.is_integer()
                             else round(v, 1))
                item.setData(Qt.ItemDataRole.UserRole, int(table.cleft_tree[r]))
                w.setItem(r, c, item)
        w.setSortingEnabled(True)
        self._synapses_stale = False

    def _on_synapse_clicked(self, row: int, column: int) -> None:
        cleft = int(self.synapse_table.item(row, 0).data(Qt.ItemDataRole.UserRole))
        props = self.session.skel.trees[cleft].properties
        key = {1: "preSynapse", 2: "postSynapse"}.get(column)
        target = None
        if key:
            try:
                target = int(props.get(key, ""))
            except ValueError:
                target = None
        if target is None:
            nodes = self.session.skel.node_ids(cleft)
            target = int(nodes[0]) if len(nodes) else None
        if target is not None and self.session.skel.has_node(target):
            self.session.editor.set_active_node(target)
            self.session.jump_to(target)

    def set_synapse_trees_visible(self, visible: bool) -> None:
        s = self.session
        if s is None:
            return
        clefts = [t.id for t in s.skel.trees.values() if t.is_synapse and t.visible != visible]
        if clefts:
            with s.editor.batch("show synapse trees" if visible else "hide synapse trees"):
                for tid in clefts:
                    s.editor.set_tree_attrs(tid, visible=visible)

    def export_synapses(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export synapses", "synapses.csv", "CSV (*.csv)")
            if not path:
                return None
        write_synapses_csv(self.session.skel, path, self.session.voxel_size_xyz)
        self._show_status(f"synapses written to {path}")
        return path

    def export_connectivity(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export connectivity", "connectivity.csv", "CSV (*.csv)")
            if not path:
                return None
        write_connectivity_csv(self.session.skel, path)
        self._show_status(f"connectivity matrix written to {path}")
        return path

    # -- properties and settings ------------------------------------------------------------
    def set_property(self, on: str) -> None:
        s = self.session
        key, value = self.prop_key.text().strip(), self.prop_value.text()
        if s is None or not key:
            self._show_status("enter a property key")
            return
        try:
            if on == "node":
                if s.editor.active_node is None:
                    raise EditRefused("no active node")
                s.editor.set_node_property(s.editor.active_node, key, value)
            else:
                if s.editor.active_tree is None:
                    raise EditRefused("no active tree")
                s.editor.set_tree_property(s.editor.active_tree, key, value)
        except EditRefused as refused:
            self._show_status(str(refused))
            return
        self._refresh_property_choices()

    def remove_mesh(self) -> None:
        s = self.session
        if s is None or s.editor.active_tree not in s.annotation.meshes:
            self._show_status("the active tree has no mesh")
            return
        try:
            s.editor.set_mesh(s.editor.active_tree, None)
        except EditRefused as refused:
            self._show_status(str(refused))

    def _numeric_properties(self) -> list[str]:
        out = []
        for name, values in self.session.skel.node_properties.items():
            try:
                if values:
                    np.asarray(list(values.values()), np.float64)
                    out.append(name)
            except ValueError:
                continue
        return sorted(out)

    def _refresh_property_choices(self) -> None:
        if self.session is None:
            return
        names = self._numeric_properties()
        for combo, first, wanted in ((self.size_by, "(radius)", self._wanted_size_property),
                                     (self.color_by, "(tree colour)", self._wanted_color_property)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([first] + names)
            if wanted in names:
                combo.setCurrentText(wanted)
            combo.blockSignals(False)

    @staticmethod
    def _chosen(combo: QComboBox) -> str:
        text = combo.currentText()
        return "" if text.startswith("(") else text

    def _style_wanted(self) -> bool:
        return bool(self._chosen(self.size_by) or self._chosen(self.color_by)
                    or any(s.text and (s.color or s.radius) for s in self.comment_slots()))

    def _style_changed(self) -> None:
        self._style_timer.start(STYLE_DELAY_MS)
        self._settings_changed()

    def apply_style(self) -> None:
        """Redraw the nodes with the comment highlights and the property radius / colour settings."""
        self._style_timer.stop()
        if self.session is None:
            return
        colors, radii = self.comment_colors.isChecked(), self.comment_radii.isChecked()
        sync = self.session.sync
        sync.set_comment_highlights([(s.text, s.color if colors else None, s.radius if radii else None)
                                     for s in self.comment_slots()], redraw=False)
        sync.set_style(size_property=self._chosen(self.size_by) or None,
                       color_property=self._chosen(self.color_by) or None,
                       colormap=self.colormap.currentText(), radius_scale=self.radius_scale.value(),
                       color_range=None if self.color_auto.isChecked() else
                       (self.color_min.value(), self.color_max.value()))

    # -- comment slots ----------------------------------------------------------------------
    def comment_slots(self) -> list[CommentSlot]:
        """The ten comment slots as edited: text, highlight colour (RGBA or None), radius (or None)."""
        return [CommentSlot(edit.text(), self._slot_colors[i], spin.value() or None)
                for i, (edit, spin) in enumerate(zip(self.slot_edits, self.slot_radius_spins))]

    def _set_slot(self, i: int, text: str) -> None:
        if self.session is not None:
            self.session.editor.comment_slots[i] = text
        self._slots_changed()

    def _slots_changed(self) -> None:
        drawn = self.session.sync.comment_highlights if self.session is not None else []
        if any(s.color or s.radius for s in self.comment_slots()) or any(c or r for _, c, r in drawn):
            self._style_changed()
        else:
            self._settings_changed()

    def set_slot_color(self, i: int, rgba) -> None:
        """Set (or with None clear) slot ``i``'s highlight colour, RGBA in 0–1."""
        self._slot_colors[i] = None if rgba is None else tuple(float(c) for c in (*rgba, 1.0)[:4])
        self._show_slot_color(i)
        self._slots_changed()

    def _show_slot_color(self, i: int) -> None:
        button, rgba = self.slot_color_buttons[i], self._slot_colors[i]
        if rgba is None:
            button.setText("colour")
            button.setStyleSheet("")
        else:
            r, g, b, _a = (round(255 * c) for c in rgba)
            button.setText("")
            button.setStyleSheet(f"background-color: rgb({r}, {g}, {b}); min-width: 40px")

    def _pick_slot_color(self, i: int) -> None:
        start = QColor.fromRgbF(*self._slot_colors[i]) if self._slot_colors[i] else QColor(255, 255, 0)
        color = QColorDialog.getColor(start, self, f"Highlight colour for Ctrl+{(i + 1) % 10}",
                                      QColorDialog.ColorDialogOption.ShowAlphaChannel)
        if color.isValid():
            self.set_slot_color(i, color.getRgbF())

    # -- settings file ------------------------------------------------------------------------
    def current_settings(self) -> TracingSettings:
        """The widget's settings as they would be saved."""
        return TracingSettings(
            comment_slots=self.comment_slots(), comment_colors=self.comment_colors.isChecked(),
            comment_radii=self.comment_radii.isChecked(), show_comments=self.show_comments.isChecked(),
            default_radius=float(self.default_radius.value()), linking=self.linking.isChecked(),
            radius_locking=self.locking.isChecked(), locking_word=self.locking_word.text(),
            locking_radius=float(self.locking_radius.value()), skeleton_depth=self.depth.value(),
            autosave=self.autosave_on.isChecked(), autosave_minutes=self.autosave_minutes.value(),
            mesh_opacity=float(self.mesh_opacity.value()), size_property=self._wanted_size_property,
            radius_scale=float(self.radius_scale.value()), color_property=self._wanted_color_property,
            colormap=self.colormap.currentText(), color_auto_range=self.color_auto.isChecked(),
            color_min=float(self.color_min.value()), color_max=float(self.color_max.value()))

    def apply_settings(self, settings: TracingSettings) -> None:
        """Show ``settings`` in the widget (and apply them to a running session)."""
        self._loading = True
        try:
            for i, slot in enumerate(settings.comment_slots):
                self.slot_edits[i].setText(slot.text)
                self._slot_colors[i] = slot.color
                self._show_slot_color(i)
                self.slot_radius_spins[i].setValue(slot.radius or 0.0)
            self.comment_colors.setChecked(settings.comment_colors)
            self.comment_radii.setChecked(settings.comment_radii)
            self.show_comments.setChecked(settings.show_comments)
            self.default_radius.setValue(settings.default_radius)
            self.linking.setChecked(settings.linking)
            self.locking.setChecked(settings.radius_locking)
            self.locking_word.setText(settings.locking_word)
            self.locking_radius.setValue(settings.locking_radius)
            self.depth.setValue(settings.skeleton_depth)
            self.autosave_on.setChecked(settings.autosave)
            self.autosave_minutes.setValue(settings.autosave_minutes)
            self.mesh_opacity.setValue(settings.mesh_opacity)
            self._wanted_size_property, self._wanted_color_property = settings.size_property, settings.color_property
            self.radius_scale.setValue(settings.radius_scale)
            if self.colormap.findText(settings.colormap) < 0:
                self.colormap.addItem(settings.colormap)
            self.colormap.setCurrentText(settings.colormap)
            self.color_auto.setChecked(settings.color_auto_range)
            self.color_min.setValue(settings.color_min)
            self.color_max.setValue(settings.color_max)
            self._refresh_property_choices()
        finally:
            self._loading = False
        self._save_timer.stop()
        self._style_timer.stop()
        if self.session is not None:
            self.apply_style()

    def load_settings(self) -> TracingSettings:
        """Read :attr:`settings_file` into the widget; a corrupt file warns (naming it) and gives the defaults."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = load_settings(self.settings_file)
        for warning in caught:
            warnings.warn(str(warning.message), UserWarning, stacklevel=2)
            self._show_status(str(warning.message))
        self.apply_settings(settings)
        return settings

    def save_settings(self) -> Path | None:
        """Write the settings file now (atomically); normally done shortly after each change."""
        self._save_timer.stop()
        try:
            return save_settings(self.current_settings(), self.settings_file)
        except OSError as error:
            self._show_status(f"settings not saved to {self.settings_file}: {error}")
            return None

    def _settings_changed(self) -> None:
        if not self._loading:
            self._save_timer.start(SAVE_DELAY_MS)

    def _apply_locking(self) -> None:
        if self.session is None:
            return
        ed = self.session.editor
        ed.radius_locking = self.locking.isChecked()
        ed.locking_word = self.locking_word.text()
        ed.locking_radius = float(self.locking_radius.value())

    def shut_down(self) -> None:
        """Stop timers and the event filter, unbind keys and mouse, write pending settings: when the
        widget is closed or its dock removed (napari's "x" only unparents the widget)."""
        self._tick.stop()
        self._flush_timer.stop()
        self._style_timer.stop()
        self._set_filtering(False)
        if self._save_timer.isActive():
            self.save_settings()
        if self.session is not None and not self._closed:
            self.session.uninstall()
            self.session.save_handler = None
            if self.activity in self.session.activity_callbacks:
                self.session.activity_callbacks.remove(self.activity)
        self._closed = True

    def event(self, event) -> bool:
        removed = event.type() == QEvent.Type.ParentChange and self.parent() is None
        if removed and getattr(self, "_closed", True) is False:
            self.shut_down()  # the dock was removed (viewer.window.remove_dock_widget)
        return super().event(event)

    def closeEvent(self, event) -> None:
        self.shut_down()
        super().closeEvent(event)
