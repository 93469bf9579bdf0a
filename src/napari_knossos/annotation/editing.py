"""Undoable skeleton editing with KNOSSOS work modes (pure Python + numpy; no napari, no Qt).

:class:`SkeletonEditor` is the only way the GUI changes a :class:`~.skeleton.Skeleton`: it
enforces the work mode (Tracing, Tracing Advanced, Review), radius locking and the movement
area, runs the KNOSSOS synapse workflow, records every edit for undo/redo and tells
subscribers what changed (:class:`Change`) so the napari adapter can redraw incrementally.

Undo is exact: each edit is a list of small reversible operations that record what they
remove (node rows, edge rows with their indices, comments and properties with their
positions in the dicts, branch points with their stack positions, affected trees and groups)
and put it back where it was. Undo restores the node table, edges, comments,
node_properties, branch points, trees (attributes and dict order), groups and
``parameters.active_node`` exactly; it never snapshots the node table. Appends (tracing)
stay O(1) both ways.

Work modes (KNOSSOS annotation.h, mainwindow.cpp):

* **Tracing**: every new node is linked to the active node (``link=False`` is refused), links
  that would close a cycle are refused, synapses are refused. KNOSSOS hides "New tree" (``C``)
  in this mode, so :meth:`SkeletonEditor.new_tree` is refused once a tree exists; the first
  node of an empty skeleton creates tree 1. Tree operations from the tree table (merge, split,
  extract, move nodes to a tree, groups) stay available.
* **Tracing Advanced**: unlinked nodes (``linking``, ``A`` cycles on / off once / off),
  several trees (``C``), cycles, synapses.
* **Review**: read-only; every edit, undo and redo raise :class:`EditRefused`. Navigation
  (active node, traversal, selection) still works.

Positions are ``(x, y, z)`` mag-1 voxels as in the model. Radii given to the editor
(``default_radius``, :meth:`~SkeletonEditor.set_radius`) are voxels; they are stored in the
model's unit (nm for a webKnossos-dialect skeleton with a ``<scale>``, as the adapter reads
them).
"""

from __future__ import annotations

import copy
import enum
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import graph
from .skeleton import NODE_COLUMNS, BoundingBox, Group, Skeleton, Tree

__all__ = ["Change", "EditRefused", "Mode", "SkeletonEditor"]

REVIEW_MESSAGE = "Review mode: the skeleton is read-only"
SYNAPSE_MESSAGE = "Synapses need Tracing Advanced mode: switch the work mode to Tracing Advanced"
# NML node attributes (and the comment): never node properties
_RESERVED_NODE_KEYS = frozenset({
    "id", "x", "y", "z", "radius", "rotX", "rotY", "rotZ", "inVp", "inMag", "bitDepth",
    "interpolation", "time", "comment", *NODE_COLUMNS,
})  # fmt: skip
_MAX_CHANGES = 8  # more change descriptions than this in one notification: one "full" instead


class Mode(str, enum.Enum):
    TRACING = "Tracing"
    TRACING_ADVANCED = "Tracing Advanced"
    REVIEW = "Review"


class EditRefused(Exception):
    """An edit the work mode or a setting forbids; the message is meant for the status bar."""


def _no_ids() -> np.ndarray:
    return np.empty(0, np.int64)


@dataclass
class Change:
    """What an edit changed, so adapters refresh incrementally. Kinds:

    * ``nodes_added``: ``node_ids`` were appended as the last rows of the node table, and any
      new edges are the last rows of ``skel.edges``.
    * ``nodes_removed``: the nodes ``node_ids`` were the last rows and are gone, and so are the
      edges past ``skel.num_edges`` (undo of ``nodes_added``).
    * ``nodes_moved``: positions of ``node_ids`` changed.
    * ``nodes_changed``: radius, comment, property or branch point status of ``node_ids``.
    * ``edges_changed``: edges between ``node_ids`` were added or removed.
    * ``trees_changed``: attributes of ``tree_ids`` changed, trees were added or removed, or the
      nodes ``node_ids`` moved to another tree.
    * ``groups_changed``: the tree group hierarchy changed (nothing to redraw).
    * ``selection``, ``active``, ``mode``: editor state only (no model change).
    * ``full``: anything else (e.g. deletions): redraw everything.

    Notifications come after the edit is complete, in order; adapters should treat an unknown
    kind as ``full``.
    """

    kind: str
    node_ids: np.ndarray = field(default_factory=_no_ids)
    tree_ids: tuple[int, ...] = ()


_MERGEABLE = {"nodes_added", "nodes_removed", "nodes_moved", "nodes_changed", "edges_changed", "trees_changed"}
_INVERSE = {"nodes_added": "nodes_removed", "nodes_removed": "nodes_added"}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _ids(values) -> np.ndarray:
    """Node ids (an iterable, an array or one id) as an int64 array."""
    if not isinstance(values, np.ndarray) and not np.isscalar(values):
        values = list(values)
    return np.atleast_1d(np.asarray(values, np.int64))


def _reinsert(d: dict, back: list[tuple[int, Any, Any]]) -> None:
    """Put ``(index, key, value)`` entries back into ``d`` so each lands at ``index`` of the result."""
    if not back:
        return
    back = sorted(back, key=lambda e: e[0])
    if all(index == len(d) + i for i, (index, _, _) in enumerate(back)):
        for _, key, value in back:
            d[key] = value
        return
    items = list(d.items())
    for index, key, value in back:
        items.insert(index, (key, value))
    d.clear()
    d.update(items)


def _removed_entries(d: dict, drop: set) -> list[tuple[int, Any, Any]]:
    """``(index, key, value)`` of the keys of ``d`` in ``drop``, index = position in ``d``."""
    hits = [k for k in drop if k in d] if len(drop) < len(d) else [k for k in d if k in drop]
    if not hits:
        return []
    order = {k: i for i, k in enumerate(d)}
    return [(order[k], k, d[k]) for k in hits]


def _assign_tree(target: Tree, snapshot: Tree) -> None:
    for f in fields(Tree):
        setattr(target, f.name, copy.deepcopy(getattr(snapshot, f.name)))


# -- reversible operations ------------------------------------------------------------------
class _Op:
    """One exactly reversible model change: ``apply`` does it (again), ``revert`` undoes it."""

    __slots__ = ()

    def apply(self, skel: Skeleton) -> None:
        raise NotImplementedError

    def revert(self, skel: Skeleton) -> None:
        raise NotImplementedError


class _AppendNode(_Op):
    """Append one node (its id is the largest): O(1) both ways."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]):
        self.values = values

    def apply(self, skel):
        v = self.values
        attrs = {k: x for k, x in v.items() if k not in ("id", "tree", "x", "y", "z")}
        skel.add_node((v["x"], v["y"], v["z"]), v["tree"], node_id=v["id"], **attrs)

    def revert(self, skel):
        skel._drop_last_nodes(1)


class _AppendEdge(_Op):
    __slots__ = ("a", "b")

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def apply(self, skel):
        skel._append_edge(self.a, self.b)
        skel._touch()

    def revert(self, skel):
        skel._drop_last_edges(1)


class _RemoveEdges(_Op):
    __slots__ = ("positions", "values")

    def __init__(self, skel: Skeleton, positions: np.ndarray):
        self.positions = np.unique(np.asarray(positions, np.intp))
        self.values = np.asarray(skel.edges, np.int64).reshape(-1, 2)[self.positions].copy()

    def apply(self, skel):
        skel._remove_edge_rows(self.positions)

    def revert(self, skel):
        skel._insert_edge_rows(self.positions, self.values)


class _SetNodeColumns(_Op):
    """Set columns of some nodes (by id): ``columns[name] = (old values, new values)``."""

    __slots__ = ("columns", "ids")

    def __init__(self, ids: np.ndarray, columns: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.ids, self.columns = ids, columns

    def _write(self, skel, which: int) -> None:
        rows = skel.rows(self.ids)
        for name, pair in self.columns.items():
            skel.nodes[name][rows] = pair[which]
        skel._touch()

    def apply(self, skel):
        self._write(skel, 1)

    def revert(self, skel):
        self._write(skel, 0)


class _SetParameter(_Op):
    """Set one attribute of ``skel.parameters`` (e.g. the movement area)."""

    __slots__ = ("name", "new", "old")

    def __init__(self, skel: Skeleton, name: str, new):
        self.name, self.new = name, copy.deepcopy(new)
        self.old = copy.deepcopy(getattr(skel.parameters, name))

    def apply(self, skel):
        setattr(skel.parameters, self.name, copy.deepcopy(self.new))
        skel._touch()

    def revert(self, skel):
        setattr(skel.parameters, self.name, copy.deepcopy(self.old))
        skel._touch()


class _SetMeshes(_Op):
    """Replace the meshes of some trees in the editor's ``meshes`` dict (None: no mesh)."""

    __slots__ = ("meshes", "new", "old")

    def __init__(self, meshes: dict, new: dict):
        self.meshes, self.new = meshes, dict(new)
        self.old = {t: meshes.get(t) for t in new}

    def _put(self, values: dict) -> None:
        for tree_id, mesh in values.items():
            if mesh is None:
                self.meshes.pop(tree_id, None)
            else:
                self.meshes[tree_id] = mesh

    def apply(self, skel):
        self._put(self.new)

    def revert(self, skel):
        self._put(self.old)


