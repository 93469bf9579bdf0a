"""The skeleton annotation model: everything NML (both dialects) and .k.zip carry, losslessly.

Pure Python + numpy; no napari, no Qt. Nodes are stored column-wise (one numpy array per
attribute, rows kept sorted by node id) so a million nodes cost tens of MB, not GB.
Coordinates are 0-based mag-1 voxels ``(x, y, z)`` as in the file formats; the napari
adapter converts to nm ``(z, y, x)``.

Naming follows webknossos-libs (Skeleton → Group/Tree → Node) and KNOSSOS (branch points,
comments, synapses as cleft trees, movement area).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Iterable, Iterator

import numpy as np

__all__ = [
    "BoundingBox",
    "Group",
    "MetadataEntry",
    "Parameters",
    "Skeleton",
    "Tree",
    "NODE_COLUMNS",
]

# column name -> (dtype, default for a new node); -1 means "not given" for integer attributes
NODE_COLUMNS: dict[str, tuple[str, Any]] = {
    "id": ("i8", 0),
    "tree": ("i8", 0),
    "x": ("f8", 0.0),
    "y": ("f8", 0.0),
    "z": ("f8", 0.0),
    "radius": ("f4", np.nan),  # nan: not given in the file
    "rot_x": ("f4", np.nan),
    "rot_y": ("f4", np.nan),
    "rot_z": ("f4", np.nan),
    "in_vp": ("i1", -1),
    "in_mag": ("i4", -1),
    "bit_depth": ("i2", -1),
    "interpolation": ("i1", -1),  # -1 not given, 0 false, 1 true
    "time": ("i8", -1),
}


@dataclass
class BoundingBox:
    """A box in mag-1 voxels: ``top_left`` (x, y, z) and ``size`` (width, height, depth)."""

    top_left: tuple[int, int, int]
    size: tuple[int, int, int]
    id: int | None = None
    name: str = ""
    color: tuple[float, float, float, float] | None = None
    visible: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # attributes we do not model


@dataclass
class MetadataEntry:
    """webKnossos tree/segment metadata: one of str, float, bool or list of str."""

    key: str
    value: str | float | bool | list[str]


@dataclass
class Parameters:
    """``<parameters>`` of both dialects. Positions are 0-based voxels (x, y, z)."""

    experiment: str = ""
    experiment_attrs: dict[str, str] = field(default_factory=dict)  # organization, datasetId, description, wkUrl …
    scale: tuple[float, float, float] | None = None  # nm per mag-1 voxel
    scale_unit: str | None = None
    offset: tuple[float, float, float] | None = None
    time_ms: int | None = None  # KNOSSOS: working time; webKnossos: creation Unix ms
    edit_position: tuple[float, float, float] | None = None
    edit_rotation: tuple[float, float, float] | None = None
    zoom_level: float | None = None
    active_node: int | None = None
    movement_area: BoundingBox | None = None  # KNOSSOS <MovementArea>, box [min, min+size)
    user_bounding_boxes: list[BoundingBox] = field(default_factory=list)
    task_bounding_box: BoundingBox | None = None
    description: str | None = None
    # KNOSSOS-only parameters kept by element name → attributes (createdin, lastsavedin, guiMode,
    # dataset, RadiusLocking, segmentation, skeletonVPState, vpSettingsZoom, brush_lock, …)
    knossos: dict[str, dict[str, str]] = field(default_factory=dict)
    # attributes we do not model on the elements above, by element name (e.g. editPosition's
    # webKnossos ``additionalCoordinate-*``, a KNOSSOS ``time`` checksum that does not match)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    # anything else, verbatim: serialized XML elements in file order
    unknown: list[bytes] = field(default_factory=list)


@dataclass
class Tree:
    """One tree (KNOSSOS ``<thing>``). ``properties`` holds every attribute we do not model
    (KNOSSOS tree properties, incl. ``synapticCleft``/``preSynapse``/``postSynapse``)."""

    id: int
    name: str = ""  # webKnossos ``name``; KNOSSOS property ``comment``
    color: tuple[float, float, float, float] | None = None  # None: default colour
    visible: bool = True
    group_id: int | None = None
    type: str | None = None  # webKnossos DEFAULT | AGGLOMERATE
    properties: dict[str, str] = field(default_factory=dict)
    metadata: list[MetadataEntry] = field(default_factory=list)
    unknown: list[bytes] = field(default_factory=list)  # unknown child elements, verbatim

    @property
    def is_synapse(self) -> bool:
        return self.properties.get("synapticCleft", "").lower() in ("true", "1")


@dataclass
class Group:
    id: int
    name: str = ""
    expanded: bool | None = None
    children: list[Group] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def walk(self) -> Iterator[Group]:
        yield self
        for child in self.children:
            yield from child.walk()


def _spare_capacity(n: int) -> int:
    """Rows to allocate for ``n`` rows in use: 25 % headroom so appends are amortised O(1)."""
    return n + 1 + n // 4 + 64


def _without_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a`` without the (sorted, unique) ``rows``, as the leading rows of a new buffer with
    spare capacity (the view's ``base``): block copies when the rows are few."""
    m = len(a) - len(rows)
    buffer = np.empty((_spare_capacity(m), *a.shape[1:]), a.dtype)
    if len(rows) > 32:
        keep = np.ones(len(a), bool)
        keep[rows] = False
        np.compress(keep, a, axis=0, out=buffer[:m])
        return buffer[:m]
    at = 0
    for lo, hi in pairwise([-1, *rows.tolist(), len(a)]):
        buffer[at : at + hi - lo - 1] = a[lo + 1 : hi]
        at += hi - lo - 1
    return buffer[:m]


