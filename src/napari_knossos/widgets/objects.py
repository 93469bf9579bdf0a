"""The segmentation object table (KNOSSOS' object list): a column-wise Qt model over
:class:`~napari_knossos.annotation.segments.SegmentObjects`, with filters; fast at 100k objects."""

from __future__ import annotations

import gc

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ALL_CATEGORIES", "ObjectTableModel", "ObjectTableWidget"]

DISPLAY = Qt.ItemDataRole.DisplayRole
DECORATION = Qt.ItemDataRole.DecorationRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
ALL_CATEGORIES = "(all categories)"
_TEXT = np.dtypes.StringDType()


class ObjectTableModel(QAbstractTableModel):
    """One row per object, in id order: columns are numpy arrays built once per change of the
    objects (no per-row Python objects kept); filters select row indices."""

    HEADERS = ("Object ID", "Supervoxels", "Category", "Comment", "Lock", "Todo", "Colour")
    ID, SIZE, CATEGORY, COMMENT, LOCK, TODO, COLOR = range(7)

    def __init__(self, segments=None, parent=None):
        super().__init__(parent)
        self.segments = segments
        self.text = ""
        self.category: str | None = None  # None: every category
        self.todo_only = False
        self._rows = np.empty(0, np.intp)
        self.ids = np.empty(0, np.uint64)
        self.refresh()

    def set_segments(self, segments) -> None:
        self.segments = segments
        self.refresh()

    # -- columns ----------------------------------------------------------------------------------
    def _load(self) -> None:
        """Build the columns from the objects (sorted by id); the garbage collector waits meanwhile
        (the lists made here would trigger full collections over every object)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._load_columns()
        finally:
            if enabled:
                gc.enable()

    def _load_columns(self) -> None:
        objects = [] if self.segments is None else self.segments.object_list()
        n = len(objects)
        ids = np.fromiter([o.id for o in objects], np.uint64, count=n)
        if n > 1 and not (ids[1:] > ids[:-1]).all():  # rows in id order
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            objects = [objects[i] for i in order.tolist()]
        categories = [o.category for o in objects]
        comments = [o.comment for o in objects]
        self.ids = ids
        self.sizes = np.fromiter([len(o.supervoxels) for o in objects], np.int64, count=n)
        self.categories = np.array(categories, dtype=_TEXT)
        self.comments = np.array(comments, dtype=_TEXT)
        self.locked = np.fromiter([o.immutable for o in objects], bool, count=n)
        self.todo = np.fromiter([o.todo for o in objects], bool, count=n)
        self.colors = np.full((n, 3), -1, np.int16)  # -1: no custom colour
        custom = [(i, o.color) for i, o in enumerate(objects) if o.color is not None]
        if custom:
            self.colors[[i for i, _ in custom]] = [c for _, c in custom]
        self._search = np.array([f"{comment}\n{category}".lower() for comment, category in zip(comments, categories)],
                                dtype=_TEXT)

    def _passes(self, index=None) -> np.ndarray:
        """Which column rows (all, or those at ``index``) the filters keep (a bool array)."""
        index = slice(None) if index is None else index
        keep = np.ones(len(self.ids[index]), bool)
        text = self.text.strip().lower()
        if text:
            match = np.strings.find(self._search[index], text) >= 0
            if text.isdigit():
                match |= self.ids[index] == np.uint64(min(int(text), 2**64 - 1))
            keep &= match
        if self.category is not None:
            keep &= self.categories[index] == self.category
        if self.todo_only:
            keep &= self.todo[index]
        return keep

    def _filter(self) -> np.ndarray:
        return np.flatnonzero(self._passes())

    def refresh(self) -> None:
        """Reload the columns from the objects and refilter."""
        self.beginResetModel()
        self._load()
        self._rows = self._filter()
        self.endResetModel()

    def update(self, object_ids) -> None:
        """Objects ``object_ids`` were added, removed or changed: insert, remove or rewrite just their
        rows (Qt row signals, the filters kept); many at once (over :attr:`MAX_INCREMENTAL`) reload all."""
        segments = self.segments
        if segments is None or len(object_ids) > self.MAX_INCREMENTAL:
            self.refresh()
            return
        objects = segments.objects
        for oid in sorted(int(o) for o in object_ids):
            i = int(np.searchsorted(self.ids, np.uint64(oid)))
            listed = i < len(self.ids) and int(self.ids[i]) == oid
            if oid not in objects:
                if listed:
                    self._remove_column_row(i)
            elif listed:
                self._write_column_row(i, objects[oid])
                self._show_row(i)
            else:
                self._insert_column_row(i, objects[oid])
                self._show_row(i)

    MAX_INCREMENTAL = 256  # changed objects up to which update() edits rows instead of reloading

    def _write_column_row(self, i: int, o) -> None:
        self.sizes[i] = len(o.supervoxels)
        self.categories[i], self.comments[i] = o.category, o.comment
        self.locked[i], self.todo[i] = o.immutable, o.todo
        self.colors[i] = o.color if o.color is not None else (-1, -1, -1)
        self._search[i] = f"{o.comment}\n{o.category}".lower()

    def _insert_column_row(self, i: int, o) -> None:
        """A new object at column row ``i`` (not shown yet: :meth:`_show_row` decides)."""
        self.ids = np.insert(self.ids, i, np.uint64(o.id))
        self.sizes = np.insert(self.sizes, i, 0)
        self.categories = np.insert(self.categories, i, "")
        self.comments = np.insert(self.comments, i, "")
        self.locked = np.insert(self.locked, i, False)
        self.todo = np.insert(self.todo, i, False)
        self.colors = np.insert(self.colors, i, -1, axis=0)
        self._search = np.insert(self._search, i, "")
        self._rows[self._rows >= i] += 1
        self._write_column_row(i, o)

    def _remove_column_row(self, i: int) -> None:
        j = int(np.searchsorted(self._rows, i))
        shown = j < len(self._rows) and self._rows[j] == i
        if shown:
            self.beginRemoveRows(QModelIndex(), j, j)
            self._rows = np.delete(self._rows, j)
        for name in ("ids", "sizes", "categories", "comments", "locked", "todo", "colors", "_search"):
            setattr(self, name, np.delete(getattr(self, name), i, axis=0))
        self._rows[self._rows > i] -= 1
        if shown:
            self.endRemoveRows()

    def _show_row(self, i: int) -> None:
        """Column row ``i`` changed: show, hide or redraw its table row as the filters now say."""
        j = int(np.searchsorted(self._rows, i))
        shown = j < len(self._rows) and self._rows[j] == i
        keep = bool(self._passes(np.array([i]))[0])
        if shown and keep:
            self.dataChanged.emit(self.index(j, 0), self.index(j, len(self.HEADERS) - 1))
        elif shown:
            self.beginRemoveRows(QModelIndex(), j, j)
            self._rows = np.delete(self._rows, j)
            self.endRemoveRows()
        elif keep:
            self.beginInsertRows(QModelIndex(), j, j)
            self._rows = np.insert(self._rows, j, i)
            self.endInsertRows()

    def set_filter(self, *, text: str | None = None, category: str | None | type(...) = ...,
                   todo_only: bool | None = None) -> None:
        """Change filter settings (only those given: ``category=None`` is every category) and refilter."""
        if text is not None:
            self.text = str(text)
        if category is not ...:
            self.category = None if category in (None, ALL_CATEGORIES) else str(category)
        if todo_only is not None:
            self.todo_only = bool(todo_only)
        self.beginResetModel()
        self._rows = self._filter()
        self.endResetModel()

    # -- rows ↔ ids ---------------------------------------------------------------------------------
    def id_at(self, table_row: int) -> int:
        return int(self.ids[self._rows[table_row]])

    def shown_ids(self) -> np.ndarray:
        return self.ids[self._rows]

    def table_row(self, object_id: int) -> int:
        """Table row of an object, -1 if it is not shown."""
        i = int(np.searchsorted(self.ids, np.uint64(object_id)))
        if i >= len(self.ids) or self.ids[i] != np.uint64(object_id):
            return -1
        j = int(np.searchsorted(self._rows, i))
        return j if j < len(self._rows) and self._rows[j] == i else -1

    # -- Qt API ---------------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=DISPLAY):
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY and 0 <= section < len(self.HEADERS):
            return self.HEADERS[section]
        return None

    def data(self, index, role=DISPLAY):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, column = int(self._rows[index.row()]), index.column()
        if column == self.COLOR:
            rgb = self.colors[row]
            custom = rgb[0] >= 0
            if role == DECORATION and custom:
                return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]))
            if role in (DISPLAY, TOOLTIP):
                return "#{:02x}{:02x}{:02x}".format(*rgb.tolist()) if custom else ("" if role == DISPLAY else "lookup table")
            return None
        if role != DISPLAY:
            return None
        if column == self.ID:
            return str(int(self.ids[row]))
        if column == self.SIZE:
            return str(int(self.sizes[row]))
        if column == self.CATEGORY:
            return str(self.categories[row])
        if column == self.COMMENT:
            return str(self.comments[row])
        if column == self.LOCK:
            return "locked" if self.locked[row] else ""
        if column == self.TODO:
            return "todo" if self.todo[row] else ""
        return None


class ObjectTableWidget(QWidget):
    """Filter box, category filter, "todo only", the table and "Delete object". Emits
    ``object_clicked(id)`` on a row click and ``object_activated(id)`` on a double-click."""

    object_clicked = Signal(object)
    object_activated = Signal(object)
    delete_requested = Signal()

    def __init__(self, segments=None, parent=None):
        super().__init__(parent)
        self.model = ObjectTableModel(segments, self)
        self._pending = None  # (selected, changed ids or None: everything) waiting for the table to show
        self.filter_box = QLineEdit(self)
        self.filter_box.setPlaceholderText("filter: comment, category or id")
        self.filter_box.setClearButtonEnabled(True)
        self.category_box = QComboBox(self)
        self.todo_box = QCheckBox("todo only", self)
        self.count_label = QLabel(self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.setMinimumHeight(160)
        self.delete_button = QPushButton("Delete object", self)
        filters = QHBoxLayout()
        filters.addWidget(self.filter_box, 2)
        filters.addWidget(self.category_box, 1)
        filters.addWidget(self.todo_box)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(self.view)
        layout.addLayout(bottom)
        self.filter_box.textChanged.connect(lambda text: self._refilter(text=text))
        self.category_box.currentTextChanged.connect(lambda text: self._refilter(category=text or None))
        self.todo_box.toggled.connect(lambda on: self._refilter(todo_only=on))
        self.view.clicked.connect(lambda index: self.object_clicked.emit(self.model.id_at(index.row())))
        self.view.doubleClicked.connect(lambda index: self.object_activated.emit(self.model.id_at(index.row())))
        self.delete_button.clicked.connect(self.delete_requested.emit)
        self._fill_categories()
        self._count()

    def set_segments(self, segments) -> None:
        self._pending = None
        self.model.set_segments(segments)
        self._fill_categories()
        self._count()

    def refresh(self, selected: int | None = None, object_ids=None) -> None:
        """Update after the objects changed (only the rows of ``object_ids`` if given; the filters
        stay), then show ``selected``. While the table is hidden this waits until it is shown."""
        if not self.isVisible():
            if object_ids is None or (self._pending is not None and self._pending[1] is None):
                ids = None  # everything
            else:
                ids = set(object_ids) | (self._pending[1] if self._pending is not None else set())
            self._pending = (selected, ids)
            return
        if object_ids is None:
            self.model.refresh()
            self._fill_categories()
        else:
            self.model.update(object_ids)
            self._fill_categories(object_ids)
        self._count()
        self.show_selected(selected)

    def showEvent(self, event) -> None:  # Qt
        """Catch up with what changed while hidden."""
        super().showEvent(event)
        if self._pending is not None:
            (selected, ids), self._pending = self._pending, None
            if ids is not None and len(ids) > self.model.MAX_INCREMENTAL:
                ids = None
            self.refresh(selected, ids)

    def _fill_categories(self, object_ids=None) -> None:
        """The category filter's choices; after a change of ``object_ids`` only when one of them has a
        category not listed yet (a category no longer used stays until the next full refresh)."""
        segments = self.model.segments
        if object_ids is not None and segments is not None:
            listed = {self.category_box.itemText(i) for i in range(self.category_box.count())}
            objects = segments.objects
            if all(not objects[o].category or objects[o].category in listed for o in object_ids if o in objects):
                return
        names = [ALL_CATEGORIES, *(c for c in (segments.categories if segments is not None else []) if c)]
        current = self.category_box.currentText() or ALL_CATEGORIES
        if [self.category_box.itemText(i) for i in range(self.category_box.count())] == names:
            return
        self.category_box.blockSignals(True)
        try:
            self.category_box.clear()
            self.category_box.addItems(names)
            self.category_box.setCurrentText(current if current in names else ALL_CATEGORIES)
        finally:
            self.category_box.blockSignals(False)
        if current not in names:
            self._refilter(category=None)

    def _refilter(self, **settings) -> None:
        selected = self.selected_id()
        self.model.set_filter(**settings)
        self._count()
        self.show_selected(selected)

    def _count(self) -> None:
        self.count_label.setText(f"{self.model.rowCount()} of {len(self.model.ids)} objects")

    def selected_id(self) -> int | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.id_at(rows[0].row()) if rows else None

    def show_selected(self, object_id: int | None) -> None:
        """Select (and scroll to) the row of ``object_id`` without emitting ``object_clicked``."""
        if self._pending is not None:  # hidden with changes to catch up with: select when shown
            self._pending = (object_id, self._pending[1])
            return
        row = -1 if object_id is None else self.model.table_row(object_id)
        selection = self.view.selectionModel()
        if row < 0:
            selection.clearSelection()
            return
        index = self.model.index(row, 0)
        if self.selected_id() != object_id:
            self.view.selectRow(row)
        self.view.scrollTo(index)
