"""Tree and node tables of a skeleton (KNOSSOS "Skeleton" tab): sortable, filterable, with actions.

Qt only (qtpy), no napari: the widget works on a plain
:class:`~napari_knossos.annotation.editing.SkeletonEditor`. The models are column-wise: the
table rows are an index array into the skeleton's node columns (``Skeleton.nodes``), so 100k
nodes build, filter and sort with numpy in milliseconds; there is no Python object per row
and no QSortFilterProxyModel. Positions are shown as stored (0-based mag-1 voxels, as napari
shows them).

Filters follow KNOSSOS: a case-insensitive comment (tree: name) substring or regular
expression, node criteria (in selected trees, selected, branch points, with comment, synapse
nodes) matched all or any, and synapse trees shown, shown alone or hidden. Selection is
shared with the editor both ways; editor changes refresh the tables (appending rows while
tracing).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import numpy as np
from qtpy.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QItemSelectionRange,
    QModelIndex,
    Qt,
    Signal,
)
from qtpy.QtGui import QColor, QFont, QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAction,
    QApplication,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..annotation.editing import EditRefused

__all__ = ["NODE_FILTERS", "NodeTableModel", "SkeletonTablesWidget", "TreeTableModel"]

DISPLAY = Qt.ItemDataRole.DisplayRole
EDIT = Qt.ItemDataRole.EditRole
ASCENDING = Qt.SortOrder.AscendingOrder
DESCENDING = Qt.SortOrder.DescendingOrder

# node criteria (KNOSSOS node table filter) → check box label
NODE_FILTERS: dict[str, str] = {
    "in_selected_trees": "in selected trees",
    "selected": "selected",
    "branch": "branch points",
    "comment": "with comment",
    "synapse": "synapse nodes",
}
SYNAPSE_TREE_MODES = ("all", "only", "hide")  # synapse (cleft) trees: show, show alone, hide
# what an action may refuse with: the editor's refusal, or a stale id / impossible request
_REFUSALS = (EditRefused, KeyError, ValueError)


# -- pure helpers ---------------------------------------------------------------------------
def text_matcher(text: str, regex: bool) -> Callable[[str], bool]:
    """Case-insensitive substring (or regular expression) test; ``re.error`` for a bad regex."""
    if regex:
        pattern = re.compile(text, re.IGNORECASE)
        return lambda s: pattern.search(s) is not None
    needle = text.casefold()
    return lambda s: needle in s.casefold()


def matching_keys(texts: dict[int, str], text: str, regex: bool) -> np.ndarray:
    """Keys of ``texts`` whose value matches (see :func:`text_matcher`)."""
    match = text_matcher(text, regex)
    return np.fromiter((k for k, v in texts.items() if match(v)), np.int64)


def _ids(values: Iterable[int]) -> np.ndarray:
    return np.fromiter(values, np.int64)


def _text_sort_key(text: str) -> tuple:
    """Numbers (property values are text or number) before text, text case-insensitively."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        return (0, number, "")
    return (1, 0.0, text.casefold())


def text_ranks(texts: list[str]) -> np.ndarray:
    """Rank (1-based, equal texts equal rank) of each text in sort order (:func:`_text_sort_key`)."""
    keys = [_text_sort_key(t) for t in texts]
    order = sorted(range(len(texts)), key=keys.__getitem__)
    ranks = np.empty(len(texts), np.int64)
    rank, previous = 0, None
    for i in order:
        if keys[i] != previous:
            rank, previous = rank + 1, keys[i]
        ranks[i] = rank
    return ranks