def merged_mesh(meshes: list):
    """One mesh from several (vertices and faces concatenated; normals/colours kept when all have them)."""
    from .ply import Mesh

    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    normals = None if any(m.normals is None for m in meshes) else np.concatenate([m.normals for m in meshes])
    colors = None if any(m.colors is None for m in meshes) else np.concatenate([m.colors for m in meshes])
    return Mesh(np.concatenate([m.vertices for m in meshes]),
                np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]), normals, colors)


class _DictEdit(_Op):
    """Set or remove keys of ``skel.comments`` (``prop=None``) or of one node property dict;
    entries ``(key, old, old_index, new)``, ``_MISSING`` for absent. Key order is restored."""

    __slots__ = ("created", "entries", "prop")

    def __init__(self, skel: Skeleton, prop: str | None, changes: dict[int, Any]):
        self.prop = prop
        self.created = prop is not None and prop not in skel.node_properties
        d = self._target(skel, create=False) or {}
        removed = {k for k, v in changes.items() if v is _MISSING and k in d}
        index = {k: i for i, k in enumerate(d)} if removed else {}
        self.entries = [(k, d.get(k, _MISSING), index.get(k, -1), v) for k, v in changes.items()]

    def _target(self, skel, create: bool) -> dict | None:
        if self.prop is None:
            return skel.comments
        d = skel.node_properties.get(self.prop)
        if d is None and create:
            d = skel.node_properties[self.prop] = {}
        return d

    def apply(self, skel):
        d = self._target(skel, create=True)
        for key, _, _, new in self.entries:
            if new is _MISSING:
                d.pop(key, None)
            else:
                d[key] = new
        skel._touch()

    def revert(self, skel):
        d = self._target(skel, create=True)
        back = []
        for key, old, index, new in reversed(self.entries):
            if old is _MISSING:
                d.pop(key, None)
            elif new is _MISSING:
                back.append((index, key, old))
            else:
                d[key] = old
        _reinsert(d, back)
        if self.created:
            del skel.node_properties[self.prop]
        skel._touch()


class _PushBranchpoint(_Op):
    __slots__ = ("entry",)

    def __init__(self, entry: tuple[int, int | None]):
        self.entry = entry

    def apply(self, skel):
        skel.branchpoints.append(self.entry)
        skel._touch()

    def revert(self, skel):
        skel.branchpoints.pop()
        skel._touch()


class _PopBranchpoint(_PushBranchpoint):
    __slots__ = ()

    def apply(self, skel):
        _PushBranchpoint.revert(self, skel)

    def revert(self, skel):
        _PushBranchpoint.apply(self, skel)


class _DeleteNodes(_Op):
    """Delete nodes with their edges, comments, properties and branch points; undo puts every
    row and entry back at its position."""

    __slots__ = ("branchpoints", "comments", "edge_positions", "edge_values", "ids", "properties", "rows", "values")

    def __init__(self, skel: Skeleton, ids: np.ndarray):
        self.ids = ids
        self.rows = skel.rows(ids)
        self.values = {k: skel.nodes[k][self.rows].copy() for k in NODE_COLUMNS}
        edges = np.ascontiguousarray(skel.edges, np.int64).reshape(-1, 2)
        if len(edges):
            hit = np.isin(edges.reshape(-1), ids).reshape(-1, 2)
            self.edge_positions = np.flatnonzero(hit[:, 0] | hit[:, 1])
        else:
            self.edge_positions = np.empty(0, np.intp)
        self.edge_values = edges[self.edge_positions].copy()
        drop = set(ids.tolist())
        self.comments = _removed_entries(skel.comments, drop)
        self.properties = {name: e for name, d in skel.node_properties.items() if (e := _removed_entries(d, drop))}
        self.branchpoints = [(i, b) for i, b in enumerate(skel.branchpoints) if b[0] in drop]

    def apply(self, skel):
        skel.delete_nodes(self.ids)

    def revert(self, skel):
        skel._insert_node_rows(self.rows, self.values)
        if len(self.edge_positions):
            skel._insert_edge_rows(self.edge_positions, self.edge_values)
        _reinsert(skel.comments, self.comments)
        for name, back in self.properties.items():
            _reinsert(skel.node_properties[name], back)
        for i, entry in self.branchpoints:
            skel.branchpoints.insert(i, entry)
        skel._touch()


class _TreesOp(_Op):
    """Trees changed in place (``changed``: before/after snapshots), removed (with their
    position in the dict) and added (at the end). Snapshots are deep copies."""

    __slots__ = ("added", "changed", "removed")

    def __init__(self, changed=(), removed=(), added=()):
        self.changed: list[tuple[Tree, Tree]] = list(changed)
        self.removed: list[tuple[int, Tree]] = list(removed)
        self.added: list[Tree] = list(added)

    def apply(self, skel):
        for _, after in self.changed:
            _assign_tree(skel.trees[after.id], after)
        for _, tree in self.removed:
            del skel.trees[tree.id]
        for tree in self.added:
            skel.trees[tree.id] = copy.deepcopy(tree)
        skel._touch()

    def revert(self, skel):
        for tree in self.added:
            del skel.trees[tree.id]
        _reinsert(skel.trees, [(i, tree.id, copy.deepcopy(tree)) for i, tree in self.removed])
        for before, _ in self.changed:
            _assign_tree(skel.trees[before.id], before)
        skel._touch()


class _GroupsOp(_Op):
    __slots__ = ("after", "before")

    def __init__(self, before: list[Group], after: list[Group]):
        self.before, self.after = copy.deepcopy(before), copy.deepcopy(after)

    def apply(self, skel):
        skel.groups[:] = copy.deepcopy(self.after)
        skel._touch()

    def revert(self, skel):
        skel.groups[:] = copy.deepcopy(self.before)
        skel._touch()


# -- undo steps -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _State:
    """Editor state restored with a step: the model's active node, the active tree, the synapse
    workflow (state, cleft tree, pre-synapse node)."""

    active_node: int | None
    active_tree: int | None
    synapse: tuple[str, int | None, int | None]


@dataclass
class _Step:
    text: str
    before: _State
    ops: list[_Op] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    after: _State | None = None
    serial: int = 0
    move_ids: frozenset | None = None  # a move of these nodes, later moves of them may merge in


_IDLE = ("idle", None, None)