def _with_rows(a: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``a`` with ``values`` inserted so that they land at the (sorted, unique) indices ``rows``
    of the result: the inverse of :func:`_without_rows`, into a new spare-capacity buffer."""
    m = len(a) + len(rows)
    buffer = np.empty((_spare_capacity(m), *a.shape[1:]), a.dtype)
    out = buffer[:m]
    if len(rows) > 32:
        keep = np.ones(m, bool)
        keep[rows] = False
        out[keep] = a
        out[rows] = values
        return out
    src = 0
    for i, (lo, hi) in enumerate(pairwise([-1, *rows.tolist()])):
        out[lo + 1 : hi] = a[src : src + hi - lo - 1]
        src += hi - lo - 1
        out[hi] = values[i]
    last = int(rows[-1]) + 1 if len(rows) else 0
    out[last:] = a[src:]
    return out


class Skeleton:
    """Trees, nodes, edges, comments, branch points, groups and parameters of one annotation.

    Nodes: ``self.nodes[column]`` arrays of equal length (see :data:`NODE_COLUMNS`), rows
    sorted by id. Per-node properties (KNOSSOS extra attributes, e.g. ``myNumber``) are sparse:
    ``node_properties[name][node_id] = str``. Edges: ``self.edges`` (E, 2) node ids, each
    undirected edge stored once in its file direction.
    """

    def __init__(self) -> None:
        self.parameters = Parameters()
        self.trees: dict[int, Tree] = {}
        self.groups: list[Group] = []
        self.nodes: dict[str, np.ndarray] = {k: np.empty(0, dt) for k, (dt, _) in NODE_COLUMNS.items()}
        self.node_properties: dict[str, dict[int, str]] = {}
        self.edges = np.empty((0, 2), np.int64)
        self.comments: dict[int, str] = {}
        self.branchpoints: list[tuple[int, int | None]] = []  # (node id, time) in push order
        self.dialect: str | None = None  # "knossos" | "webknossos": the file it came from
        self.meta: list[tuple[str, str]] = []  # webKnossos <meta name content>
        self.unknown_root: list[bytes] = []  # unknown root children (e.g. <volume>), verbatim
        # attributes we do not model on edges, comments, branch points, meta, metadataEntry and
        # containers: element name → key (e.g. edge (source, target)) → {attribute: value}
        self.extra_attrs: dict[str, dict] = {}
        self.version = 0  # bumped by every edit: adapters use it to know when to refresh
        # spare capacity behind ``nodes``/``edges`` so single adds append in place (see _grow_*)
        self._node_buffers: dict[str, np.ndarray] | None = None
        self._node_views: dict[str, np.ndarray] = {}
        self._edge_buffer: np.ndarray | None = None
        self._edge_view: np.ndarray | None = None

    # -- sizes and lookup -------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.nodes["id"])

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def __repr__(self) -> str:
        return f"Skeleton({len(self.trees)} trees, {self.num_nodes} nodes, {self.num_edges} edges)"

    def rows(self, node_ids) -> np.ndarray:
        """Row indices of ``node_ids``; KeyError for an unknown id."""
        ids = np.atleast_1d(np.asarray(node_ids, dtype=np.int64))
        all_ids = self.nodes["id"]
        if not len(all_ids):
            if len(ids):
                raise KeyError(f"no node with id {ids[0]}")
            return np.empty(0, np.intp)
        r = np.searchsorted(all_ids, ids)
        ok = all_ids[np.minimum(r, len(all_ids) - 1)] == ids
        if not ok.all():
            raise KeyError(f"no node with id {ids[~ok][0]}")
        return r

    def has_node(self, node_id: int) -> bool:
        r = int(np.searchsorted(self.nodes["id"], node_id))
        return r < self.num_nodes and int(self.nodes["id"][r]) == node_id

    def position(self, node_id: int) -> np.ndarray:
        r = int(self.rows(node_id)[0])
        return np.array([self.nodes["x"][r], self.nodes["y"][r], self.nodes["z"][r]])

    def positions(self) -> np.ndarray:
        """(N, 3) float64 positions (x, y, z) in row order."""
        return np.stack([self.nodes["x"], self.nodes["y"], self.nodes["z"]], axis=1)

    def tree_of(self, node_id: int) -> int:
        return int(self.nodes["tree"][self.rows(node_id)[0]])

    def node_ids(self, tree_id: int | None = None) -> np.ndarray:
        if tree_id is None:
            return self.nodes["id"]
        return self.nodes["id"][self.nodes["tree"] == tree_id]

    def next_node_id(self) -> int:
        return int(self.nodes["id"][-1]) + 1 if self.num_nodes else 1

    def next_tree_id(self) -> int:
        return max(self.trees, default=0) + 1

    def _touch(self) -> None:
        self.version += 1

    # -- bulk construction (parsers) ---------------------------------------------------------
    def set_nodes(self, columns: dict[str, np.ndarray]) -> None:
        """Replace the node table from columns (missing columns take their defaults); sorts by id."""
        n = len(columns["id"])
        table = {}
        for name, (dt, default) in NODE_COLUMNS.items():
            col = columns.get(name)
            table[name] = np.full(n, default, dt) if col is None else np.asarray(col, dtype=dt)
        order = np.argsort(table["id"], kind="stable")
        if n and not (order == np.arange(n)).all():
            table = {k: v[order] for k, v in table.items()}
        if n > 1 and (np.diff(table["id"]) == 0).any():
            dup = table["id"][1:][np.diff(table["id"]) == 0][0]
            raise ValueError(f"duplicate node id {dup}")
        self.nodes = table
        self._touch()

    # -- trees ------------------------------------------------------------------------------
    def add_tree(self, tree: Tree | None = None, **attrs) -> Tree:
        """Add ``tree`` (or a new one built from ``attrs``; id defaults to the next free id)."""
        if tree is None:
            attrs.setdefault("id", self.next_tree_id())
            tree = Tree(**attrs)
        if tree.id in self.trees:
            raise ValueError(f"tree id {tree.id} exists")
        self.trees[tree.id] = tree
        self._touch()
        return tree

    # -- nodes ------------------------------------------------------------------------------
    def add_node(self, position, tree_id: int, node_id: int | None = None, **attrs) -> int:
        """Add one node at ``position`` (x, y, z voxels) to ``tree_id``; returns its id."""
        if tree_id not in self.trees:
            raise KeyError(f"no tree with id {tree_id}")
        nid = self.next_node_id() if node_id is None else int(node_id)
        if self.has_node(nid):
            raise ValueError(f"node id {nid} exists")
        values = {"id": nid, "tree": tree_id, "x": position[0], "y": position[1], "z": position[2], **attrs}
        unknown = set(values) - set(NODE_COLUMNS)
        if unknown:
            raise TypeError(f"unknown node attributes {sorted(unknown)}")
        r = int(np.searchsorted(self.nodes["id"], nid))
        n = self.num_nodes
        buffers = self._grow_nodes(r)
        for name, (dt, default) in NODE_COLUMNS.items():
            buffers[name][r] = values.get(name, default)
            self.nodes[name] = buffers[name][: n + 1]
        self._node_views = dict(self.nodes)
        self._touch()
        return nid

    def _grow_nodes(self, row: int) -> dict[str, np.ndarray]:
        """Capacity buffers whose first rows are ``self.nodes``, with ``row`` free for a new node.

        ``self.nodes[c]`` are views ``buffer[:n]`` of buffers 25 % larger than needed, so an
        append (the usual case: new ids are max + 1) writes one row in place: amortised O(1)
        instead of copying every column. Rows past ``n`` are never visible, so arrays handed
        out earlier stay valid snapshots. A column replaced by anyone (set_nodes, delete_nodes,
        a parser) or an insert before the last row copies into fresh buffers.
        """
        n = self.num_nodes
        buffers = self._node_buffers
        in_place = (
            row == n
            and buffers is not None
            and len(buffers["id"]) > n
            and all(self.nodes.get(k) is self._node_views.get(k) and self.nodes[k].base is buffers[k]
                    for k in NODE_COLUMNS)
        )
        if in_place:
            return buffers
        capacity = _spare_capacity(n)
        buffers = {}
        for name, (dt, _) in NODE_COLUMNS.items():
            old = self.nodes[name]
            new = np.empty(capacity, dt)
            new[:row] = old[:row]
            new[row + 1 : n + 1] = old[row:]
            buffers[name] = new
        self._node_buffers = buffers
        return buffers

    def delete_nodes(self, node_ids: Iterable[int]) -> None:
        """Delete nodes with their edges, comments, properties and branch points."""
        ids = np.unique(np.asarray(list(node_ids), dtype=np.int64))
        if not len(ids):
            return
        rows = self.rows(ids)
        self.nodes = {k: _without_rows(v, rows) for k, v in self.nodes.items()}
        self._node_buffers = {k: v.base for k, v in self.nodes.items()}
        self._node_views = dict(self.nodes)
        if self.num_edges:
            hit = np.isin(np.ascontiguousarray(self.edges).reshape(-1), ids).reshape(-1, 2)
            gone = np.flatnonzero(hit[:, 0] | hit[:, 1])
            if len(gone):
                self._set_edge_view(_without_rows(self.edges, gone))
        drop = set(ids.tolist())
        for nid in drop & set(self.comments):
            del self.comments[nid]
        for props in self.node_properties.values():
            for nid in drop & set(props):
                del props[nid]
        self.branchpoints = [b for b in self.branchpoints if b[0] not in drop]
        if self.parameters.active_node in drop:
            self.parameters.active_node = None
        self._touch()

    def move_node(self, node_id: int, position) -> None:
        r = int(self.rows(node_id)[0])
        self.nodes["x"][r], self.nodes["y"][r], self.nodes["z"][r] = position
        self._touch()

    def set_node_attr(self, node_id: int, column: str, value) -> None:
        if column not in NODE_COLUMNS or column in ("id",):
            raise KeyError(f"{column!r} is not a settable node column")
        self.nodes[column][self.rows(node_id)[0]] = value
        self._touch()

    def set_comment(self, node_id: int, text: str | None) -> None:
        self.rows(node_id)
        if text:
            self.comments[int(node_id)] = text
        else:
            self.comments.pop(int(node_id), None)
        self._touch()

    # -- edges ------------------------------------------------------------------------------
    def _edge_indices(self, a: int, b: int) -> np.ndarray:
        """Indices into ``edges`` of the edges a–b, either direction (one pass over the ids)."""
        e = np.ascontiguousarray(self.edges)
        hits = np.flatnonzero(e.reshape(-1) == a)
        rows, cols = hits // 2, hits % 2
        return rows[e[rows, 1 - cols] == b]

    def _edge_mask(self, a: int, b: int) -> np.ndarray:
        mask = np.zeros(self.num_edges, bool)
        mask[self._edge_indices(a, b)] = True
        return mask

    def has_edge(self, a: int, b: int) -> bool:
        return bool(len(self._edge_indices(a, b)))

    def link(self, a: int, b: int) -> None:
        """Connect nodes ``a`` and ``b`` (no-op if connected)."""
        if a == b:
            raise ValueError("cannot link a node to itself")
        self.rows([a, b])
        if not self.has_edge(a, b):
            self._append_edge(a, b)
            self._touch()

    def _append_edge(self, a: int, b: int) -> None:
        """Append one edge in place into spare capacity (amortised O(1), like _grow_nodes)."""
        m = self.num_edges
        buffer = self._edge_buffer
        reusable = buffer is not None and self.edges is self._edge_view and self.edges.base is buffer
        if not reusable or len(buffer) <= m:
            buffer = np.empty((_spare_capacity(m), 2), np.int64)
            buffer[:m] = self.edges
        buffer[m] = (a, b)
        self._set_edge_view(buffer[: m + 1])

    def _set_edge_view(self, view: np.ndarray) -> None:
        """Make ``view`` (leading rows of a spare-capacity buffer) the edges."""
        self.edges = self._edge_view = view
        self._edge_buffer = view.base

    def unlink(self, a: int, b: int) -> None:
        gone = self._edge_indices(a, b)
        if len(gone):
            self._set_edge_view(_without_rows(self.edges, np.unique(gone)))
            self._touch()

    def set_edges(self, edges) -> None:
        self.edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self._touch()

    # -- exact inverses, for undo (editing.py) ----------------------------------------------
    def _insert_node_rows(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Put nodes back at the row indices ``rows`` (sorted, indices of the result) with their
        column ``values``: the exact inverse of deleting those rows (comments etc. not included)."""
        rows = np.asarray(rows, np.intp)
        self.nodes = {k: _with_rows(self.nodes[k], rows, np.asarray(values[k], dt)) for k, (dt, _) in NODE_COLUMNS.items()}
        self._node_buffers = {k: v.base for k, v in self.nodes.items()}
        self._node_views = dict(self.nodes)
        self._touch()

    def _drop_last_nodes(self, count: int) -> None:
        """Drop the last ``count`` rows (nodes appended last): O(1) for the columns that are the
        model's own spare-capacity views (arrays handed out before may then see later appends in
        their last rows). The id column always gets a fresh buffer, so caches keyed on its
        identity (graph.py) see the change even when the same ids are appended again."""
        n = self.num_nodes - count
        old = self._node_buffers or {}
        buffers = {}
        for name, (dt, _) in NODE_COLUMNS.items():
            col = self.nodes[name]
            if name != "id" and col is self._node_views.get(name) and col.base is not None and col.base is old.get(name):
                buffers[name] = old[name]
            else:
                buffers[name] = np.empty(_spare_capacity(n), dt)
                buffers[name][:n] = col[:n]
        self.nodes = {k: buffers[k][:n] for k in NODE_COLUMNS}
        self._node_buffers = buffers
        self._node_views = dict(self.nodes)
        self._touch()

    def _insert_edge_rows(self, positions: np.ndarray, edges: np.ndarray) -> None:
        """Put edges back at the indices ``positions`` (sorted, indices of the result)."""
        positions = np.asarray(positions, np.intp)
        self._set_edge_view(_with_rows(np.asarray(self.edges, np.int64).reshape(-1, 2), positions, edges))
        self._touch()

    def _remove_edge_rows(self, positions: np.ndarray) -> None:
        """Remove the edges at the indices ``positions`` (sorted, unique)."""
        self._set_edge_view(_without_rows(self.edges, np.asarray(positions, np.intp)))
        self._touch()

    def _drop_last_edges(self, count: int) -> None:
        """Drop the last ``count`` edges (appended last) into a fresh buffer (a new identity for
        caches keyed on the edges array)."""
        m = self.num_edges - count
        buffer = np.empty((_spare_capacity(m), 2), np.int64)
        buffer[:m] = self.edges[:m]
        self._set_edge_view(buffer[:m])
        self._touch()

    # -- branch points ----------------------------------------------------------------------
    def push_branchpoint(self, node_id: int, time: int | None = None) -> None:
        self.rows(node_id)
        self.branchpoints.append((int(node_id), time))
        self._touch()

    def pop_branchpoint(self) -> int | None:
        """Pop the last pushed branch point (KNOSSOS ``J``); None when the stack is empty."""
        if not self.branchpoints:
            return None
        nid, _ = self.branchpoints.pop()
        self._touch()
        return nid

    # -- groups -----------------------------------------------------------------------------
    def iter_groups(self) -> Iterator[Group]:
        for g in self.groups:
            yield from g.walk()

    # -- synapses ---------------------------------------------------------------------------
    def synapses(self) -> list[dict]:
        """KNOSSOS synapses: cleft trees with ``preSynapse``/``postSynapse`` node properties."""
        out = []
        for tree in self.trees.values():
            if not tree.is_synapse:
                continue

            def node(key):
                try:
                    nid = int(tree.properties.get(key, ""))
                except ValueError:
                    return None
                return nid if self.has_node(nid) else None

            out.append({"cleft_tree": tree.id, "pre_node": node("preSynapse"), "post_node": node("postSynapse")})
        return out