def stable_order(key: np.ndarray, descending: bool = False) -> np.ndarray:
    """Stable argsort; descending keeps ties in their original order and NaN stays last."""
    if not descending:
        return np.argsort(key, kind="stable")
    if key.dtype.kind == "f":
        key = np.where(np.isnan(key), -np.inf, key)
    n = len(key)
    return n - 1 - np.argsort(key[::-1], kind="stable")[::-1]


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in ``sorted_ids`` and whether each was found."""
    pos = np.searchsorted(sorted_ids, ids)
    if not len(sorted_ids):
        return pos, np.zeros(len(ids), bool)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == ids


def _text_column(ids: np.ndarray, texts: dict[int, str]) -> np.ndarray:
    """Sort key of the texts of ``ids`` (0 for none) from a sparse id → text dict."""
    key = np.zeros(len(ids), np.int64)
    if texts:
        keys = _ids(texts)
        ranks = text_ranks(list(texts.values()))
        order = np.argsort(keys)
        pos, found = _lookup(keys[order], ids)
        key[found] = ranks[order[pos[found]]]
    return key


def _number_text(value) -> str:
    value = float(value)
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _enum_int(value) -> int:
    """A Qt enum or flag (PyQt5 int, PyQt6/PySide6 enum) as int."""
    return int(getattr(value, "value", value))


CHECKED, UNCHECKED = _enum_int(Qt.CheckState.Checked), _enum_int(Qt.CheckState.Unchecked)
ALIGN_NUMBER = _enum_int(Qt.AlignmentFlag.AlignRight) | _enum_int(Qt.AlignmentFlag.AlignVCenter)


def _checked(value) -> bool:
    """A check-state value from a view (int or Qt.CheckState) as bool."""
    return _enum_int(value) == CHECKED


def synapse_tree_ids(skel) -> np.ndarray:
    return _ids(t.id for t in skel.trees.values() if t.is_synapse)


def synapse_node_ids(skel) -> np.ndarray:
    """Pre- and post-synapse nodes named by cleft trees (KNOSSOS ``isSynapticNode``)."""
    out = []
    for tree in skel.trees.values():
        if tree.is_synapse:
            for key in ("preSynapse", "postSynapse"):
                try:
                    out.append(int(tree.properties.get(key, "")))
                except ValueError:
                    pass
    return np.array(out, np.int64)


# -- models ---------------------------------------------------------------------------------
class _ColumnTableModel(QAbstractTableModel):
    """Rows are ``self._rows``, indices into column arrays; subclasses supply columns and filters."""

    message = Signal(str)  # an edit from the table was refused

    def __init__(self, editor, parent=None):
        super().__init__(parent)
        self.editor = editor
        self.text = ""
        self.regex = False
        self.synapse_trees = "all"
        self.filter_error: str | None = None
        self.sort_column: int | None = None  # None: id order
        self.descending = False
        self._rows = np.empty(0, np.intp)
        self._positions: np.ndarray | None = None  # inverse of _rows, built on demand

    # subclass API
    def headers(self) -> list[str]:
        raise NotImplementedError

    def _keys(self) -> np.ndarray:
        """Ids of all rows (sorted ascending; row i of the columns has id ``_keys()[i]``)."""
        raise NotImplementedError

    def _load(self) -> None:
        raise NotImplementedError

    def _filter(self, candidates: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sort_key(self, column: int, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def text_of(self, row: int, column: int) -> str:
        """Display text at ``row`` of the columns (a skeleton row, not a table row)."""
        raise NotImplementedError

    # Qt API
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers())

    def headerData(self, section, orientation, role=DISPLAY):
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
            headers = self.headers()
            return headers[section] if 0 <= section < len(headers) else None
        return None

    def sort(self, column: int, order=ASCENDING) -> None:
        """Sort by ``column`` (stable; ties keep id order)."""
        self.beginResetModel()
        self.sort_column, self.descending = int(column), order == DESCENDING
        self._rows = self._sorted(np.sort(self._rows))
        self._positions = None
        self.endResetModel()

    # rows ↔ ids
    def ids(self, table_rows=None) -> np.ndarray:
        """Ids shown at ``table_rows`` (all shown ids in table order by default)."""
        rows = self._rows if table_rows is None else self._rows[np.asarray(table_rows, np.intp)]
        return self._keys()[rows]

    def id_at(self, table_row: int) -> int:
        return int(self._keys()[self._rows[table_row]])

    def table_rows(self, ids) -> np.ndarray:
        """Table row of each id, -1 where it is not shown."""
        ids = np.atleast_1d(np.asarray(ids, np.int64))
        if self._positions is None:
            self._positions = np.full(len(self._keys()), -1, np.intp)
            self._positions[self._rows] = np.arange(len(self._rows))
        pos, found = _lookup(self._keys(), ids)
        out = np.full(len(ids), -1, np.intp)
        out[found] = self._positions[pos[found]]
        return out

    # filtering and refresh
    def set_filter(self, *, text: str | None = None, regex: bool | None = None,
                   synapse_trees: str | None = None, **criteria) -> None:
        """Change filter settings (only those given) and refilter."""
        if text is not None:
            self.text = text
        if regex is not None:
            self.regex = bool(regex)
        if synapse_trees is not None:
            if synapse_trees not in SYNAPSE_TREE_MODES:
                raise ValueError(f"synapse_trees must be one of {SYNAPSE_TREE_MODES}, not {synapse_trees!r}")
            self.synapse_trees = synapse_trees
        self._set_criteria(**criteria)
        self.refresh()

    def _set_criteria(self, **criteria) -> None:
        if criteria:
            raise TypeError(f"unknown filter settings {sorted(criteria)}")

    def refresh(self) -> None:
        """Reload the columns from the skeleton, refilter and resort."""
        self.beginResetModel()
        self._load()
        self.filter_error = None
        self._rows = self._sorted(self._filter(np.arange(len(self._keys()))))
        self._positions = None
        self.endResetModel()

    def _sorted(self, rows: np.ndarray) -> np.ndarray:
        if self.sort_column in (None, 0) or not len(rows):  # rows are in id order already
            return rows[::-1] if self.descending else rows
        return rows[stable_order(self._sort_key(self.sort_column, rows), self.descending)]

    def _text_filter(self, texts: dict[int, str], ids: np.ndarray) -> np.ndarray:
        """Which ``ids`` have a text in ``texts`` matching the filter text."""
        try:
            matched = matching_keys(texts, self.text, self.regex)
        except re.error as error:
            self.filter_error = f"invalid regular expression {self.text!r}: {error}"
            matched = np.empty(0, np.int64)
        return np.isin(ids, matched)

    def _synapse_tree_mask(self, tree_ids: np.ndarray) -> np.ndarray | None:
        if self.synapse_trees == "all":
            return None
        in_cleft = np.isin(tree_ids, synapse_tree_ids(self.editor.skel))
        return in_cleft if self.synapse_trees == "only" else ~in_cleft

    def _changed(self, table_rows: np.ndarray | None = None) -> None:
        """Repaint ``table_rows`` (all rows when None)."""
        if not len(self._rows):
            return
        last = self.columnCount() - 1
        if table_rows is None:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, last))
            return
        for r in np.unique(table_rows[table_rows >= 0]).tolist():
            self.dataChanged.emit(self.index(r, 0), self.index(r, last))

    def _edit(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except _REFUSALS as error:
            self.message.emit(str(error))
            return False
        return True


class NodeTableModel(_ColumnTableModel):
    """Node table: id, tree, x, y, z, radius, comment and one column per node property."""

    BASE_HEADERS = ("Node ID", "Tree ID", "x", "y", "z", "Radius", "Comment")
    COMMENT = 6
    EDITABLE = (2, 3, 4, 5, 6)

    def __init__(self, editor, parent=None):
        super().__init__(editor, parent)
        self.criteria: frozenset[str] = frozenset()  # keys of NODE_FILTERS
        self.match_all = True
        self._columns: dict[str, np.ndarray] = {}
        self._properties: list[str] = []
        self._bold = QFont()
        self._bold.setBold(True)
        self.refresh()

    def headers(self) -> list[str]:
        return [*self.BASE_HEADERS, *self._properties]

    def _keys(self) -> np.ndarray:
        return self._columns["id"]

    def _load(self) -> None:
        skel = self.editor.skel
        self._columns = {k: skel.nodes[k] for k in ("id", "tree", "x", "y", "z", "radius")}
        self._properties = sorted(skel.node_properties)

    def _set_criteria(self, *, criteria: Iterable[str] | None = None, match_all: bool | None = None) -> None:
        if criteria is not None:
            criteria = frozenset(criteria)
            unknown = criteria - set(NODE_FILTERS)
            if unknown:
                raise ValueError(f"unknown node filters {sorted(unknown)}; known: {list(NODE_FILTERS)}")
            self.criteria = criteria
        if match_all is not None:
            self.match_all = bool(match_all)

    @property
    def depends_on_selection(self) -> bool:
        return bool(self.criteria & {"in_selected_trees", "selected"})

    def _criterion(self, name: str, ids: np.ndarray, trees: np.ndarray) -> np.ndarray:
        editor, skel = self.editor, self.editor.skel
        if name == "in_selected_trees":
            return np.isin(trees, _ids(editor.selected_trees))
        if name == "selected":
            return np.isin(ids, _ids(editor.selected_nodes))
        if name == "branch":
            return np.isin(ids, _ids(b[0] for b in skel.branchpoints))
        if name == "comment":
            return np.isin(ids, _ids(skel.comments))
        # synapse: cleft tree nodes and the pre/post nodes they name
        return np.isin(trees, synapse_tree_ids(skel)) | np.isin(ids, synapse_node_ids(skel))

    def _filter(self, candidates: np.ndarray) -> np.ndarray:
        ids, trees = self._columns["id"][candidates], self._columns["tree"][candidates]
        keep = np.ones(len(candidates), bool)
        synapse = self._synapse_tree_mask(trees)
        if synapse is not None:
            keep &= synapse
        tests = [self._criterion(name, ids, trees) for name in NODE_FILTERS if name in self.criteria]
        if tests:
            keep &= np.logical_and.reduce(tests) if self.match_all else np.logical_or.reduce(tests)
        if self.text:
            keep &= self._text_filter(self.editor.skel.comments, ids)
        return candidates[keep]

    def _sort_key(self, column: int, rows: np.ndarray) -> np.ndarray:
        if column < self.COMMENT:
            return self._columns[("id", "tree", "x", "y", "z", "radius")[column]][rows]
        skel = self.editor.skel
        texts = skel.comments if column == self.COMMENT else skel.node_properties.get(
            self._properties[column - len(self.BASE_HEADERS)], {})
        return _text_column(self._columns["id"][rows], texts)

    def text_of(self, row: int, column: int) -> str:
        c = self._columns
        if column <= 1:
            return str(int(c[("id", "tree")[column]][row]))
        if column < self.COMMENT:
            return _number_text(c[("x", "y", "z", "radius")[column - 2]][row])
        nid = int(c["id"][row])
        if column == self.COMMENT:
            return self.editor.skel.comments.get(nid, "")
        name = self._properties[column - len(self.BASE_HEADERS)]
        return self.editor.skel.node_properties.get(name, {}).get(nid, "")

    def data(self, index, role=DISPLAY):
        if not index.isValid():
            return None
        row, column = int(self._rows[index.row()]), index.column()
        if role == DISPLAY or role == EDIT:
            return self.text_of(row, column)
        if role == Qt.ItemDataRole.FontRole:
            active = self.editor.active_node
            return self._bold if active is not None and int(self._columns["id"][row]) == active else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column < self.COMMENT:
            return ALIGN_NUMBER
        if role == Qt.ItemDataRole.ToolTipRole and column >= self.COMMENT:
            return self.text_of(row, column) or None
        return None

    def flags(self, index):
        flags = super().flags(index)
        if index.isValid() and index.column() in self.EDITABLE:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def setData(self, index, value, role=EDIT) -> bool:
        if not index.isValid() or role != EDIT or index.column() not in self.EDITABLE:
            return False
        editor, column = self.editor, index.column()
        nid = self.id_at(index.row())
        text = str(value).strip()
        if column == self.COMMENT:
            return self._edit(lambda: editor.set_comment(nid, str(value)))
        try:
            number = float(text)
        except ValueError:
            self.message.emit(f"node {nid}: {text!r} is not a number")
            return False
        if column == 5:
            return self._edit(lambda: editor.set_radius([nid], number))
        position = [float(v) for v in editor.skel.position(nid)]
        position[column - 2] = number
        return self._edit(lambda: editor.move_nodes({nid: tuple(position)}))

    # incremental updates
    def append_nodes(self, node_ids) -> None:
        """Nodes were appended to the skeleton (largest ids): add their rows without a rebuild when
        the table order allows it (id order), else :meth:`refresh`."""
        skel = self.editor.skel
        new_ids = np.sort(np.asarray(node_ids, np.int64))
        n0, n1 = len(self._columns["id"]), skel.num_nodes
        old_last = self._columns["id"][-1] if n0 else None
        all_ids = skel.nodes["id"]
        appended = (
            n1 == n0 + len(new_ids)
            and np.array_equal(all_ids[n0:], new_ids)
            and (n0 == 0 or all_ids[n0 - 1] == old_last)
            and sorted(skel.node_properties) == self._properties
            and self.sort_column in (None, 0)
        )
        if not appended:
            self.refresh()
            return
        self._load()
        self._positions = None
        added = self._filter(np.arange(n0, n1))
        if not len(added):
            return
        if self.descending:
            self.beginInsertRows(QModelIndex(), 0, len(added) - 1)
            self._rows = np.concatenate([added[::-1], self._rows])
        else:
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows) + len(added) - 1)
            self._rows = np.concatenate([self._rows, added])
        self.endInsertRows()

    def nodes_changed(self, node_ids, columns: Iterable[int]) -> None:
        """Values of ``node_ids`` changed in ``columns``: repaint, or refresh when the order or
        the filter may depend on them."""
        skel = self.editor.skel
        if any(skel.nodes[k] is not v for k, v in self._columns.items()) or self.sort_column in set(columns):
            self.refresh()
            return
        self._changed(self.table_rows(node_ids))

    def repaint(self, node_ids=None) -> None:
        self._changed(None if node_ids is None else self.table_rows(node_ids))


class TreeTableModel(_ColumnTableModel):
    """Tree table: id, name, colour swatch, visible (checkable), node count, group, synapse."""

    HEADERS = ("Tree ID", "Name", "Colour", "Visible", "Nodes", "Group", "Synapse")
    NAME, COLOUR, VISIBLE = 1, 2, 3

    def __init__(self, editor, parent=None):
        super().__init__(editor, parent)
        self._bold = QFont()
        self._bold.setBold(True)
        self.refresh()

    def headers(self) -> list[str]:
        return list(self.HEADERS)

    def _keys(self) -> np.ndarray:
        return self._tree_ids

    def _load(self) -> None:
        skel = self.editor.skel
        self._tree_ids = np.array(sorted(skel.trees), np.int64)
        trees = [skel.trees[t] for t in self._tree_ids.tolist()]
        self._names = [t.name for t in trees]
        self._visible = np.array([t.visible for t in trees], bool)
        self._synapse = np.array([t.is_synapse for t in trees], bool)
        group_names = {g.id: g.name or f"group {g.id}" for g in skel.iter_groups()}
        self._groups = [group_names.get(t.group_id, "") if t.group_id is not None else "" for t in trees]
        self._counts = self._node_counts()
        # the layers' colours (numpy only; imported late so this module never pulls in napari)
        from ..skeleton_layers import tree_colors

        colours = tree_colors(skel)
        self._colours = [QColor.fromRgbF(*(float(v) for v in colours[t])) for t in self._tree_ids.tolist()]

    def _node_counts(self) -> np.ndarray:
        ids, counts = np.unique(self.editor.skel.nodes["tree"], return_counts=True)
        pos, found = _lookup(ids, self._tree_ids)
        return np.where(found, counts[pos], 0) if len(ids) else np.zeros(len(self._tree_ids), np.int64)

    def update_counts(self) -> None:
        """Node counts changed (nodes added): repaint the count column."""
        if len(self._tree_ids) != len(self.editor.skel.trees) or set(self._tree_ids.tolist()) != set(
                self.editor.skel.trees):
            self.refresh()
            return
        if self.sort_column == 4:
            self.refresh()
            return
        self._counts = self._node_counts()
        if len(self._rows):
            self.dataChanged.emit(self.index(0, 4), self.index(len(self._rows) - 1, 4))

    def _filter(self, candidates: np.ndarray) -> np.ndarray:
        keep = np.ones(len(candidates), bool)
        synapse = self._synapse_tree_mask(self._tree_ids[candidates])
        if synapse is not None:
            keep &= synapse
        if self.text:
            names = {int(t): self._names[i] for i, t in enumerate(self._tree_ids.tolist())}
            keep &= self._text_filter(names, self._tree_ids[candidates])
        return candidates[keep]

    def _sort_key(self, column: int, rows: np.ndarray) -> np.ndarray:
        if column == self.NAME or column == 5:
            texts = self._names if column == self.NAME else self._groups
            return text_ranks([texts[r] for r in rows.tolist()])
        if column == self.COLOUR:
            return np.array([self._colours[r].hueF() for r in rows.tolist()])
        if column == self.VISIBLE:
            return self._visible[rows]
        if column == 4:
            return self._counts[rows]
        return self._synapse[rows]

    def text_of(self, row: int, column: int) -> str:
        if column == 0:
            return str(int(self._tree_ids[row]))
        if column == self.NAME:
            return self._names[row]
        if column == self.COLOUR:
            return self._colours[row].name()
        if column == self.VISIBLE:
            return "yes" if self._visible[row] else "no"
        if column == 4:
            return str(int(self._counts[row]))
        if column == 5:
            return self._groups[row]
        return "yes" if self._synapse[row] else ""

    def data(self, index, role=DISPLAY):
        if not index.isValid():
            return None
        row, column = int(self._rows[index.row()]), index.column()
        if role == DISPLAY or role == EDIT:
            return "" if column == self.VISIBLE else self.text_of(row, column)
        if role == Qt.ItemDataRole.DecorationRole and column == self.COLOUR:
            return self._colours[row]
        if role == Qt.ItemDataRole.CheckStateRole and column == self.VISIBLE:
            return CHECKED if self._visible[row] else UNCHECKED
        if role == Qt.ItemDataRole.FontRole:
            active = self.editor.active_tree
            return self._bold if active is not None and int(self._tree_ids[row]) == active else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (0, 4):
            return ALIGN_NUMBER
        return None

    def flags(self, index):
        flags = super().flags(index)
        if index.isValid() and index.column() == self.NAME:
            flags |= Qt.ItemFlag.ItemIsEditable
        if index.isValid() and index.column() == self.VISIBLE:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index, value, role=EDIT) -> bool:
        if not index.isValid():
            return False
        tid = self.id_at(index.row())
        if index.column() == self.VISIBLE and role == Qt.ItemDataRole.CheckStateRole:
            return self._edit(lambda: self.editor.set_tree_attrs(tid, visible=_checked(value)))
        if index.column() == self.NAME and role == EDIT:
            return self._edit(lambda: self.editor.set_tree_attrs(tid, name=str(value)))
        return False

    def repaint(self) -> None:
        self._changed(None)


# -- view helpers ---------------------------------------------------------------------------
def _make_view(model: _ColumnTableModel) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)  # F2; double-click jumps
    view.setWordWrap(False)
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    rows = view.verticalHeader()
    rows.setVisible(False)
    rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row size hints for 100k rows
    rows.setDefaultSectionSize(view.fontMetrics().height() + 6)
    header = view.horizontalHeader()
    header.setStretchLastSection(True)
    header.setSortIndicator(0, ASCENDING)  # else enabling sorting sorts column 0 descending
    view.setSortingEnabled(True)
    return view


def selected_table_rows(view: QTableView) -> np.ndarray:
    """Selected rows of ``view`` (ascending), read from its selection ranges."""
    parts = [np.arange(r.top(), r.bottom() + 1) for r in view.selectionModel().selection()]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.intp)


def select_table_rows(view: QTableView, rows: np.ndarray) -> None:
    """Make ``rows`` the selection of ``view``: one range per run of consecutive rows."""
    model, selection = view.model(), QItemSelection()
    rows = np.unique(rows)
    if len(rows):
        breaks = np.flatnonzero(np.diff(rows) != 1)
        starts = np.concatenate([rows[:1], rows[breaks + 1]]).tolist()
        ends = np.concatenate([rows[breaks], rows[-1:]]).tolist()
        last = model.columnCount() - 1
        for a, b in zip(starts, ends):  # createIndex: index() would check bounds per call in Python
            selection.append(QItemSelectionRange(model.createIndex(a, 0), model.createIndex(b, last)))
    selection_model = view.selectionModel()
    # clear, then select: ClearAndSelect diffs old against new selection, ~10x slower for 10k ranges
    selection_model.clearSelection()
    if len(rows):
        selection_model.select(selection, QItemSelectionModel.SelectionFlag.Select)


def _forward_changes(widget_ref: weakref.ref):
    def on_change(change) -> None:
        widget = widget_ref()
        if widget is not None:
            widget._on_change(change)

    return on_change


def _unsubscribe(subscription: list) -> None:
    if subscription:
        editor, callback = subscription
        subscription.clear()
        editor.unsubscribe(callback)


# -- widget ---------------------------------------------------------------------------------
class SkeletonTablesWidget(QWidget):
    """Trees above, nodes below (splitter), with filters, actions and editor selection sync.

    Signals: ``status(str)`` for messages (refused edits, results) and ``jump_requested(int)``
    with a node id when the view should centre on it (double-click, N/P, Z/Shift+Z).
    """

    status = Signal(str)
    jump_requested = Signal(int)

    def __init__(self, editor, parent=None):
        super().__init__(parent)
        self.editor = editor
        self._syncing = False  # writing the editor's selection into a view
        self._origin: str | None = None  # "nodes"/"trees" while a view's selection goes to the editor
        self._quiet_depth = 0  # inside one of our multi-edit actions: one refresh at the end
        self._pending_refresh = False

        self.trees = TreeTableModel(editor, self)
        self.nodes = NodeTableModel(editor, self)
        self.tree_view = _make_view(self.trees)
        self.node_view = _make_view(self.nodes)
        self._build_ui()
        self._connect()
        self._subscription: list = []  # [editor, callback]; shared with the destroyed handler
        subscription = self._subscription
        self.destroyed.connect(lambda *_: _unsubscribe(subscription))
        self._subscribe(editor)
        self._sync_selection()
        self._update_counts()

    # -- construction ---------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.tree_filter = QLineEdit(placeholderText="tree name filter")
        self.tree_regex = QCheckBox("regex")
        self.synapse_mode = QComboBox()
        self.synapse_mode.addItems(["all trees", "only synapse trees", "hide synapse trees"])
        self.tree_count = QLabel()

        self.node_filter = QLineEdit(placeholderText="node comment filter")
        self.node_regex = QCheckBox("regex")
        self.criteria_boxes = {name: QCheckBox(label) for name, label in NODE_FILTERS.items()}
        self.match_mode = QComboBox()
        self.match_mode.addItems(["match all", "match any"])
        self.node_count = QLabel()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)

        trees_panel, tree_layout = QWidget(), QVBoxLayout()
        tree_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.tree_filter)
        row.addWidget(self.tree_regex)
        row.addWidget(self.synapse_mode)
        tree_layout.addLayout(row)
        tree_layout.addWidget(self.tree_view)
        tree_layout.addWidget(self.tree_count)
        trees_panel.setLayout(tree_layout)

        nodes_panel, node_layout = QWidget(), QVBoxLayout()
        node_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.node_filter)
        row.addWidget(self.node_regex)
        node_layout.addLayout(row)
        criteria = QGridLayout()
        for i, box in enumerate(self.criteria_boxes.values()):
            criteria.addWidget(box, i // 3, i % 3)
        criteria.addWidget(self.match_mode, 1, 2)
        node_layout.addLayout(criteria)
        node_layout.addWidget(self.node_view)
        node_layout.addWidget(self.node_count)
        nodes_panel.setLayout(node_layout)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(trees_panel)
        splitter.addWidget(nodes_panel)

        self._shortcut(self.tree_view, QKeySequence.StandardKey.Copy, self.copy_selected_trees)
        self._shortcut(self.node_view, QKeySequence.StandardKey.Copy, self.copy_selected_nodes)
        self._shortcut(self.tree_view, QKeySequence(Qt.Key.Key_Delete), self.delete_selected_trees)
        self._shortcut(self.node_view, QKeySequence(Qt.Key.Key_Delete), self.delete_selected_nodes)

        buttons = QGridLayout()
        for i, name in enumerate(["select_trees_of_nodes", "merge_trees", "split_at_edge", "extract_component",
                                  "delete_trees", "delete_nodes", "set_comment", "new_group"]):
            label, slot = self._actions()[name]
            button = QPushButton(label)
            button.clicked.connect(lambda _checked=False, slot=slot: slot())
            buttons.addWidget(button, i // 4, i % 4)

        layout = QVBoxLayout()
        layout.addWidget(splitter)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        self.setLayout(layout)

    def _shortcut(self, view: QTableView, keys: QKeySequence, slot: Callable[[], object]) -> None:
        action = QAction(self)
        action.setShortcut(keys)
        action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        view.addAction(action)

    def _actions(self) -> dict[str, tuple[str, Callable[[], object]]]:
        """Action name → (label, method) for buttons and context menus."""
        return {
            "copy_trees": ("Copy rows", self.copy_selected_trees),
            "copy_nodes": ("Copy rows", self.copy_selected_nodes),
            "select_trees_of_nodes": ("Select trees of nodes", self.select_trees_of_selected_nodes),
            "merge_trees": ("Merge trees", self.merge_selected_trees),
            "split_at_edge": ("Split at edge", self.split_at_selected_edge),
            "extract_component": ("Extract component", self.extract_selected_component),
            "delete_nodes": ("Delete nodes", self.delete_selected_nodes),
            "delete_trees": ("Delete trees", self.delete_selected_trees),
            "set_comment": ("Set comment…", self.set_comment_of_selected),
            "set_radius": ("Set radius…", self.set_radius_of_selected),
            "set_tree_name": ("Set tree name…", self.set_name_of_selected_trees),
            "tree_colour": ("Set tree colour…", self.set_colour_of_selected_trees),
            "new_group": ("New group…", self.new_group),
        }

    def _connect(self) -> None:
        self.tree_filter.textChanged.connect(self._tree_filter_changed)
        self.tree_regex.toggled.connect(self._tree_filter_changed)
        self.synapse_mode.currentIndexChanged.connect(self._synapse_mode_changed)
        self.node_filter.textChanged.connect(self._node_filter_changed)
        self.node_regex.toggled.connect(self._node_filter_changed)
        for box in self.criteria_boxes.values():
            box.toggled.connect(self._node_filter_changed)
        self.match_mode.currentIndexChanged.connect(self._node_filter_changed)
        for model in (self.trees, self.nodes):
            model.message.connect(self._report)
            model.modelReset.connect(self._update_counts)
            model.rowsInserted.connect(self._update_counts)
        self.node_view.selectionModel().selectionChanged.connect(self._node_rows_selected)
        self.tree_view.selectionModel().selectionChanged.connect(self._tree_rows_selected)
        self.node_view.doubleClicked.connect(self._node_double_clicked)
        self.tree_view.doubleClicked.connect(self._tree_double_clicked)
        self.node_view.customContextMenuRequested.connect(self._node_menu)
        self.tree_view.customContextMenuRequested.connect(self._tree_menu)

    # -- editor ---------------------------------------------------------------------------
    def _subscribe(self, editor) -> None:
        callback = _forward_changes(weakref.ref(self))
        editor.subscribe(callback)
        self._subscription[:] = [editor, callback]

    def _unsubscribe(self) -> None:
        _unsubscribe(self._subscription)

    def set_editor(self, editor) -> None:
        """Show another editor's skeleton (e.g. after loading an annotation)."""
        self._unsubscribe()
        self.editor = self.trees.editor = self.nodes.editor = editor
        self._subscribe(editor)
        self._refresh_all()

    def _on_change(self, change) -> None:
        if self._quiet_depth:
            self._pending_refresh = True
            return
        kind = change.kind
        if kind == "selection":
            self._selection_changed()
        elif kind == "active":
            self.nodes.repaint()
            self.trees.repaint()
            self._scroll_to_active()
        elif kind in ("mode", "edges_changed"):
            return  # nothing the tables show depends on them
        elif kind == "nodes_added":
            self.nodes.append_nodes(change.node_ids)
            self.trees.update_counts()
            self._sync_selection()
            self._scroll_to_active()
        elif kind == "nodes_moved":
            self.nodes.nodes_changed(change.node_ids, (2, 3, 4))
        elif kind == "nodes_changed":  # radius, comment, property, branch point: not the tree
            self.nodes.refresh()
            self._sync_selection()
        elif kind == "groups_changed":
            self.trees.refresh()
            self._sync_selection()
        else:  # trees_changed (nodes may have changed tree), nodes_removed, full, unknown kinds
            self._refresh_all()
        self._update_counts()

    def _refresh_all(self) -> None:
        self.trees.refresh()
        self.nodes.refresh()
        self._sync_selection()
        self._update_counts()

    @contextmanager
    def _quiet(self, text: str):
        """One undo step and one refresh for several edits of one action."""
        self._quiet_depth += 1
        try:
            with self.editor.batch(text):
                yield
        finally:
            self._quiet_depth -= 1
            if not self._quiet_depth and self._pending_refresh:
                self._pending_refresh = False
                self._refresh_all()

    # -- selection sync -------------------------------------------------------------------
    def _selection_changed(self) -> None:
        refreshed = self.nodes.depends_on_selection
        if refreshed:
            self.nodes.refresh()
        self._sync_selection(skip=None if refreshed else self._origin)
        self.nodes.repaint()  # selection criteria and bold rows

    def _sync_selection(self, skip: str | None = None) -> None:
        """Show the editor's selected trees and nodes in the views (except view ``skip``)."""
        self._syncing = True
        try:
            if skip != "nodes":
                rows = self.nodes.table_rows(_ids(self.editor.selected_nodes))
                select_table_rows(self.node_view, rows[rows >= 0])
            if skip != "trees":
                rows = self.trees.table_rows(_ids(self.editor.selected_trees))
                select_table_rows(self.tree_view, rows[rows >= 0])
        finally:
            self._syncing = False

    def _node_rows_selected(self, *_args) -> None:
        if self._syncing:
            return
        self._origin = "nodes"
        try:
            self.editor.select_nodes(self.nodes.ids(selected_table_rows(self.node_view)).tolist())
        finally:
            self._origin = None
        self._update_counts()

    def _tree_rows_selected(self, *_args) -> None:
        if self._syncing:
            return
        self._origin = "trees"
        try:
            self.editor.select_trees(self.trees.ids(selected_table_rows(self.tree_view)).tolist())
        finally:
            self._origin = None
        self._update_counts()

    def _scroll_to_active(self) -> None:
        active = self.editor.active_node
        if active is None:
            return
        row = int(self.nodes.table_rows([active])[0])
        if row >= 0:
            index = self.nodes.index(row, 0)
            self.node_view.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.node_view.scrollTo(index)

    # -- filters --------------------------------------------------------------------------
    def _tree_filter_changed(self, *_args) -> None:
        self.trees.set_filter(text=self.tree_filter.text(), regex=self.tree_regex.isChecked())
        self._filter_done(self.trees)

    def _synapse_mode_changed(self, index: int) -> None:
        mode = SYNAPSE_TREE_MODES[index]
        self.trees.set_filter(synapse_trees=mode)
        self.nodes.set_filter(synapse_trees=mode)
        self._filter_done(self.trees)
        self._filter_done(self.nodes)

    def _node_filter_changed(self, *_args) -> None:
        self.nodes.set_filter(
            text=self.node_filter.text(), regex=self.node_regex.isChecked(),
            criteria=[name for name, box in self.criteria_boxes.items() if box.isChecked()],
            match_all=self.match_mode.currentIndex() == 0,
        )
        self._filter_done(self.nodes)

    def _filter_done(self, model: _ColumnTableModel) -> None:
        self._sync_selection()
        if model.filter_error:
            self._report(model.filter_error)
        elif self.status_label.text().startswith("invalid regular expression"):
            self._report("")

    def _update_counts(self, *_args) -> None:
        def text(noun, total, shown, selected):
            extra = (f", {shown} shown" if shown != total else "") + (f", {selected} selected" if selected else "")
            return f"{total} {noun}{extra}"

        skel = self.editor.skel
        self.tree_count.setText(text("trees", len(skel.trees), self.trees.rowCount(),
                                     len(self.editor.selected_trees)))
        self.node_count.setText(text("nodes", skel.num_nodes, self.nodes.rowCount(),
                                     len(self.editor.selected_nodes)))

    # -- messages -------------------------------------------------------------------------
    def _report(self, text: str) -> None:
        self.status_label.setText(text)
        self.status.emit(text)

    def _run(self, action: Callable[[], object]):
        """Run an editor action; a refusal is reported and gives None."""
        try:
            return action()
        except _REFUSALS as error:
            self._report(str(error) or type(error).__name__)
            return None

    def _selected_nodes(self) -> list[int]:
        return sorted(self.editor.selected_nodes)

    def _selected_trees(self) -> list[int]:
        return sorted(self.editor.selected_trees)

    # -- actions --------------------------------------------------------------------------
    def _copy(self, model: _ColumnTableModel, view: QTableView) -> str:
        rows = model._rows[selected_table_rows(view)]
        columns = range(model.columnCount())
        lines = ["\t".join(model.headers())]
        lines += ["\t".join(model.text_of(r, c).replace("\t", " ").replace("\n", " ") for c in columns)
                  for r in rows.tolist()]
        text = "\n".join(lines)
        QApplication.clipboard().setText(text)
        self._report(f"copied {len(rows)} rows")
        return text

    def copy_selected_nodes(self) -> str:
        """Copy the selected node rows (table order) as tab-separated text with a header line."""
        return self._copy(self.nodes, self.node_view)

    def copy_selected_trees(self) -> str:
        return self._copy(self.trees, self.tree_view)

    def select_trees_of_selected_nodes(self) -> list[int]:
        nodes = self._selected_nodes()
        if not nodes:
            self._report("no nodes selected")
            return []
        trees = np.unique(self.editor.skel.nodes["tree"][self.editor.skel.rows(nodes)]).tolist()
        self.editor.select_trees(trees)
        return trees

    def merge_selected_trees(self) -> int | None:
        """Merge the selected trees into the one with the smallest id."""
        trees = self._selected_trees()
        if len(trees) < 2:
            self._report("select two or more trees to merge")
            return None
        kept = self._run(lambda: self.editor.merge_trees(trees))
        if kept is not None:
            self._report(f"merged trees {', '.join(map(str, trees))} into tree {kept}")
        return kept

    def split_at_selected_edge(self) -> int | None:
        """Remove the edge between the two selected nodes; returns the new tree (None: no split)."""
        nodes = self._selected_nodes()
        if len(nodes) != 2:
            self._report("select two linked nodes to split at their edge")
            return None
        a, b = nodes
        if not self.editor.skel.has_edge(a, b):
            self._report(f"nodes {a} and {b} are not linked")
            return None
        new = self._run(lambda: self.editor.split_at_edge(a, b))
        self._report(f"split at edge {a}–{b}" + (f": new tree {new}" if new is not None else " (still connected)"))
        return new

    def extract_selected_component(self) -> int | None:
        """Move the connected component of the selected (or else active) node into a new tree."""
        nodes = self._selected_nodes()
        if len(nodes) > 1:
            self._report("select one node to extract its connected component")
            return None
        node = nodes[0] if nodes else self.editor.active_node
        if node is None:
            self._report("select a node to extract its connected component")
            return None
        new = self._run(lambda: self.editor.extract_component(node))
        if new is not None:
            self._report(f"component of node {node} is now tree {new}")
        else:
            self._report(f"the component of node {node} is its whole tree")
        return new

    def _confirm(self, text: str) -> bool:
        answer = QMessageBox.question(self, "Delete", text)
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected_nodes(self, confirm: bool = True) -> None:
        """Delete the selected nodes (asks first when several and ``confirm``)."""
        nodes = self._selected_nodes()
        if not nodes:
            self._report("no nodes selected")
            return
        if confirm and len(nodes) > 1 and not self._confirm(f"Delete {len(nodes)} nodes?"):
            return
        self._run(lambda: self.editor.delete_nodes(nodes))

    def delete_selected_trees(self, confirm: bool = True) -> None:
        trees = self._selected_trees()
        if not trees:
            self._report("no trees selected")
            return
        if confirm and not self._confirm(f"Delete {len(trees)} tree(s) with their nodes?"):
            return
        self._run(lambda: self.editor.delete_trees(trees))

    def set_comment_of_selected(self, text: str | None = None) -> None:
        """Set the comment of the selected (or else active) nodes; asks for it when ``text`` is None."""
        nodes = self._selected_nodes() or ([self.editor.active_node] if self.editor.active_node is not None else [])
        if not nodes:
            self._report("no nodes selected")
            return
        if text is None:
            current = {self.editor.skel.comments.get(n, "") for n in nodes}
            text, ok = QInputDialog.getText(self, "Set comment", f"Comment of {len(nodes)} node(s):",
                                            text=current.pop() if len(current) == 1 else "")
            if not ok:
                return

        def apply():
            with self._quiet("Set comment"):
                for node in nodes:
                    self.editor.set_comment(node, text)

        self._run(apply)

    def set_radius_of_selected(self, radius: float | None = None) -> None:
        """Set the radius (voxels) of the selected (or else active) nodes in one undo step; asks for it
        (starting at the default radius) when ``radius`` is None."""
        nodes = self._selected_nodes() or ([self.editor.active_node] if self.editor.active_node is not None else [])
        if not nodes:
            self._report("no nodes selected")
            return
        if radius is None:
            radius, ok = QInputDialog.getDouble(self, "Set radius", f"Radius (voxels) of {len(nodes)} node(s):",
                                                float(getattr(self.editor, "default_radius", 1.5)), 0.01, 1e4, 2)
            if not ok:
                return
        if not radius > 0:
            self._report(f"a radius must be positive, not {radius}")
            return
        self._run(lambda: self.editor.set_radius(nodes, float(radius)))

    def set_name_of_selected_trees(self, name: str | None = None) -> None:
        trees = self._selected_trees()
        if not trees:
            self._report("no trees selected")
            return
        if name is None:
            name, ok = QInputDialog.getText(self, "Tree name", f"Name of {len(trees)} tree(s):")
            if not ok:
                return

        def apply():
            with self._quiet("Set tree name"):
                for tree in trees:
                    self.editor.set_tree_attrs(tree, name=name)

        self._run(apply)

    def set_colour_of_selected_trees(self, color: tuple[float, float, float, float] | None = None) -> None:
        trees = self._selected_trees()
        if not trees:
            self._report("no trees selected")
            return
        if color is None:
            chosen = QColorDialog.getColor(parent=self)
            if not chosen.isValid():
                return
            color = chosen.getRgbF()

        def apply():
            with self._quiet("Set tree colour"):
                for tree in trees:
                    self.editor.set_tree_attrs(tree, color=tuple(float(c) for c in color))

        self._run(apply)

    def new_group(self, name: str | None = None) -> int | None:
        """Create a group (asks for its name when None) and move the selected trees into it."""
        if name is None:
            name, ok = QInputDialog.getText(self, "New group", "Group name:")
            if not ok:
                return None
        trees = self._selected_trees()

        def apply():
            with self._quiet("New group"):
                group = self.editor.add_group(name)
                if trees:
                    self.editor.move_trees_to_group(trees, group)
                return group

        return self._run(apply)

    def move_selected_trees_to_group(self, group_id: int | None) -> None:
        trees = self._selected_trees()
        if not trees:
            self._report("no trees selected")
            return
        self._run(lambda: self.editor.move_trees_to_group(trees, group_id))

    # -- navigation -----------------------------------------------------------------------
    def _step_row(self, model, current_id, direction: int, noun: str) -> int | None:
        """Table row after/before ``current_id`` (the first/last row without one); None past the end."""
        n = model.rowCount()
        if not n:
            return None
        current = int(model.table_rows([current_id])[0]) if current_id is not None else -1
        target = (0 if direction > 0 else n - 1) if current < 0 else current + direction
        if not 0 <= target < n:
            self._report(f"no further {noun} in the table")
            return None
        return target

    def next_node(self, direction: int = 1) -> int | None:
        """Node after (``direction`` 1) or before (-1) the active one in table order (KNOSSOS N/P):
        made active and selected, and a jump is requested. None at the end of the table."""
        target = self._step_row(self.nodes, self.editor.active_node, direction, "node")
        if target is None:
            return None
        node = self.nodes.id_at(target)
        self.editor.set_active_node(node)
        self.editor.select_nodes([node])
        self.node_view.scrollTo(self.nodes.index(target, 0))
        self.jump_requested.emit(node)
        return node

    def next_tree(self, direction: int = 1) -> int | None:
        """Tree after/before the active tree in table order (KNOSSOS Z / Shift+Z): made active and
        selected, its first node made active and jumped to. None at the end of the table."""
        target = self._step_row(self.trees, self.editor.active_tree, direction, "tree")
        if target is None:
            return None
        tree = self.trees.id_at(target)
        self.editor.set_active_tree(tree)  # an empty tree becomes active without a node
        self.editor.select_trees([tree])
        nodes = self.editor.skel.node_ids(tree)
        if len(nodes):
            self.editor.set_active_node(int(nodes[0]))
            self.jump_requested.emit(int(nodes[0]))
        self.tree_view.scrollTo(self.trees.index(target, 0))
        return tree

    # -- mouse ----------------------------------------------------------------------------
    def _node_double_clicked(self, index) -> None:
        node = self.nodes.id_at(index.row())
        self.editor.set_active_node(node)
        self.jump_requested.emit(node)

    def _tree_double_clicked(self, index) -> None:
        tree = self.trees.id_at(index.row())
        if index.column() == TreeTableModel.COLOUR:
            self.editor.select_trees([tree])
            self.set_colour_of_selected_trees()
            return
        nodes = self.editor.skel.node_ids(tree)
        if len(nodes):
            self.editor.set_active_node(int(nodes[0]))
            self.jump_requested.emit(int(nodes[0]))

    def _menu(self, entries: list[tuple[str, bool]]) -> QMenu:
        menu, actions = QMenu(self), self._actions()
        for name, enabled in entries:
            label, slot = actions[name]
            action = menu.addAction(label)
            action.setObjectName(name)
            action.setEnabled(enabled)
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
        return menu

    def node_menu(self) -> QMenu:
        """The node table's context menu, enabled by the current selection."""
        count, active = len(self.editor.selected_nodes), self.editor.active_node
        return self._menu([("copy_nodes", count > 0), ("select_trees_of_nodes", count > 0),
                           ("split_at_edge", count == 2), ("extract_component", count == 1 or active is not None),
                           ("set_comment", count > 0 or active is not None),
                           ("set_radius", count > 0 or active is not None), ("delete_nodes", count > 0)])

    def tree_menu(self) -> QMenu:
        """The tree table's context menu, with a "Move to group" submenu."""
        count = len(self.editor.selected_trees)
        menu = self._menu([("copy_trees", count > 0), ("merge_trees", count >= 2), ("set_tree_name", count > 0),
                           ("tree_colour", count > 0), ("new_group", True), ("delete_trees", count > 0)])
        groups = menu.addMenu("Move to group")
        groups.setEnabled(count > 0)
        groups.addAction("(no group)").triggered.connect(lambda _checked=False: self.move_selected_trees_to_group(None))
        for group in self.editor.skel.iter_groups():
            action = groups.addAction(f"{group.name or 'group'} ({group.id})")
            action.triggered.connect(lambda _checked=False, g=group.id: self.move_selected_trees_to_group(g))
        return menu

    def _node_menu(self, pos) -> None:
        self.node_menu().exec(self.node_view.viewport().mapToGlobal(pos))

    def _tree_menu(self, pos) -> None:
        self.tree_menu().exec(self.tree_view.viewport().mapToGlobal(pos))