class SkeletonEditor:
    """Edits a :class:`Skeleton` as KNOSSOS does, undoably. See the module docstring.

    Settings (plain attributes): ``comment_slots`` (10 texts for Ctrl+1 … Ctrl+0),
    ``locking_word``/``locking_radius``/``radius_locking`` (read from the NML's KNOSSOS
    ``RadiusLocking`` parameter when present), ``default_radius`` (voxels), ``linking``
    (Tracing Advanced), ``mark_first_node`` (KNOSSOS pushes the first node of every tree as a
    branch point and comments it "First Node"; off by default), ``max_undo``.

    ``clock()`` returns seconds; node times and (webKnossos dialect) branch point times are
    ``int(clock() * 1000)``: Unix ms by default, pass a working-time clock for KNOSSOS times.
    """

    def __init__(self, skel: Skeleton, mode: Mode = Mode.TRACING, *, clock: Callable[[], float] = time.time,
                 max_undo: int = 1000):
        self.skel = skel
        self._mode = Mode(mode)
        self.clock = clock
        self.comment_slots: list[str] = [""] * 10
        self.locking_word = "seed"
        self.locking_radius = 100.0
        self._radius_locking = False
        self.default_radius = 1.5
        self.linking = True
        self.meshes: dict | None = None  # tree id → Mesh (a .k.zip's): merged and deleted with their trees
        self._skip_next_link = False
        self.mark_first_node = False
        self.max_undo = max_undo
        self._subscribers: list[Callable[[Change], None]] = []
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._open: _Step | None = None
        self._serial = 0
        self._base_serial = 0  # serial of the state below the oldest undo step
        self._saved_serial = 0
        self._coalesce: _Step | None = None
        self._selected_nodes: frozenset[int] = frozenset()
        self._selected_trees: frozenset[int] = frozenset()
        self._synapse: tuple[str, int | None, int | None] = _IDLE
        self._locked: tuple[int, tuple[float, float, float]] | None = None
        self._order_cache: tuple[tuple[int, int], np.ndarray] | None = None
        active = self.active_node
        # the active node's tree; without one the first tree (KNOSSOS activates it on loading)
        self._active_tree: int | None = skel.tree_of(active) if active is not None else next(iter(skel.trees), None)
        self._read_locking_settings()

    def _read_locking_settings(self) -> None:
        attrs = self.skel.parameters.knossos.get("RadiusLocking", {})
        try:
            if "lockingRadius" in attrs:
                self.locking_radius = float(attrs["lockingRadius"])
            if "enableCommentLocking" in attrs:
                self.radius_locking = attrs["enableCommentLocking"].strip().lower() in ("1", "true")
        except ValueError:
            pass
        if attrs.get("lockToNodesWithComment"):
            self.locking_word = attrs["lockToNodesWithComment"]

    # -- state --------------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def active_node(self) -> int | None:
        """``skel.parameters.active_node`` when that node exists, else None."""
        nid = self.skel.parameters.active_node
        return nid if nid is not None and self.skel.has_node(nid) else None

    @property
    def active_tree(self) -> int | None:
        """The tree made active by :meth:`new_tree`/:meth:`set_active_tree`, else the active node's tree."""
        if self._active_tree is not None and self._active_tree in self.skel.trees:
            return self._active_tree
        active = self.active_node
        return self.skel.tree_of(active) if active is not None else None

    @property
    def selected_nodes(self) -> frozenset[int]:
        return self._selected_nodes

    @property
    def selected_trees(self) -> frozenset[int]:
        return self._selected_trees

    @property
    def synapse_state(self) -> str:
        """``"idle"``, ``"cleft"`` (tracing the cleft) or ``"awaiting_post"`` (next node = post-synapse)."""
        return self._synapse[0]

    @property
    def synapse_cleft(self) -> int | None:
        """The cleft tree of the synapse in progress."""
        return self._synapse[1]

    @property
    def radius_locking(self) -> bool:
        return self._radius_locking

    @radius_locking.setter
    def radius_locking(self, on: bool) -> None:
        self._radius_locking = bool(on)
        if not on:
            self._locked = None
        self._refresh_lock()

    @property
    def locked_node(self) -> int | None:
        """The node radius locking is centred on (KNOSSOS keeps the lock until unlocked)."""
        return self._locked[0] if self._locked else None

    def unlock_position(self) -> None:
        self._locked = None

    @property
    def linking_state(self) -> str:
        """``"on"``, ``"off once"`` or ``"off"`` (Tracing Advanced ``A``); Tracing is always "on"."""
        if self._mode is Mode.TRACING or (self.linking and not self._skip_next_link):
            return "on"
        return "off once" if self.linking else "off"

    def cycle_linking(self) -> str:
        """KNOSSOS ``A``: linking on → off once (the next node only) → off → on."""
        if self._mode is not Mode.TRACING_ADVANCED:
            raise EditRefused("Linking can only be switched in Tracing Advanced mode")
        state = self.linking_state
        self.linking, self._skip_next_link = {"on": (True, True), "off once": (False, False), "off": (True, False)}[state]
        return self.linking_state

    def set_mode(self, mode: Mode | str) -> None:
        """Switch the work mode; leaving Tracing Advanced abandons a synapse in progress (its
        trees stay)."""
        mode = Mode(mode)
        if mode is self._mode:
            return
        self._mode = mode
        if mode is not Mode.TRACING_ADVANCED:
            self._synapse = _IDLE
            self._skip_next_link = False
        self._notify([Change("mode")])

    # -- subscribers ------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Change], None]) -> None:
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Change], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _notify(self, changes: list[Change]) -> None:
        for change in changes:
            for callback in list(self._subscribers):
                callback(change)

    # -- undo machinery ---------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].text if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].text if self._redo else ""

    @property
    def dirty(self) -> bool:
        """Unsaved changes: the state differs from the one :meth:`mark_saved` saw."""
        return self._top_serial() != self._saved_serial

    def _top_serial(self) -> int:
        return self._undo[-1].serial if self._undo else self._base_serial

    def mark_saved(self) -> None:
        self._saved_serial = self._top_serial()

    def clear_history(self) -> None:
        """Forget undo and redo (e.g. after loading another annotation); ``dirty`` is kept."""
        self._serial += 1
        if self.dirty:
            self._saved_serial = -1
        else:
            self._saved_serial = self._serial
        self._base_serial = self._serial
        self._undo.clear()
        self._redo.clear()
        self._coalesce = None

    def set_movement_area(self, top_left_xyz=None, size_xyz=None) -> None:
        """Set (or, without arguments, clear) the KNOSSOS movement area: mag-1 voxels
        ``[top_left, top_left + size)``; node placement and moves outside are refused. Undoable;
        saved as the NML ``<MovementArea>``."""
        box = None
        if top_left_xyz is not None:
            size = tuple(int(v) for v in size_xyz)
            if min(size) <= 0:
                raise EditRefused(f"movement area size must be positive, not {size}")
            box = BoundingBox(tuple(int(v) for v in top_left_xyz), size)
        with self._step("Movement area" if box else "Clear movement area"):
            self._do(_SetParameter(self.skel, "movement_area", box))
            self._changed("parameters")

    def replace_model(self, other: Skeleton) -> None:
        """Make the skeleton a copy of ``other`` in place (e.g. restoring a recovery file):
        every reference to the skeleton stays valid, undo history is cleared, and the state
        counts as unsaved."""
        self._check_editable()
        state = dict(other.__dict__)
        self.skel.__dict__.update(state)
        self.skel.version += 1
        self.clear_history()
        self._saved_serial = -1
        self._selected_nodes = frozenset()
        self._selected_trees = frozenset()
        self._synapse = _IDLE
        self._locked = None
        self._order_cache = None
        self._sync_active_tree()
        self._notify([Change("full")])

    def seal(self) -> None:
        """End move merging: the next :meth:`move_nodes` is its own undo step (mouse release)."""
        self._coalesce = None

    def _check_editable(self) -> None:
        if self._mode is Mode.REVIEW:
            raise EditRefused(REVIEW_MESSAGE)

    def _state(self) -> _State:
        return _State(self.skel.parameters.active_node, self._active_tree, self._synapse)

    def _set_state(self, state: _State) -> None:
        self.skel.parameters.active_node = state.active_node
        self._active_tree = state.active_tree
        self._synapse = state.synapse

    @contextmanager
    def _step(self, text: str, *, move_ids: frozenset | None = None) -> Iterator[_Step]:
        """One undo step; nested steps (and :meth:`batch`) join the outermost. An exception
        reverts what the failing part did."""
        self._check_editable()
        step = self._open
        if step is not None:
            mark_ops, mark_changes, state = len(step.ops), len(step.changes), self._state()
            try:
                yield step
            except BaseException:
                self._revert_ops(step.ops[mark_ops:])
                del step.ops[mark_ops:], step.changes[mark_changes:]
                self._set_state(state)
                raise
            return
        step = _Step(text, self._state(), move_ids=move_ids)
        self._open = step
        try:
            yield step
        except BaseException:
            self._open = None
            self._revert_ops(step.ops)
            self._set_state(step.before)
            raise
        self._open = None
        self._commit(step)

    def batch(self, text: str):
        """Several edits as one undo step (atomic: an exception reverts all of them)."""
        return self._step(text)

    def _do(self, op: _Op) -> None:
        op.apply(self.skel)
        self._open.ops.append(op)

    def _changed(self, kind: str, node_ids=(), tree_ids=()) -> None:
        self._open.changes.append(Change(kind, _ids(node_ids), tuple(int(t) for t in tree_ids)))

    def _revert_ops(self, ops: list[_Op]) -> None:
        for op in reversed(ops):
            op.revert(self.skel)

    def _commit(self, step: _Step) -> None:
        step.after = self._state()
        if not step.ops and step.after == step.before:
            self._after_change(step.before, step.changes)
            return
        self._redo.clear()
        self._serial += 1
        step.serial = self._serial
        self._undo.append(step)
        if len(self._undo) > self.max_undo > 0:
            self._base_serial = self._undo.pop(0).serial
        self._coalesce = step if step.move_ids is not None else None
        self._after_change(step.before, step.changes)

    def _pop_history(self, stack: list, what: str):
        """The step on top of the undo/redo ``stack`` (None if empty), checked as editable."""
        self._check_editable()
        if self._open is not None:
            raise RuntimeError(f"{what} inside an edit or batch")
        return stack.pop() if stack else None

    def undo(self) -> None:
        step = self._pop_history(self._undo, "undo")
        if step is None:
            return
        self._revert_ops(step.ops)
        self._set_state(step.before)
        self._redo.append(step)
        self._coalesce = None
        inverse = [Change(_INVERSE.get(c.kind, c.kind), c.node_ids, c.tree_ids) for c in reversed(step.changes)]
        self._after_change(step.after, inverse)

    def redo(self) -> None:
        step = self._pop_history(self._redo, "redo")
        if step is None:
            return
        for op in step.ops:
            op.apply(self.skel)
        self._set_state(step.after)
        self._undo.append(step)
        self._coalesce = None
        self._after_change(step.before, step.changes)

    def _after_change(self, before: _State, changes: list[Change]) -> None:
        """Editor bookkeeping after the model changed, then notify."""
        out = self._compact(changes)
        active, tree = self.skel.parameters.active_node, self._active_tree
        if (active, tree) != (before.active_node, before.active_tree):
            out.append(Change("active", _ids([] if active is None else [active]), () if tree is None else (tree,)))
        if self._synapse[1] is not None and self._synapse[1] not in self.skel.trees:
            self._synapse = _IDLE
        out += self._prune_selection()
        self._refresh_lock()
        self._notify(out)

    def _compact(self, changes: list[Change]) -> list[Change]:
        """Merge runs of the same kind; node ids of nodes that no longer exist are dropped
        (except for removals); too many descriptions become one ``full``."""
        if not changes:
            return []
        if any(c.kind == "full" for c in changes):
            return [Change("full")]
        added = [c.node_ids for c in changes if c.kind == "nodes_added"]
        if added and any(c.kind in ("nodes_moved", "nodes_changed") for c in changes):
            # new rows are drawn from the final model anyway: later edits of them need no notice
            new = np.concatenate(added)
            changes = [Change(c.kind, c.node_ids[~np.isin(c.node_ids, new)], c.tree_ids)
                       if c.kind in ("nodes_moved", "nodes_changed") else c for c in changes]
            changes = [c for c in changes if c.kind not in ("nodes_moved", "nodes_changed") or len(c.node_ids)]
        out: list[Change] = []
        for c in changes:
            if out and out[-1].kind == c.kind and c.kind in _MERGEABLE:
                prev = out[-1]
                out[-1] = Change(c.kind, np.concatenate([prev.node_ids, c.node_ids]),
                                 tuple(dict.fromkeys(prev.tree_ids + c.tree_ids)))
            else:
                out.append(c)
        if len(out) > _MAX_CHANGES:
            return [Change("full")]
        result = []
        for c in out:
            if c.kind not in ("nodes_removed", "nodes_added") and len(c.node_ids):
                ids = np.unique(c.node_ids)
                known = ids[np.isin(ids, self.skel.nodes["id"])] if len(ids) > 1 else (
                    ids if self.skel.has_node(int(ids[0])) else ids[:0])
                if not len(known) and c.kind in ("nodes_moved", "nodes_changed"):
                    continue
                c = Change(c.kind, known, c.tree_ids)
            result.append(c)
        return result

    def _prune_selection(self) -> list[Change]:
        out = []
        nodes = frozenset(n for n in self._selected_nodes if self.skel.has_node(n))
        trees = frozenset(t for t in self._selected_trees if t in self.skel.trees)
        if nodes != self._selected_nodes or trees != self._selected_trees:
            self._selected_nodes, self._selected_trees = nodes, trees
            out.append(Change("selection", _ids(sorted(nodes)), tuple(sorted(trees))))
        return out

    # -- helpers ------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _to_model_radius(self, radius_voxels: float) -> float:
        scale = self.skel.parameters.scale
        if self.skel.dialect == "webknossos" and scale is not None:
            return float(radius_voxels) * float(scale[0])
        return float(radius_voxels)

    def _activate(self, node_id: int | None) -> None:
        """Make ``node_id`` the active node (and its tree the active tree) within a step."""
        self.skel.parameters.active_node = None if node_id is None else int(node_id)
        if node_id is not None:
            self._active_tree = self.skel.tree_of(int(node_id))

    def _sync_active_tree(self) -> None:
        active = self.active_node
        if active is not None:
            self._active_tree = self.skel.tree_of(active)
        elif self._active_tree is not None and self._active_tree not in self.skel.trees:
            self._active_tree = None

    def _tree(self, tree_id: int) -> Tree:
        try:
            return self.skel.trees[int(tree_id)]
        except KeyError:
            raise KeyError(f"no tree with id {tree_id}") from None

    def _tree_is_empty(self, tree_id: int) -> bool:
        active = self.active_node
        if active is not None and self.skel.tree_of(active) == tree_id:
            return False
        return not bool(np.any(self.skel.nodes["tree"] == tree_id))

    def _add_tree(self, tree: Tree) -> int:
        if tree.id in self.skel.trees:
            raise ValueError(f"tree id {tree.id} exists")
        self._do(_TreesOp(added=[copy.deepcopy(tree)]))
        self._changed("trees_changed", (), (tree.id,))
        return tree.id

    def _change_trees(self, new: dict[int, Tree]) -> None:
        """Replace the attributes of existing trees by those of the ``new`` copies."""
        changed = [(copy.deepcopy(self.skel.trees[tid]), copy.deepcopy(t)) for tid, t in new.items()]
        self._do(_TreesOp(changed=changed))

    def _remove_trees_op(self, tree_ids: Iterable[int], changed: dict[int, Tree] | None = None,
                         added: Iterable[Tree] = ()) -> _TreesOp:
        tree_ids = list(tree_ids)
        order = {tid: i for i, tid in enumerate(self.skel.trees)} if tree_ids else {}
        removed = [(order[t], copy.deepcopy(self.skel.trees[t])) for t in sorted(tree_ids, key=order.get)]
        pairs = [(copy.deepcopy(self.skel.trees[t]), copy.deepcopy(n)) for t, n in (changed or {}).items()]
        return _TreesOp(changed=pairs, removed=removed, added=[copy.deepcopy(t) for t in added])

    def _check_movement_area(self, positions: np.ndarray) -> None:
        box = self.skel.parameters.movement_area
        if box is None:
            return
        lo = np.asarray(box.top_left, np.float64)
        size = np.asarray(box.size, np.float64)
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        inside = ((p >= lo) & (p < lo + size)) | (size <= 0)  # an axis without extent: unrestricted
        bad = ~inside.all(axis=1)
        if bad.any():
            x, y, z = p[bad][0]
            raise EditRefused(f"Outside the movement area: ({x:g}, {y:g}, {z:g}) is not within "
                              f"{tuple(int(v) for v in lo)} + {tuple(int(v) for v in size)}")

    def _refresh_lock(self) -> None:
        """KNOSSOS: activating a node whose comment contains the locking word (any case) locks
        placement to within ``locking_radius`` voxels of it, until unlocked."""
        if not self._radius_locking or not self.locking_word:
            return
        active = self.active_node
        if active is not None and self.locking_word.lower() in self.skel.comments.get(active, "").lower():
            self._locked = (active, tuple(float(v) for v in self.skel.position(active)))

    def _check_lock(self, position) -> None:
        if not self._radius_locking:
            return
        self._refresh_lock()
        if self._locked is None:
            return
        node, centre = self._locked
        distance = math.dist(position, centre)  # mag-1 voxels, as KNOSSOS (no voxel size)
        if distance > self.locking_radius:
            raise EditRefused(f"Radius locking: {distance:.0f} voxels from node {node} (comment "
                              f"\"{self.locking_word}\"), more than {self.locking_radius:g} allowed")

    def _connected(self, a: int, b: int) -> bool:
        labels = graph.connected_components(self.skel)
        ra, rb = self.skel.rows([a, b])
        return bool(labels[ra] == labels[rb])

    def _require_advanced(self) -> None:
        self._check_editable()
        if self._mode is not Mode.TRACING_ADVANCED:
            raise EditRefused(SYNAPSE_MESSAGE)

    # -- navigation (no undo step) ------------------------------------------------------------
    def set_active_node(self, node_id: int | None) -> None:
        """Make ``node_id`` (or nothing) the active node and its tree the active tree."""
        if node_id is not None:
            node_id = int(node_id)
            self.skel.rows(node_id)
        before = self._state()
        self._activate(node_id)
        self._after_change(before, [])

    def set_active_tree(self, tree_id: int) -> None:
        """Make ``tree_id`` the active tree; its node nearest to the active node becomes active
        (KNOSSOS ``setActiveTreeByID``), unless the active node is in it already."""
        tree_id = int(tree_id)
        self._tree(tree_id)
        before = self._state()
        self._active_tree = tree_id
        active = self.active_node
        if active is None or self.skel.tree_of(active) != tree_id:
            rows = np.flatnonzero(self.skel.nodes["tree"] == tree_id)
            if len(rows):
                pick = rows[0]
                if active is not None:
                    d = np.linalg.norm(self.skel.positions()[rows] - self.skel.position(active), axis=1)
                    pick = rows[int(np.argmin(d))]
                self.skel.parameters.active_node = int(self.skel.nodes["id"][pick])
        self._after_change(before, [])

    def select_nodes(self, node_ids, mode: str = "replace") -> None:
        """Select nodes: ``mode`` "replace", "add" or "toggle"."""
        ids = _ids(node_ids)
        self.skel.rows(ids)
        self._selected_nodes = self._combine(self._selected_nodes, ids.tolist(), mode)
        self._notify([Change("selection", _ids(sorted(self._selected_nodes)), tuple(sorted(self._selected_trees)))])

    def select_trees(self, tree_ids, mode: str = "replace") -> None:
        ids = [int(t) for t in tree_ids]
        for t in ids:
            self._tree(t)
        self._selected_trees = self._combine(self._selected_trees, ids, mode)
        self._notify([Change("selection", _ids(sorted(self._selected_nodes)), tuple(sorted(self._selected_trees)))])

    @staticmethod
    def _combine(current: frozenset[int], ids: list[int], mode: str) -> frozenset[int]:
        if mode == "replace":
            return frozenset(ids)
        if mode == "add":
            return current | frozenset(ids)
        if mode == "toggle":
            return current ^ frozenset(ids)
        raise ValueError(f"selection mode must be 'replace', 'add' or 'toggle', not {mode!r}")

    def traverse(self, direction: int = 1) -> int | None:
        """KNOSSOS ``X`` / ``Shift+X``: the next (1) or previous (-1) node of the active tree in
        depth-first order from its first node (each component from its smallest id, neighbours
        by ascending id, the tree's own edges). Makes it active and returns it; None (and
        nothing changes) past either end or without nodes."""
        if direction not in (1, -1):
            raise ValueError("direction must be 1 or -1")
        tree_id = self.active_tree
        if tree_id is None:
            return None
        order = self._tree_order(tree_id)
        if not len(order):
            return None
        active = self.active_node
        at = np.flatnonzero(order == active) if active is not None else ()
        if not len(at):
            target = int(order[0] if direction == 1 else order[-1])
        else:
            i = int(at[0]) + direction
            if not 0 <= i < len(order):
                return None
            target = int(order[i])
        self.set_active_node(target)
        return target

    def _tree_order(self, tree_id: int) -> np.ndarray:
        skel = self.skel
        key = (skel.version, tree_id)
        if self._order_cache is not None and self._order_cache[0] == key:
            return self._order_cache[1]
        rows = np.flatnonzero(skel.nodes["tree"] == tree_id)
        k = len(rows)
        local = np.full(skel.num_nodes, -1, np.int64)
        local[rows] = np.arange(k)
        edges = graph.adjacency(skel).edges  # distinct row pairs u < v
        u, v = local[edges[:, 0]], local[edges[:, 1]]
        inside = (u >= 0) & (v >= 0)
        src = np.concatenate([u[inside], v[inside]])
        dst = np.concatenate([v[inside], u[inside]])
        order = np.lexsort((dst, src))
        indptr = np.zeros(k + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=k), out=indptr[1:])
        nbrs, indptr_list = dst[order].tolist(), indptr.tolist()
        seen = [False] * k
        visit: list[int] = []
        for start in range(k):  # rows ascend with ids: components from their smallest id
            if seen[start]:
                continue
            stack = [start]
            while stack:
                r = stack.pop()
                if seen[r]:
                    continue
                seen[r] = True
                visit.append(r)
                stack.extend(reversed(nbrs[indptr_list[r] : indptr_list[r + 1]]))
        result = skel.nodes["id"][rows[np.asarray(visit, np.int64)]] if k else np.empty(0, np.int64)
        self._order_cache = (key, result)
        return result

    # -- nodes --------------------------------------------------------------------------------
    def place_node(self, position, *, link: bool | None = None, branch_stub: bool = False, **node_attrs) -> int:
        """Add a node at ``position`` (x, y, z voxels) to the active tree (a new tree if there is
        none) and return its id (largest id + 1).

        Linked to the active node when the active tree has nodes and linking applies (Tracing:
        always; Tracing Advanced: ``link`` if given, else the ``A`` linking state); the edge is
        stored (active, new). The new node becomes active, except for ``branch_stub``
        (KNOSSOS Ctrl+right-click): a linked node pushed as branch point while the previous
        node stays active. ``node_attrs``: other node columns (``in_vp``, ``in_mag`` …).
        Refused outside the movement area, beyond the radius lock, in Review mode.
        """
        self._check_editable()
        pos = tuple(float(c) for c in position)
        if len(pos) != 3:
            raise ValueError(f"a position is (x, y, z), got {position!r}")
        bad = set(node_attrs) - (set(NODE_COLUMNS) - {"id", "tree", "x", "y", "z"})
        if bad:
            raise TypeError(f"unknown node attributes {sorted(bad)}")
        self._check_movement_area(np.asarray(pos))
        self._check_lock(pos)
        if self._mode is Mode.TRACING:
            if link is False:
                raise EditRefused("Tracing mode links every new node to the active node: "
                                  "switch to Tracing Advanced for unlinked nodes")
            want_link, consume_skip = True, False
        elif link is None:
            want_link, consume_skip = self.linking and not self._skip_next_link, self._skip_next_link
        else:
            want_link, consume_skip = bool(link), False
        skel = self.skel
        with self._step("Place node"):
            tree_id = self.active_tree
            if tree_id is None:
                tree_id = self._add_tree(Tree(id=skel.next_tree_id()))
                self._active_tree = tree_id
            active = self.active_node
            first = self._tree_is_empty(tree_id)
            if want_link and active is not None and not first and self._synapse[0] == "awaiting_post":
                self._cancel_synapse()  # KNOSSOS: a linked node interrupts the synapse workflow
                active = self.active_node
                first = self._tree_is_empty(tree_id) if tree_id in skel.trees else True
                if tree_id not in skel.trees:
                    tree_id = self._add_tree(Tree(id=skel.next_tree_id()))
                    self._active_tree = tree_id
            link_to = active if (want_link and active is not None and not first) else None
            nid = skel.next_node_id()
            values: dict[str, Any] = {name: default for name, (_, default) in NODE_COLUMNS.items()}
            values.update(id=nid, tree=tree_id, x=pos[0], y=pos[1], z=pos[2],
                          radius=self._to_model_radius(self.default_radius), time=self._now_ms())
            values.update(node_attrs)
            self._do(_AppendNode(values))
            if link_to is not None:
                self._do(_AppendEdge(link_to, nid))
            self._changed("nodes_added", [nid], (tree_id,))
            if first and self.mark_first_node:
                self._push_branchpoint_op(nid)
                self._do(_DictEdit(skel, None, {nid: "First Node"}))
                self._changed("nodes_changed", [nid])
            if branch_stub and link_to is not None:
                self._push_branchpoint_op(nid)
                self._changed("nodes_changed", [nid])
            else:
                self._activate(nid)
            if consume_skip:
                self._skip_next_link = False
            if self._synapse[0] == "awaiting_post" and first:
                self._complete_synapse(nid)
        return nid

    def delete_nodes(self, node_ids) -> None:
        """Delete nodes with their edges, comments, properties and branch points (trees stay).
        A deleted active node passes on as in KNOSSOS: to a linked node (its edge target
        first), else the nearest node of its tree, else the nearest node."""
        self._check_editable()
        ids = np.unique(_ids(node_ids))
        if not len(ids):
            return
        self.skel.rows(ids)
        with self._step(f"Delete {len(ids)} node{'s' if len(ids) > 1 else ''}"):
            active = self.active_node
            drop = set(ids.tolist())
            successor = self._successor(active, drop) if active in drop else active
            self._do(_DeleteNodes(self.skel, ids))
            if active in drop:
                self._activate(successor)
            self._changed("full", ids)

    def _successor(self, node: int, drop: set[int]) -> int | None:
        skel = self.skel
        edges = np.asarray(skel.edges, np.int64).reshape(-1, 2)
        for target in edges[edges[:, 0] == node, 1].tolist():
            if target not in drop:
                return int(target)
        sources = [s for s in edges[edges[:, 1] == node, 0].tolist() if s not in drop]
        if sources:
            return int(sources[-1])
        keep = ~np.isin(skel.nodes["id"], list(drop))
        if not keep.any():
            return None
        d = np.linalg.norm(skel.positions() - skel.position(node), axis=1)
        same = keep & (skel.nodes["tree"] == skel.tree_of(node))
        pool = same if same.any() else keep
        d[~pool] = np.inf
        return int(skel.nodes["id"][int(np.argmin(d))])

    def move_nodes(self, positions: dict[int, tuple], *, coalesce: bool = True) -> None:
        """Move nodes to new (x, y, z) positions. Repeated moves of the same nodes (a drag) merge
        into one undo step until another edit, undo/redo or :meth:`seal`."""
        self._check_editable()
        if not positions:
            return
        ids = _ids(positions.keys())
        new = np.asarray([tuple(float(c) for c in p) for p in positions.values()], np.float64).reshape(-1, 3)
        order = np.argsort(ids, kind="stable")
        ids, new = ids[order], new[order]
        if len(np.unique(ids)) != len(ids):
            raise ValueError("a node appears twice")
        rows = self.skel.rows(ids)
        self._check_movement_area(new)
        key = frozenset(ids.tolist())
        top = self._undo[-1] if self._undo else None
        if coalesce and self._open is None and top is not None and top is self._coalesce and top.move_ids == key:
            op = top.ops[0]
            for axis, name in enumerate("xyz"):
                op.columns[name] = (op.columns[name][0], new[:, axis].copy())
            op.apply(self.skel)
            self._serial += 1
            top.serial = self._serial
            top.after = self._state()
            self._after_change(top.after, [Change("nodes_moved", ids)])
            return
        columns = {name: (self.skel.nodes[name][rows].copy(), new[:, axis].copy()) for axis, name in enumerate("xyz")}
        with self._step(f"Move {len(ids)} node{'s' if len(ids) > 1 else ''}", move_ids=key if coalesce else None):
            self._do(_SetNodeColumns(ids, columns))
            self._changed("nodes_moved", ids)

    def link(self, a: int, b: int) -> None:
        """Link ``a`` → ``b`` (stored in that direction; no-op if linked either way).
        Tracing refuses a link closing a cycle."""
        self._check_editable()
        a, b = int(a), int(b)
        if a == b:
            raise EditRefused("A node cannot be linked to itself")
        self.skel.rows([a, b])
        if self.skel.has_edge(a, b):
            return
        if self._mode is Mode.TRACING and self._connected(a, b):
            raise EditRefused(f"Tracing mode allows no cycles: nodes {a} and {b} are already connected "
                              "(switch to Tracing Advanced)")
        with self._step(f"Link {a}–{b}"):
            self._do(_AppendEdge(a, b))
            self._changed("edges_changed", [a, b])

    def unlink(self, a: int, b: int) -> None:
        """Remove the edge(s) between ``a`` and ``b`` (no-op if not linked)."""
        self._check_editable()
        a, b = int(a), int(b)
        self.skel.rows([a, b])
        positions = self.skel._edge_indices(a, b)
        if not len(positions):
            return
        with self._step(f"Unlink {a}–{b}"):
            self._do(_RemoveEdges(self.skel, positions))
            self._changed("edges_changed", [a, b])

    def toggle_link(self, a: int, b: int) -> None:
        """KNOSSOS Alt+click / Shift+middle-click: unlink if linked, else link ``a`` → ``b``."""
        if self.skel.has_edge(int(a), int(b)):
            self.unlink(a, b)
        else:
            self.link(a, b)

    def _radii(self, node_ids) -> tuple[np.ndarray, np.ndarray]:
        """(unique ids, a copy of their radii), checked as editable."""
        self._check_editable()
        ids = np.unique(_ids(node_ids))
        return ids, self.skel.nodes["radius"][self.skel.rows(ids)].copy()

    def set_radius(self, node_ids, radius: float) -> None:
        """Set the radius (voxels) of nodes."""
        ids, old = self._radii(node_ids)
        if not len(ids):
            return
        new = np.full(len(ids), self._to_model_radius(radius), old.dtype)
        with self._step("Set radius"):
            self._do(_SetNodeColumns(ids, {"radius": (old, new)}))
            self._changed("nodes_changed", ids)

    def scale_radius(self, node_ids, factor: float) -> None:
        """Multiply radii by ``factor`` (KNOSSOS Shift+wheel: 1.1 / 1 / 1.1); a missing radius
        counts as the default radius."""
        ids, old = self._radii(node_ids)
        if not len(ids):
            return
        base = np.where(np.isnan(old), np.float32(self._to_model_radius(self.default_radius)), old)
        new = (base * np.float32(factor)).astype(old.dtype)
        with self._step("Scale radius"):
            self._do(_SetNodeColumns(ids, {"radius": (old, new)}))
            self._changed("nodes_changed", ids)

    def set_comment(self, node_id: int, text: str | None) -> None:
        """Set a node's comment; empty or None removes it."""
        self._check_editable()
        nid = int(node_id)
        self.skel.rows(nid)
        new = text if text else _MISSING
        if self.skel.comments.get(nid, _MISSING) == new:
            return
        with self._step("Set comment" if text else "Remove comment"):
            self._do(_DictEdit(self.skel, None, {nid: new}))
            self._changed("nodes_changed", [nid])

    def apply_comment_slot(self, slot: int) -> None:
        """KNOSSOS Ctrl+1 … Ctrl+0 (slots 0 … 9): comment the active node with the slot's text."""
        self._check_editable()
        text = self.comment_slots[slot]
        key = (slot + 1) % 10
        if not text:
            raise EditRefused(f"Comment shortcut Ctrl+{key} has no text: set it in the comment settings")
        active = self.active_node
        if active is None:
            raise EditRefused("No active node to comment")
        self.set_comment(active, text)

    def set_node_property(self, node_id: int, key: str, value) -> None:
        """Set a node property (stored as text, as in NML); None removes it."""
        self._check_editable()
        nid = int(node_id)
        self.skel.rows(nid)
        if key in _RESERVED_NODE_KEYS or not key:
            raise EditRefused(f"{key!r} is a node attribute, not a property")
        new = _MISSING if value is None else str(value)
        current = self.skel.node_properties.get(key, {}).get(nid, _MISSING)
        if current == new:
            return
        with self._step(f"Set node property {key}"):
            self._do(_DictEdit(self.skel, key, {nid: new}))
            self._changed("nodes_changed", [nid])

    def set_tree_property(self, tree_id: int, key: str, value) -> None:
        """Set a tree property (text); None removes it."""
        self._check_editable()
        tree = self._tree(tree_id)
        new = copy.deepcopy(tree)
        if value is None:
            if key not in new.properties:
                return
            del new.properties[key]
        else:
            if new.properties.get(key) == str(value):
                return
            new.properties[key] = str(value)
        with self._step(f"Set tree property {key}"):
            self._change_trees({tree.id: new})
            self._changed("trees_changed", (), (tree.id,))

    def _push_branchpoint_op(self, nid: int) -> None:
        when = self._now_ms() if self.skel.dialect == "webknossos" else None
        self._do(_PushBranchpoint((int(nid), when)))

    def push_branchpoint(self, node_id: int | None = None) -> bool:
        """KNOSSOS ``B``: push a node (default: the active one) on the branch point stack;
        False if it is on the stack already."""
        self._check_editable()
        nid = self.active_node if node_id is None else int(node_id)
        if nid is None:
            raise EditRefused("No active node to mark as branch point")
        self.skel.rows(nid)
        if any(b[0] == nid for b in self.skel.branchpoints):
            return False
        with self._step("Push branch point"):
            self._push_branchpoint_op(nid)
            self._changed("nodes_changed", [nid])
        return True

    def pop_branchpoint(self) -> int | None:
        """KNOSSOS ``J``: pop the last branch point, make it active and return it (None when
        the stack is empty)."""
        self._check_editable()
        if not self.skel.branchpoints:
            return None
        entry = self.skel.branchpoints[-1]
        nid = int(entry[0])
        with self._step("Pop branch point"):
            self._do(_PopBranchpoint(entry))
            if self.skel.has_node(nid):
                self._activate(nid)
                self._changed("nodes_changed", [nid])
        return nid

    # -- trees and groups ---------------------------------------------------------------------
    def new_tree(self, **attrs) -> int:
        """KNOSSOS ``C``: a new tree (``attrs`` as :class:`Tree`) becomes the active tree; the
        next node starts it (unlinked). While tracing a synaptic cleft, ``C`` ends the cleft
        (:meth:`end_cleft`). Refused in Tracing mode once a tree exists."""
        self._check_editable()
        if self._synapse[0] == "cleft":
            return self.end_cleft()
        if self._mode is Mode.TRACING and self.skel.trees:
            raise EditRefused("Tracing mode traces one tree at a time: switch to Tracing Advanced to start a new tree")
        attrs.setdefault("id", self.skel.next_tree_id())
        tree = Tree(**attrs)
        with self._step("New tree"):
            self._add_tree(tree)
            self._active_tree = tree.id
        return tree.id

    def set_tree_attrs(self, tree_id: int, *, name: str | None = None, color=None, visible: bool | None = None) -> None:
        """Set a tree's name, colour (r, g, b, a floats) and/or visibility."""
        self._check_editable()
        tree = self._tree(tree_id)
        new = copy.deepcopy(tree)
        if name is not None:
            new.name = name
        if color is not None:
            new.color = tuple(float(c) for c in color)
        if visible is not None:
            new.visible = bool(visible)
        if new == tree:
            return
        with self._step("Change tree"):
            self._change_trees({tree.id: new})
            self._changed("trees_changed", (), (tree.id,))

    def delete_trees(self, tree_ids) -> None:
        """Delete trees with their nodes (KNOSSOS Ctrl+Del for the active tree). If the active
        tree goes, the first remaining tree becomes active (and its first node, if the active
        node went too)."""
        self._check_editable()
        ids = list(dict.fromkeys(int(t) for t in tree_ids))
        if not ids:
            return
        for t in ids:
            self._tree(t)
        skel = self.skel
        with self._step(f"Delete {len(ids)} tree{'s' if len(ids) > 1 else ''}"):
            active, active_tree = self.active_node, self.active_tree
            nodes = skel.nodes["id"][np.isin(skel.nodes["tree"], ids)]
            if len(nodes):
                self._do(_DeleteNodes(skel, nodes))
            self._do(self._remove_trees_op(ids))
            if self.meshes is not None and any(t in self.meshes for t in ids):
                self._do(_SetMeshes(self.meshes, {t: None for t in ids if t in self.meshes}))
            if self._synapse[1] in ids:
                self._synapse = _IDLE
            if active_tree in ids or active_tree is None:
                first = next(iter(skel.trees), None)
                self._active_tree = first
                if active is not None and not skel.has_node(active):
                    rows = np.flatnonzero(skel.nodes["tree"] == first) if first is not None else ()
                    skel.parameters.active_node = int(skel.nodes["id"][rows[0]]) if len(rows) else None
            elif active is not None and not skel.has_node(active):
                skel.parameters.active_node = None
            self._changed("full", nodes, ids)

    def set_mesh(self, tree_id: int, mesh) -> None:
        """Give a tree a mesh (``None`` removes it); KNOSSOS keeps one mesh per tree. Undoable."""
        self._check_editable()
        self._tree(tree_id)
        if self.meshes is None:
            self.meshes = {}
        with self._step("Set mesh" if mesh is not None else "Remove mesh"):
            self._do(_SetMeshes(self.meshes, {int(tree_id): mesh}))
            self._changed("meshes", (), (int(tree_id),))

    def merge_trees(self, tree_ids) -> int:
        """Move the nodes of all trees into the first one and remove the others; returns the
        first id. Attributes as :func:`graph.merge_trees` (the first tree's stay; others'
        properties and metadata fill in missing keys, synapse roles never)."""
        self._check_editable()
        ids = list(dict.fromkeys(int(t) for t in tree_ids))
        if len(ids) < 2:
            raise EditRefused("Select at least two trees to merge")
        for t in ids:
            self._tree(t)
        keep_id, others = ids[0], ids[1:]
        skel = self.skel
        keep = copy.deepcopy(skel.trees[keep_id])
        for other_id in others:
            other = skel.trees[other_id]
            for key, value in other.properties.items():
                if key not in graph.SYNAPSE_PROPERTIES:
                    keep.properties.setdefault(key, value)
            have = {m.key for m in keep.metadata}
            keep.metadata.extend(copy.deepcopy(m) for m in other.metadata if m.key not in have)
        rows = np.flatnonzero(np.isin(skel.nodes["tree"], others))
        moving = skel.nodes["id"][rows].copy()
        with self._step("Merge trees"):
            if len(moving):
                old = skel.nodes["tree"][rows].copy()
                self._do(_SetNodeColumns(moving, {"tree": (old, np.full(len(rows), keep_id, old.dtype))}))
            self._do(self._remove_trees_op(others, changed={keep_id: keep}))
            if self.meshes is not None and any(t in self.meshes for t in ids):  # merging trees merges meshes
                parts = [self.meshes[t] for t in ids if t in self.meshes]
                self._do(_SetMeshes(self.meshes, {keep_id: merged_mesh(parts), **{t: None for t in others}}))
            if self._synapse[1] in others:
                self._synapse = _IDLE
            self._active_tree = keep_id
            self._changed("trees_changed", moving, ids)
        return keep_id

    def _move_to_tree(self, node_ids: np.ndarray, tree_id: int) -> None:
        rows = self.skel.rows(node_ids)
        old = self.skel.nodes["tree"][rows].copy()
        self._do(_SetNodeColumns(node_ids, {"tree": (old, np.full(len(rows), tree_id, old.dtype))}))

    def split_at_edge(self, a: int, b: int) -> int | None:
        """Remove the edge a–b; if that disconnects b's part of the tree, move it to a new tree
        (same group) and return its id (as :func:`graph.split_tree_at_edge`)."""
        self._check_editable()
        a, b = int(a), int(b)
        skel = self.skel
        skel.rows([a, b])
        positions = skel._edge_indices(a, b)
        if not len(positions):
            raise EditRefused(f"Nodes {a} and {b} are not linked")
        with self._step(f"Split at edge {a}–{b}"):
            self._do(_RemoveEdges(skel, positions))
            self._changed("edges_changed", [a, b])
            tree_id = skel.tree_of(b)
            if skel.tree_of(a) != tree_id:
                return None
            members = skel.node_ids(tree_id)
            labels = graph.connected_components(skel, tree_id)
            la, lb = labels[np.searchsorted(members, [a, b])]
            if la == lb:
                return None
            moving = members[labels == lb]
            new = Tree(id=skel.next_tree_id(), group_id=skel.trees[tree_id].group_id)
            self._add_tree(new)
            self._move_to_tree(moving, new.id)
            self._sync_active_tree()
            self._changed("trees_changed", moving, (tree_id, new.id))
        return new.id

    def extract_component(self, node_id: int) -> int | None:
        """Move the connected component of ``node_id`` (across trees) to a new tree; trees left
        empty are deleted; None when the component is exactly one whole tree (KNOSSOS)."""
        self._check_editable()
        skel = self.skel
        nid = int(node_id)
        comp = graph.component_nodes(skel, nid)
        rows = skel.rows(comp)
        seen = np.unique(skel.nodes["tree"][rows])
        if len(seen) == 1 and np.count_nonzero(skel.nodes["tree"] == seen[0]) == len(comp):
            return None
        template = skel.trees.get(skel.tree_of(nid)) or Tree(id=0)
        with self._step("Extract connected component"):
            new = Tree(id=skel.next_tree_id(), group_id=template.group_id)
            self._add_tree(new)
            self._move_to_tree(comp, new.id)
            emptied = [int(t) for t in seen.tolist() if t in skel.trees and not np.any(skel.nodes["tree"] == t)]
            if emptied:
                self._do(self._remove_trees_op(emptied))
                if self._synapse[1] in emptied:
                    self._synapse = _IDLE
            self._sync_active_tree()
            self._changed("trees_changed", comp, (*seen.tolist(), new.id))
        return new.id

    def move_nodes_to_tree(self, node_ids, tree_id: int) -> None:
        """Move nodes to another tree; edges stay, emptied trees are kept (KNOSSOS)."""
        self._check_editable()
        tree_id = int(tree_id)
        self._tree(tree_id)
        ids = np.unique(_ids(node_ids))
        if not len(ids):
            return
        rows = self.skel.rows(ids)
        moving = ids[self.skel.nodes["tree"][rows] != tree_id]
        if not len(moving):
            return
        old_trees = np.unique(self.skel.nodes["tree"][self.skel.rows(moving)]).tolist()
        with self._step("Move nodes to tree"):
            self._move_to_tree(moving, tree_id)
            self._sync_active_tree()
            self._changed("trees_changed", moving, (*old_trees, tree_id))

    @staticmethod
    def _find_group(groups: list[Group], group_id: int) -> tuple[list[Group], int]:
        """(the list holding the group, its index) in a group forest."""
        stack = [groups]
        while stack:
            siblings = stack.pop()
            for i, g in enumerate(siblings):
                if g.id == group_id:
                    return siblings, i
                stack.append(g.children)
        raise KeyError(f"no tree group with id {group_id}")

    def _groups_step(self, text: str, new_groups: list[Group], tree_changes: dict[int, Tree] | None = None) -> None:
        with self._step(text):
            self._do(_GroupsOp(self.skel.groups, new_groups))
            self._changed("groups_changed")
            if tree_changes:
                self._change_trees(tree_changes)
                self._changed("trees_changed", (), tuple(tree_changes))

    def add_group(self, name: str, parent_id: int | None = None) -> int:
        """A new tree group (webKnossos) at the top level or inside ``parent_id``; returns its id."""
        self._check_editable()
        groups = copy.deepcopy(self.skel.groups)
        gid = max((g.id for g in self.skel.iter_groups()), default=0) + 1
        target = groups
        if parent_id is not None:
            siblings, i = self._find_group(groups, int(parent_id))
            target = siblings[i].children
        target.append(Group(id=gid, name=name))
        self._groups_step("Add group", groups)
        return gid

    def rename_group(self, group_id: int, name: str) -> None:
        self._check_editable()
        groups = copy.deepcopy(self.skel.groups)
        siblings, i = self._find_group(groups, int(group_id))
        if siblings[i].name == name:
            return
        siblings[i].name = name
        self._groups_step("Rename group", groups)

    def move_group(self, group_id: int, parent_id: int | None) -> None:
        """Move a group (with its subgroups) to the end of ``parent_id``'s children (None: top)."""
        self._check_editable()
        groups = copy.deepcopy(self.skel.groups)
        siblings, i = self._find_group(groups, int(group_id))
        group = siblings[i]
        if parent_id is not None and any(g.id == int(parent_id) for g in group.walk()):
            raise EditRefused(f"Group {group_id} cannot move into itself or its subgroups")
        del siblings[i]
        if parent_id is None:
            groups.append(group)
        else:
            parent_list, j = self._find_group(groups, int(parent_id))
            parent_list[j].children.append(group)
        self._groups_step("Move group", groups)

    def delete_group(self, group_id: int) -> None:
        """Remove a group; its subgroups and trees move to its parent (top level: no group)."""
        self._check_editable()
        gid = int(group_id)
        groups = copy.deepcopy(self.skel.groups)
        siblings, i = self._find_group(groups, gid)
        removed = siblings.pop(i)
        siblings[i:i] = removed.children
        parent = self._parent_group_id(self.skel.groups, gid)
        changes = {}
        for tid, tree in self.skel.trees.items():
            if tree.group_id == gid:
                new = copy.deepcopy(tree)
                new.group_id = parent
                changes[tid] = new
        self._groups_step("Delete group", groups, changes)

    @staticmethod
    def _parent_group_id(groups: list[Group], group_id: int) -> int | None:
        for top in groups:
            for g in top.walk():
                if any(c.id == group_id for c in g.children):
                    return g.id
        return None

    def move_trees_to_group(self, tree_ids, group_id: int | None) -> None:
        """Put trees into a group (None: no group)."""
        self._check_editable()
        if group_id is not None:
            self._find_group(self.skel.groups, int(group_id))
            group_id = int(group_id)
        changes = {}
        for t in dict.fromkeys(int(t) for t in tree_ids):
            tree = self._tree(t)
            if tree.group_id != group_id:
                new = copy.deepcopy(tree)
                new.group_id = group_id
                changes[t] = new
        if not changes:
            return
        with self._step("Move trees to group"):
            self._change_trees(changes)
            self._changed("trees_changed", (), tuple(changes))

    # -- synapses (KNOSSOS: cleft tree with synapticCleft / preSynapse / postSynapse) ----------
    def _cleft_of_node(self, node_id: int) -> int | None:
        text = str(node_id)
        for tid, tree in self.skel.trees.items():
            if tree.is_synapse and text in (tree.properties.get("preSynapse"), tree.properties.get("postSynapse")):
                return tid
        return None

    def start_synapse(self) -> int:
        """KNOSSOS Shift+C: the active node becomes the pre-synapse and a new cleft tree the
        active tree; trace the cleft, then :meth:`end_cleft` (``C``); the next node placed (the
        first of a new tree) is the post-synapse. Returns the cleft tree id."""
        self._require_advanced()
        if self._synapse[0] != "idle":
            raise EditRefused("A synapse is in progress: C ends the cleft, the next node placed is the post-synapse")
        pre = self.active_node
        if pre is None:
            raise EditRefused("Shift+C marks the active node as pre-synapse: there is no active node")
        if self.skel.trees[self.skel.tree_of(pre)].is_synapse:
            raise EditRefused("The active node lies in a synaptic cleft tree")
        cleft = Tree(id=self.skel.next_tree_id(), properties={"synapticCleft": "true", "preSynapse": str(pre)})
        with self._step("Start synapse"):
            self._add_tree(cleft)
            self._active_tree = cleft.id
            self._synapse = ("cleft", cleft.id, pre)
        return cleft.id

    def end_cleft(self) -> int:
        """KNOSSOS ``C`` while tracing a cleft: start a new tree, whose first node will be the
        post-synapse. Returns the new tree's id."""
        self._require_advanced()
        state, cleft, pre = self._synapse
        if state != "cleft":
            raise EditRefused("No synaptic cleft is being traced (Shift+C on the pre-synapse starts one)")
        tree = Tree(id=self.skel.next_tree_id())
        with self._step("End synaptic cleft"):
            self._add_tree(tree)
            self._active_tree = tree.id
            self._synapse = ("awaiting_post", cleft, pre)
        return tree.id

    def _complete_synapse(self, post: int) -> None:
        _, cleft, _ = self._synapse
        tree = self.skel.trees.get(cleft)
        if tree is not None:
            new = copy.deepcopy(tree)
            new.properties["postSynapse"] = str(post)
            new.visible = False  # KNOSSOS hides finished clefts
            self._change_trees({cleft: new})
            self._changed("trees_changed", (), (cleft,))
        self._synapse = _IDLE

    def _cancel_synapse(self) -> None:
        """KNOSSOS: a linked node while waiting for the post-synapse deletes the cleft tree."""
        _, cleft, _ = self._synapse
        self._synapse = _IDLE
        if cleft in self.skel.trees:
            nodes = self.skel.node_ids(cleft)
            if len(nodes):
                self._do(_DeleteNodes(self.skel, nodes.copy()))
            self._do(self._remove_trees_op([cleft]))
            self._changed("full", nodes, (cleft,))
            self._sync_active_tree()

    def make_synapse(self, pre_node: int, post_node: int) -> int:
        """KNOSSOS Shift+C with two selected nodes of different trees: a hidden cleft tree with
        one node halfway between them (as KNOSSOS, rounded down). If either node is already
        part of a synapse, that synapse gets these pre/post nodes instead. Returns the cleft
        tree id. The active node and tree do not change."""
        self._require_advanced()
        pre, post = int(pre_node), int(post_node)
        skel = self.skel
        tree_pre, tree_post = skel.tree_of(pre), skel.tree_of(post)
        if tree_pre == tree_post:
            raise EditRefused("A synapse joins nodes of two different trees")
        if skel.trees[tree_pre].is_synapse or skel.trees[tree_post].is_synapse:
            raise EditRefused("Pre- and post-synapse cannot lie in synaptic cleft trees")
        existing = self._cleft_of_node(pre)
        if existing is None:
            existing = self._cleft_of_node(post)
        with self._step("Make synapse"):
            if existing is not None:
                new = copy.deepcopy(skel.trees[existing])
                new.properties["preSynapse"], new.properties["postSynapse"] = str(pre), str(post)
                self._change_trees({existing: new})
                self._changed("trees_changed", (), (existing,))
                return existing
            a, b = skel.position(pre), skel.position(post)
            middle = np.minimum(a, b) + np.floor(np.abs(a - b) / 2)
            self._check_movement_area(middle)
            cleft = Tree(id=skel.next_tree_id(), visible=False,
                         properties={"synapticCleft": "true", "preSynapse": str(pre), "postSynapse": str(post)})
            self._add_tree(cleft)
            nid = skel.next_node_id()
            values = {name: default for name, (_, default) in NODE_COLUMNS.items()}
            values.update(id=nid, tree=cleft.id, x=float(middle[0]), y=float(middle[1]), z=float(middle[2]),
                          radius=self._to_model_radius(self.default_radius), time=self._now_ms())
            self._do(_AppendNode(values))
            self._changed("nodes_added", [nid], (cleft.id,))
        return cleft.id

    def reverse_synapse(self, cleft_tree_id: int | None = None) -> None:
        """KNOSSOS Ctrl+Shift+C: swap pre- and post-synapse of a cleft tree (default: the active
        tree if it is a cleft, else the synapse the active node belongs to)."""
        self._require_advanced()
        tid = cleft_tree_id
        if tid is None:
            tid = self.active_tree
            if tid is None or not self.skel.trees[tid].is_synapse:
                active = self.active_node
                tid = self._cleft_of_node(active) if active is not None else None
        if tid is None or not self._tree(tid).is_synapse:
            raise EditRefused("No synapse to reverse: make its cleft tree or its pre/post node active")
        tree = self.skel.trees[int(tid)]
        props = tree.properties
        if "preSynapse" not in props or "postSynapse" not in props:
            raise EditRefused(f"Synapse {tid} is incomplete: it needs a pre- and a post-synapse to reverse")
        new = copy.deepcopy(tree)
        new.properties["preSynapse"], new.properties["postSynapse"] = props["postSynapse"], props["preSynapse"]
        with self._step("Reverse synapse"):
            self._change_trees({tree.id: new})
            self._changed("trees_changed", (), (tree.id,))
