"""napari adapter for skeletons: Skeleton → Points (nodes) + Vectors (edges), and edits back.

Layer data are in mag-1 voxel coordinates ``(z, y, x)`` with ``scale`` = voxel size in nm,
exactly like the volume layers, so skeletons sit on the image and the scale bar reads nm.
Edges are one Vectors layer (start + displacement): measured far faster than Shapes paths
and visible in 2-D slices (see ../shared/specs/napari-integration.md §5).

:class:`SkeletonSync` keeps a model and its two layers consistent: moving or deleting
points with napari's own Points tools edits the model; :meth:`SkeletonSync.refresh` redraws
after the model was edited elsewhere (tools, undo).
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import pandas as pd

from .annotation.skeleton import Skeleton

__all__ = [
    "SKELETON_KEY",
    "SkeletonSync",
    "edge_vectors",
    "match_comment_slots",
    "node_features",
    "skeleton_layer_data",
    "tree_colors",
]

SKELETON_KEY = "napari_knossos_skeleton"
SYNC_KEY = "napari_knossos_sync"
UNITS = ("nm", "nm", "nm")
AXIS_LABELS = ("z", "y", "x")
DEFAULT_RADIUS_VOXELS = 1.5  # KNOSSOS default node radius


RING_WIDTH = 0.3  # relative to the point size
NODE_PIXELS = (7, 10_000)  # on-screen node size limits (px)
ACTIVE_COLOR = (1.0, 0.1, 0.1, 1.0)  # KNOSSOS draws the active node red
SELECTED_COLOR = (0.1, 0.9, 1.0, 1.0)
BRANCHPOINT_COLOR = (0.2, 0.45, 1.0, 1.0)
COMMENT_TEXT = {"color": "#ffe680", "size": 9, "anchor": "upper_left"}  # comment labels beside their nodes
COMMENT_OFFSET_VOXELS = (0.0, 1.0, 2.0)  # (z, y, x): just right of and below the node
COMMENTS_ROLE = "comments"  # metadata role of the text-only comment layer (never saved)


def _palette(tree_ids: np.ndarray) -> np.ndarray:
    """Deterministic distinct RGBA colours per tree id (golden-ratio hue walk)."""
    hues = (np.asarray(tree_ids, dtype=np.float64) * 0.618033988749895) % 1.0
    return np.array([(*colorsys.hsv_to_rgb(h, 0.75, 1.0), 1.0) for h in hues], dtype=np.float32).reshape(-1, 4)


def tree_colors(skel: Skeleton) -> dict[int, np.ndarray]:
    """RGBA per tree: the tree's own colour, or the palette colour for 'default'."""
    ids = np.array(sorted(skel.trees), dtype=np.int64)
    pal = _palette(ids)
    out = {}
    for tid, default in zip(ids.tolist(), pal):
        c = skel.trees[tid].color
        out[tid] = np.asarray(c, np.float32) if c is not None and min(c) >= 0 else default
    return out


def _radius_voxels(skel: Skeleton, voxel_size_xyz, rows=slice(None)) -> np.ndarray:
    r = skel.nodes["radius"][rows].astype(np.float64)
    if skel.dialect == "webknossos" and voxel_size_xyz is not None:  # webKnossos radii are nm
        r = r / float(voxel_size_xyz[0])
    return np.where(np.isnan(r), DEFAULT_RADIUS_VOXELS, r)


def points_data(skel: Skeleton) -> np.ndarray:
    """(N, 3) node positions (z, y, x) in voxels, row order = model row order."""
    return np.stack([skel.nodes["z"], skel.nodes["y"], skel.nodes["x"]], axis=1)


def node_features(skel: Skeleton, voxel_size_xyz=None) -> pd.DataFrame:
    """One row per node: node_id, tree_id, radius (voxels), comment, and every node property."""
    ids = skel.nodes["id"]
    comments = np.full(len(ids), "", dtype=object)
    if skel.comments:
        cid = np.fromiter(skel.comments, np.int64, len(skel.comments))
        rows = skel.rows(cid)
        comments[rows] = list(skel.comments.values())
    data: dict[str, Any] = {
        "node_id": ids.copy(),
        "tree_id": skel.nodes["tree"].copy(),
        "radius": _radius_voxels(skel, voxel_size_xyz),
        "comment": comments,
    }
    for name, values in skel.node_properties.items():
        if name in data or not values:
            continue
        col = np.full(len(ids), "", dtype=object)
        pid = np.fromiter(values, np.int64, len(values))
        col[skel.rows(pid)] = list(values.values())
        data[name] = col
    return pd.DataFrame(data)


def edge_vectors(skel: Skeleton) -> np.ndarray:
    """(E, 2, 3) Vectors data: start (z, y, x) and displacement, in voxels."""
    if not skel.num_edges:
        return np.empty((0, 2, 3), np.float64)
    pos = points_data(skel)
    a = pos[skel.rows(skel.edges[:, 0])]
    b = pos[skel.rows(skel.edges[:, 1])]
    return np.stack([a, b - a], axis=1)


def _node_colors(skel: Skeleton) -> np.ndarray:
    colors = tree_colors(skel)
    if not skel.num_nodes:
        return np.empty((0, 4), np.float32)
    tids = skel.nodes["tree"]
    uniq, inv = np.unique(tids, return_inverse=True)
    table = np.array([colors.get(int(t), _palette([t])[0]) for t in uniq], np.float32)
    return table[inv]


def _edge_colors(skel: Skeleton, node_colors: np.ndarray) -> np.ndarray:
    if not skel.num_edges:
        return np.empty((0, 4), np.float32)
    return node_colors[skel.rows(skel.edges[:, 0])]


def _visible_mask(skel: Skeleton, rows=slice(None)) -> np.ndarray:
    hidden = [tid for tid, t in skel.trees.items() if not t.visible]
    trees = skel.nodes["tree"][rows]
    return ~np.isin(trees, hidden) if hidden else np.ones(len(trees), bool)


def skeleton_layer_data(skel: Skeleton, voxel_size_xyz=None, name: str = "skeleton", metadata=None) -> list[tuple]:
    """[(nodes, kwargs, "points"), (edges, kwargs, "vectors")] for a skeleton.

    ``voxel_size_xyz`` is the dataset's mag-1 voxel size in nm (default: the NML ``<scale>``,
    else 1 nm). The live model is in ``metadata["napari_knossos_skeleton"]`` of both layers.
    """
    vs = voxel_size_xyz or skel.parameters.scale or (1.0, 1.0, 1.0)
    scale = (float(vs[2]), float(vs[1]), float(vs[0]))
    meta = {SKELETON_KEY: skel, **(metadata or {})}
    colors = _node_colors(skel)
    features = node_features(skel, vs)
    points_kwargs = {
        "name": f"{name} nodes",
        "scale": scale,
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "features": features,
        # a point added with napari's tools is a new node (id -1) of no tree yet
        "feature_defaults": {**{c: "" for c in features.columns}, "node_id": -1, "tree_id": -1,
                             "radius": DEFAULT_RADIUS_VOXELS},
        "size": np.maximum(2 * features["radius"].to_numpy(), 2.0),
        "face_color": colors,
        "border_color": colors,  # no ring; rings mark active/selected/branch nodes
        "border_width": RING_WIDTH,
        "canvas_size_limits": NODE_PIXELS,  # nodes stay visible when zoomed out, as in KNOSSOS
        "shown": _visible_mask(skel),
        "metadata": {**meta, "napari_knossos_role": "nodes"},
    }
    vectors_kwargs = {
        "name": f"{name} edges",
        "scale": scale,
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "edge_width": 0.6,
        "edge_color": _edge_colors(skel, colors),
        "vector_style": "line",
        "metadata": {**meta, "napari_knossos_role": "edges"},
    }
    if not skel.num_nodes:  # napari cannot take empty per-point colour/size arrays
        for k in ("size", "face_color", "border_color", "shown"):
            points_kwargs.pop(k)
    if not skel.num_edges:
        vectors_kwargs.pop("edge_color")
    return [(points_data(skel), points_kwargs, "points"), (edge_vectors(skel), vectors_kwargs, "vectors")]


def _numbers(texts) -> np.ndarray:
    """Property texts as floats (NaN where not a number), vectorised."""
    return pd.to_numeric(pd.Series(list(texts), dtype=object), errors="coerce").to_numpy(np.float64)


def match_comment_slots(comments, slot_texts) -> np.ndarray:
    """Per comment, the index of the first slot whose non-empty text it contains, ignoring case
    (KNOSSOS ``CommentSetting::getColor``/``getRadius``); -1 where none does.

    Each distinct comment text is matched once, so the cost follows the distinct texts, not the nodes.
    """
    keys = [t.casefold() for t in slot_texts]
    codes, uniques = pd.factorize(pd.Series(list(comments), dtype=object))
    first = np.full(len(uniques) + 1, -1, np.int64)  # last entry: code -1 (missing)
    for u, text in enumerate(uniques):
        folded = str(text).casefold()
        for slot, key in enumerate(keys):
            if key and key in folded:
                first[u] = slot
                break
    return first[codes]


def _recent_layers_kwargs(points, vectors) -> tuple[dict, dict]:
    """Layer kwargs for the small 'new nodes' layers that mirror the look of the main ones."""
    common = {"scale": tuple(points.scale), "units": UNITS, "axis_labels": AXIS_LABELS}
    pkw = {**common, "name": f"{points.name} (new)", "border_width": RING_WIDTH, "canvas_size_limits": NODE_PIXELS,
           "metadata": {**points.metadata, "napari_knossos_role": "new nodes"}}
    vkw = {**common, "name": f"{vectors.name} (new)", "edge_width": vectors.edge_width,
           "vector_style": "line", "metadata": {**vectors.metadata, "napari_knossos_role": "new edges"}}
    return pkw, vkw


class SkeletonSync:
    """Binds a Skeleton to its napari layers, both ways, and redraws only what changed.

    napari → model: points moved with napari's select tool move the nodes; deleted points
    delete the nodes (with their edges, comments and branch points); points added with
    napari's add tool become nodes of the tree in ``feature_defaults["tree_id"]`` (a new tree
    if it does not exist). With an ``editor`` (:class:`~napari_knossos.annotation.editing.SkeletonEditor`)
    these edits go through it: undoable, and refused (then reverted) in Review mode.

    model → napari: :meth:`apply` takes the editor's change descriptions. Appending a node to a
    100k-point layer costs napari ~150 ms (it re-coerces every point's symbol and rebuilds every
    vector), so new nodes and their edges go to two small "(new)" layers, drawn the same way,
    and :meth:`flush` folds them into the main layers when the user pauses (the widget's timer)
    or when they grow past ``flush_at``. The main layers hold the first ``main_rows`` model rows
    and ``main_edges`` edge rows; anything that changes that prefix redraws everything.
    ``add_layer`` (e.g. ``viewer.add_layer``) adds the helper layers; without it every change
    redraws the main layers.
    """

    def __init__(self, skel: Skeleton, points, vectors, voxel_size_xyz=None, *, editor=None,
                 add_layer=None, remove_layer=None, flush_at: int = 2000, on_refused=None):
        self.skel, self.points, self.vectors = skel, points, vectors
        self.editor = editor
        self.voxel_size_xyz = voxel_size_xyz or skel.parameters.scale or (1.0, 1.0, 1.0)
        self.add_layer = add_layer
        self.remove_layer = remove_layer
        self.comment_layer = None  # text-only Points layer of the commented nodes while comments are shown
        self._comment_key: tuple | None = None
        self.flush_at = flush_at
        self.on_refused = on_refused or (lambda message: None)
        self.new_points = self.new_vectors = None
        self._main_marks = None
        self._n_new = 0
        self._new_face = np.empty((0, 4), np.float32)
        self.size_property: str | None = None
        self.color_property: str | None = None
        self.colormap = "viridis"
        self.radius_scale = 1.0
        self.color_range: tuple[float, float] | None = None
        self.comment_highlights: list[tuple[str, tuple | None, float | None]] = []
        self.show_comments = False
        self._removing: dict[int, list[int]] = {}
        self._updating = False
        self._handlers = {}
        self._connect(points)
        self._remember_main()
        self._main_marks = None
        # napari keeps weak references to bound methods: the layers keep the sync alive
        points.metadata[SYNC_KEY] = self
        vectors.metadata[SYNC_KEY] = self
        if editor is not None:
            editor.subscribe(self.apply)

    def disconnect(self) -> None:
        for layer, handler in self._handlers.items():
            layer.events.data.disconnect(handler)
        self._handlers.clear()
        if self.editor is not None:
            self.editor.unsubscribe(self.apply)

    @property
    def pending(self) -> int:
        """Nodes drawn in the "(new)" layer, waiting for :meth:`flush`."""
        return self._n_new

    def _connect(self, layer) -> None:
        def handler(event, layer=layer):
            self._on_points_data(layer, event)

        layer.events.data.connect(handler)
        self._handlers[layer] = handler

    def _remember_main(self) -> None:
        ids = self.points.features["node_id"].to_numpy() if len(self.points.data) else np.empty(0, np.int64)
        self.main_rows = len(ids)
        self._main_last_id = int(ids[-1]) if len(ids) else None
        self.main_edges = len(self.vectors.data)
        self._main_last_edge = tuple(self.skel.edges[self.main_edges - 1]) if self.main_edges else None

    # -- napari → model -------------------------------------------------------------------
    def _on_points_data(self, layer, event) -> None:
        if self._updating:
            return
        action = str(getattr(event, "action", "")).rsplit(".", 1)[-1].lower()
        indices = [int(i) for i in getattr(event, "data_indices", ())]
        ids = layer.features["node_id"].to_numpy() if "node_id" in layer.features else np.empty(0)
        try:
            if action == "removing":
                self._removing[id(layer)] = [int(ids[i]) for i in indices if 0 <= i < len(ids)]
            elif action == "removed":
                gone = self._removing.pop(id(layer), [])
                if gone:
                    self._delete(gone)
            elif action == "changed" and len(indices) < len(layer.data):
                moves = {}
                for i in indices:
                    z, y, x = layer.data[i]
                    moves[int(ids[i])] = (float(x), float(y), float(z))
                self._move(moves)
            elif action == "added":
                self._adopt_added(layer, indices)
        except Exception as error:  # a refused edit (Review mode, movement area …): undo it on screen
            if type(error).__name__ != "EditRefused":
                raise
            self.on_refused(str(error))
            self.refresh()

    def _delete(self, node_ids) -> None:
        if self.editor is not None:
            self.editor.delete_nodes(node_ids)
        else:
            self.skel.delete_nodes(node_ids)
            self.refresh()

    def _move(self, moves: dict[int, tuple]) -> None:
        if self.editor is not None:
            self.editor.move_nodes(moves)
        else:
            for nid, pos in moves.items():
                self.skel.move_node(nid, pos)
            self._redraw_moved(np.fromiter(moves, np.int64, len(moves)))

    def _adopt_added(self, layer, indices) -> None:
        feats = layer.features
        n = len(layer.data)
        rows = [i if i >= 0 else n + i for i in indices]
        positions = [tuple(float(c) for c in layer.data[r][::-1]) for r in rows]
        if self.editor is not None:
            with self.editor.batch("add nodes"):
                for pos in positions:
                    self.editor.place_node(pos)
        else:
            for r, pos in zip(rows, positions):
                tid = int(feats["tree_id"].iloc[r]) if "tree_id" in feats else -1
                if tid not in self.skel.trees or tid <= 0:
                    tid = self.skel.add_tree().id
                self.skel.add_node(pos, tid)
        self.refresh()

    # -- model → napari -------------------------------------------------------------------
    def _blocked(self):
        sync = self

        class _Block:
            def __enter__(self):
                sync._updating = True

            def __exit__(self, *exc):
                sync._updating = False

        return _Block()

    def apply(self, change) -> None:
        """Redraw after an editor change (see ``editing.Change``): cheaply where possible."""
        kind = getattr(change, "kind", "full")
        if kind in ("nodes_added", "nodes_removed") and self._prefix_unchanged():
            self._redraw_new()
        elif kind == "nodes_moved" and self._prefix_unchanged():
            self._redraw_moved(np.asarray(change.node_ids, np.int64))
        elif kind in ("selection", "active", "mode", "parameters", "groups_changed", "meshes"):
            pass
        else:
            self.refresh()
        self.redraw_highlight()

    def _prefix_unchanged(self) -> bool:
        """Are model rows [:main_rows] and edges [:main_edges] still what the main layers show,
        and can rows past them go to the "(new)" layers?"""
        return self._prefix_same() and self.add_layer is not None

    def _prefix_same(self) -> bool:
        ids, n0, m0 = self.skel.nodes["id"], self.main_rows, self.main_edges
        if len(ids) < n0 or (n0 and int(ids[n0 - 1]) != self._main_last_id):
            return False
        return not (self.skel.num_edges < m0 or (m0 and tuple(self.skel.edges[m0 - 1]) != self._main_last_edge))

    def _ensure_new_layers(self) -> None:
        if self.new_points is not None:
            return
        from napari.layers import Points, Vectors

        pkw, vkw = _recent_layers_kwargs(self.points, self.vectors)
        empty = pd.DataFrame({"node_id": np.empty(0, np.int64), "tree_id": np.empty(0, np.int64),
                              "radius": np.empty(0), "comment": np.empty(0, object)})
        self.new_points = Points(np.empty((0, 3)), features=empty, **pkw)
        self.new_vectors = Vectors(np.empty((0, 2, 3)), **vkw)
        self.new_points.projection_mode = self.points.projection_mode  # the main layers' depth display
        self.new_vectors.projection_mode = self.vectors.projection_mode
        self.new_points.metadata[SYNC_KEY] = self.new_vectors.metadata[SYNC_KEY] = self
        self.add_layer(self.new_vectors)
        self.add_layer(self.new_points)
        self._connect(self.new_points)

    def _anchor(self) -> np.ndarray:
        """Where unused slots sit: on a real node, so they never widen the layer's extent."""
        skel = self.skel
        row = self.main_rows if skel.num_nodes > self.main_rows else skel.num_nodes - 1
        if row < 0:
            return np.zeros(3)
        return np.array([skel.nodes["z"][row], skel.nodes["y"][row], skel.nodes["x"][row]], np.float64)

    def _grow_slots(self, n_nodes: int, n_edges: int) -> None:
        """Give the "(new)" layers room for ``n_nodes`` points and ``n_edges`` vectors (doubling):
        the only time they get new data arrays (and napari its data events)."""
        points, vectors = self.new_points, self.new_vectors
        anchor = self._anchor()
        if n_nodes > len(points.data) or not len(points.data):
            cap = max(64, 2 * len(points.data), n_nodes)
            data = np.tile(anchor, (cap, 1))
            features = pd.DataFrame({"node_id": np.full(cap, -1, np.int64), "tree_id": np.full(cap, -1, np.int64),
                                     "radius": np.full(cap, DEFAULT_RADIUS_VOXELS),
                                     "comment": np.full(cap, "", dtype=object)})
            points.data = data
            points.features = features
            points.shown = np.zeros(cap, bool)
        if n_edges > len(vectors.data) or not len(vectors.data):
            cap = max(64, 2 * len(vectors.data), n_edges)
            vec = np.zeros((cap, 2, 3))
            vec[:, 0] = anchor
            vectors.data = vec

    def _redraw_new(self) -> None:
        """Draw model rows past ``main_rows`` and edges past ``main_edges`` in the "(new)" layers.

        The layers hold spare *slots* (hidden points, zero-length vectors on a real node): a new
        node or edge is written into a slot in place and the layer refreshed, which costs napari a
        redraw but no data event (each data event makes napari recompute the viewer's dims, ~4 ms
        per layer per event at 100k nodes).
        """
        skel, n0, m0 = self.skel, self.main_rows, self.main_edges
        n_new, m_new = skel.num_nodes - n0, skel.num_edges - m0
        if n_new > self.flush_at:
            self.refresh()
            return
        self._ensure_new_layers()
        with self._blocked():
            self._grow_slots(n_new, m_new)
            points, vectors = self.new_points, self.new_vectors
            cap = len(points.data)
            sl = slice(n0, None)
            colors = tree_colors(skel)
            trees = skel.nodes["tree"][sl]
            ids = skel.nodes["id"][sl]
            face = np.array([colors.get(int(t), _palette([t])[0]) for t in trees], np.float32).reshape(-1, 4)
            radius = _radius_voxels(skel, self.voxel_size_xyz, sl)
            size = np.maximum(2 * radius, 2.0)
            if n_new and self._has_style():
                size, face = self._styled(sl, size, face)
            data = points.data  # the layer's own array: written in place
            data[:n_new] = np.stack([skel.nodes["z"][sl], skel.nodes["y"][sl], skel.nodes["x"][sl]], axis=1)
            data[n_new:] = self._anchor()
            features = points.features  # napari's own table: its columns are replaced in place
            node_id, tree_id = np.full(cap, -1, np.int64), np.full(cap, -1, np.int64)
            node_id[:n_new], tree_id[:n_new] = ids, trees
            radius_col = np.full(cap, DEFAULT_RADIUS_VOXELS)
            radius_col[:n_new] = radius
            comments = np.full(cap, "", dtype=object)
            comments[:n_new] = [skel.comments.get(int(i), "") for i in ids]
            features["node_id"], features["tree_id"] = node_id, tree_id
            features["radius"], features["comment"] = radius_col, comments
            all_size = np.full(cap, 2 * DEFAULT_RADIUS_VOXELS)
            all_size[:n_new] = size
            all_face = np.tile(np.array([0.5, 0.5, 0.5, 1.0], np.float32), (cap, 1))  # hidden slots
            all_face[:n_new] = face
            shown = np.zeros(cap, bool)
            shown[:n_new] = _visible_mask(skel, sl)
            self._new_face = all_face
            points.size = all_size
            points.face_color = all_face
            points.shown = shown  # also refreshes the slice, picking up the in-place data
            self._n_new = n_new
            vec = vectors.data
            vec[:, 0] = self._anchor()
            vec[:, 1] = 0.0
            if m_new:
                e = skel.edges[m0:]
                rows = skel.rows(np.concatenate([e[:, 0], e[:, 1]]))
                p = np.stack([skel.nodes["z"][rows], skel.nodes["y"][rows], skel.nodes["x"][rows]], axis=1)
                a, b = p[:m_new], p[m_new:]
                vec[:m_new, 0] = a
                vec[:m_new, 1] = b - a
                tree_a = skel.nodes["tree"][rows[:m_new]]
                vcolor = np.tile(np.array([0.5, 0.5, 0.5, 1.0], np.float32), (len(vec), 1))  # zero-length slots
                vcolor[:m_new] = np.array([colors.get(int(t), _palette([t])[0]) for t in tree_a], np.float32)
                vectors.edge_color = vcolor
            vectors.refresh()  # re-slice: the in-place data changed
        self._redraw_comments()

    def _redraw_moved(self, node_ids: np.ndarray) -> None:
        """Move points and the vectors of their edges (main rows in place, new rows redrawn)."""
        skel = self.skel
        rows = skel.rows(node_ids)
        main = rows[rows < self.main_rows]
        with self._blocked():
            if len(main):
                data = self.points.data
                data[main] = np.stack([skel.nodes["z"][main], skel.nodes["y"][main], skel.nodes["x"][main]], axis=1)
                self.points.data = data
            m0 = self.main_edges
            if m0 and len(main):
                e = skel.edges[:m0]
                hit = np.flatnonzero(np.isin(e, skel.nodes["id"][main]).any(axis=1))
                if len(hit):
                    vec = self.vectors.data
                    r = skel.rows(e[hit].reshape(-1)).reshape(-1, 2)
                    p = np.stack([skel.nodes["z"], skel.nodes["y"], skel.nodes["x"]], axis=1)
                    vec[hit, 0] = p[r[:, 0]]
                    vec[hit, 1] = p[r[:, 1]] - p[r[:, 0]]
                    self.vectors.data = vec
        if self.new_points is not None or len(main) < len(rows):
            self._redraw_new()
        else:
            self._redraw_comments()

    def _marks(self) -> dict[int, tuple]:
        """Node id → ring colour: branch points, then selected nodes, then the active node."""
        skel = self.skel
        marks: dict[int, tuple] = {}
        for nid, _ in skel.branchpoints:
            marks[nid] = BRANCHPOINT_COLOR
        for nid in getattr(self.editor, "selected_nodes", ()):
            marks[nid] = SELECTED_COLOR
        if skel.parameters.active_node is not None:
            marks[skel.parameters.active_node] = ACTIVE_COLOR
        return {n: c for n, c in marks.items() if skel.has_node(n)}

    def redraw_highlight(self) -> None:
        """Ring the active node (red), selected nodes (cyan) and branch points (blue).

        The rings are the points' border colours (a border the colour of the face is no ring):
        no extra layer, and no data event (each costs napari a dims update). The main layer's
        borders are only reset when its marked rows change.
        """
        marks = self._marks()
        ids = np.fromiter(marks, np.int64, len(marks))
        rows = self.skel.rows(ids)
        colors = np.array([marks[int(n)] for n in ids], np.float32).reshape(-1, 4)
        in_main = rows < self.main_rows
        main_key = (rows[in_main].tobytes(), colors[in_main].tobytes())
        with self._blocked():
            if main_key != self._main_marks and len(self.points.data):
                border = np.array(self.points.face_color, np.float32)
                border[rows[in_main]] = colors[in_main]
                self.points.border_color = border
                self._main_marks = main_key
            if self.new_points is not None and len(self.new_points.data):
                border = self._new_face.copy() if len(self._new_face) == len(self.new_points.data) else \
                    np.array(self.new_points.face_color, np.float32)
                border[rows[~in_main] - self.main_rows] = colors[~in_main]
                self.new_points.border_color = border

    def set_style(self, size_property: str | None = None, color_property: str | None = None,
                  colormap: str = "viridis", *, radius_scale: float = 1.0,
                  color_range: tuple[float, float] | None = None) -> None:
        """Drive node radius and/or face colour by a numeric node property, as KNOSSOS does (None:
        radius / tree colour). Radius = ``radius_scale`` × value; colour = ``colormap`` over
        ``color_range`` (None or empty: the property's own min–max), clipped. Nodes without the
        property keep their radius and colour. Property styles win over comment highlights."""
        self.size_property, self.color_property, self.colormap = size_property, color_property, colormap
        self.radius_scale = float(radius_scale)
        self.color_range = tuple(map(float, color_range)) if color_range is not None else None
        self.restyle()

    def set_comment_highlights(self, slots, *, redraw: bool = True) -> None:
        """Highlight commented nodes: ``slots`` are ``(text, rgba or None, radius or None)``; a node
        whose comment contains a slot's text (ignoring case) takes the first such slot's colour
        and radius (voxels), where set (KNOSSOS comment settings)."""
        self.comment_highlights = [(str(t or ""), None if c is None else tuple(map(float, c)),
                                    None if r is None or not r > 0 else float(r)) for t, c, r in slots]
        if redraw:
            self.restyle()

    def set_show_comments(self, on: bool) -> None:
        """Draw each node's comment next to it (KNOSSOS "show node comments", off by default).

        The labels are a separate text-only Points layer (:attr:`comment_layer`, role "comments")
        holding only the commented nodes of visible trees, so a slice change lays out text for
        those alone, not for every node in view; it follows edits, is not clickable (nodes are
        picked from the model) and not saved (the writers skip it). Off, the layer is removed."""
        self.show_comments = bool(on)
        if self.show_comments:
            self._redraw_comments()
        elif self.comment_layer is not None:
            layer, self.comment_layer, self._comment_key = self.comment_layer, None, None
            if self.remove_layer is not None:
                self.remove_layer(layer)

    def _comment_rows(self) -> tuple[np.ndarray, list[str]]:
        """Model rows and texts of the commented nodes of visible trees."""
        skel = self.skel
        all_ids = skel.nodes["id"]
        if not skel.comments or not len(all_ids):
            return np.empty(0, np.intp), []
        ids = np.fromiter(skel.comments, np.int64, len(skel.comments))
        rows = np.minimum(np.searchsorted(all_ids, ids), len(all_ids) - 1)
        keep = all_ids[rows] == ids  # comments of deleted nodes are not drawn
        keep[keep] = _visible_mask(skel, rows[keep])
        texts = [t for t, k in zip(skel.comments.values(), keep.tolist()) if k and t]
        keep[keep] = [bool(t) for t, k in zip(skel.comments.values(), keep.tolist()) if k]
        return rows[keep], texts

    def _redraw_comments(self) -> None:
        """Bring :attr:`comment_layer` up to date with the model (only if the comments, their
        nodes' positions or the depth display changed)."""
        if not self.show_comments:
            return
        skel = self.skel
        rows, texts = self._comment_rows()
        data = np.stack([skel.nodes["z"][rows], skel.nodes["y"][rows], skel.nodes["x"][rows]], axis=1) \
            if len(rows) else np.empty((0, 3))
        key = (data.tobytes(), tuple(texts), self.points.projection_mode, tuple(self.points.scale),
               tuple(self.points.translate))
        if self.comment_layer is not None and key == self._comment_key:
            return
        features = pd.DataFrame({"comment": np.array(texts, dtype=object)})
        text = {**COMMENT_TEXT, "string": {"feature": "comment"}, "translation": COMMENT_OFFSET_VOXELS}
        if self.comment_layer is None:
            from napari.layers import Points

            self.comment_layer = Points(
                data, features=features, text=text, size=0.0, face_color="transparent", border_width=0,
                border_color="transparent", scale=tuple(self.points.scale), translate=tuple(self.points.translate),
                units=UNITS, axis_labels=AXIS_LABELS, name=f"{self.points.name} comments",
                projection_mode=self.points.projection_mode,
                metadata={"napari_knossos_role": COMMENTS_ROLE})
            if self.add_layer is not None:
                self.add_layer(self.comment_layer)
        else:
            layer = self.comment_layer
            layer.projection_mode = self.points.projection_mode
            layer.scale, layer.translate = tuple(self.points.scale), tuple(self.points.translate)
            with layer.events.blocker_all():
                layer.data = data
                layer.features = features
            layer.text = text  # re-evaluated from the new features
            layer.size = 0.0
            layer.refresh()
        self._comment_key = key

    def _has_style(self) -> bool:
        return bool(self.size_property or self.color_property
                    or any(t and (c is not None or r is not None) for t, c, r in self.comment_highlights))

    def _property_table(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A node property's (sorted node ids, values as floats; NaN where not a number)."""
        values = self.skel.node_properties.get(name, {})
        keys = np.fromiter(values, np.int64, len(values))
        vals = _numbers(values.values())
        order = np.argsort(keys)
        return keys[order], vals[order]

    def _property_values(self, table: tuple[np.ndarray, np.ndarray], rows) -> np.ndarray:
        keys, vals = table
        ids = self.skel.nodes["id"][rows]
        out = np.full(len(ids), np.nan)
        if len(keys) and len(ids):
            at = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
            hit = keys[at] == ids
            out[hit] = vals[at[hit]]
        return out

    @staticmethod
    def _property_range(table: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        vals = table[1][np.isfinite(table[1])]
        return (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)

    def _comment_style(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(row offsets within ``rows``, slot index) of the nodes whose comment matches a slot."""
        comments = self.skel.comments
        texts = [t for t, _, _ in self.comment_highlights]
        if not comments or not any(texts):
            return np.empty(0, np.intp), np.empty(0, np.int64)
        slot = match_comment_slots(comments.values(), texts)
        hit = slot >= 0
        ids = np.fromiter(comments, np.int64, len(comments))[hit]
        slot = slot[hit]
        at = self.skel.rows(ids)
        start, stop, _ = rows.indices(self.skel.num_nodes)
        inside = (at >= start) & (at < stop)
        return at[inside] - start, slot[inside]

    def _styled(self, rows: slice, size: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Size and face colour of model ``rows`` after comment highlights and :meth:`set_style`."""
        size = np.array(size, np.float64)
        face = np.array(face, np.float32)
        if self.comment_highlights:
            at, slot = self._comment_style(rows)
            if len(at):
                colors = np.array([c if c is not None else (np.nan,) * 4 for _, c, _ in self.comment_highlights],
                                  np.float32)[slot]
                has_color = np.isfinite(colors[:, 0])
                face[at[has_color]] = colors[has_color]
                radii = np.array([np.nan if r is None else r for _, _, r in self.comment_highlights])[slot]
                has_radius = np.isfinite(radii)
                size[at[has_radius]] = np.maximum(2 * radii[has_radius], 2.0)
        tables: dict[str, tuple] = {}
        if self.size_property:
            tables[self.size_property] = self._property_table(self.size_property)
            v = self._property_values(tables[self.size_property], rows)
            size = np.where(np.isfinite(v), np.maximum(2 * self.radius_scale * np.nan_to_num(v), 2.0), size)
        if self.color_property:
            from napari.utils.colormaps import ensure_colormap

            table = tables.get(self.color_property) or self._property_table(self.color_property)
            v = self._property_values(table, rows)
            lo, hi = self.color_range if self.color_range and self.color_range[1] > self.color_range[0] \
                else self._property_range(table)
            t = np.clip((v - lo) / ((hi - lo) or 1.0), 0, 1)
            mapped = ensure_colormap(self.colormap).map(np.nan_to_num(t)).astype(np.float32)
            face = np.where(np.isfinite(v)[:, None], mapped, face)
        return size, face

    def restyle(self) -> None:
        """Recompute node sizes and face colours (after a style change) without touching the data."""
        drawn = self.skel.num_nodes == self.main_rows or self.new_points is not None
        if not (self._prefix_same() and drawn) or len(self.points.data) != self.main_rows:
            self.refresh()
            self.redraw_highlight()
            return
        skel, n0 = self.skel, self.main_rows
        if n0:
            main = slice(0, n0)
            size = np.maximum(2 * _radius_voxels(skel, self.voxel_size_xyz, main), 2.0)
            face = _node_colors(skel)[:n0]
            if self._has_style():
                size, face = self._styled(main, size, face)
            with self._blocked():
                self.points.size = size
                self.points.face_color = face
        self._main_marks = None
        if self.new_points is not None and self._n_new:
            self._redraw_new()
        self.redraw_highlight()

    def flush(self) -> None:
        """Fold the "(new)" layers into the main ones (one full redraw)."""
        if self.pending or (self.new_points is not None and self.skel.num_edges > self.main_edges):
            self.refresh()

    def refresh(self) -> None:
        """Redraw the main layers from the model and empty the "(new)" layers."""
        (pdata, pkw, _), (vdata, vkw, _) = skeleton_layer_data(self.skel, self.voxel_size_xyz)
        with self._blocked():
            self.points.data = pdata
            self.points.features = pkw["features"]
            if len(pdata):
                size, face = pkw["size"], pkw["face_color"]
                if self._has_style():
                    size, face = self._styled(slice(None), size, face)
                self.points.size = size
                self.points.face_color = face
                self.points.shown = pkw["shown"]
            self.vectors.data = vdata
            if len(vdata):
                self.vectors.edge_color = vkw["edge_color"]
        self._remember_main()
        if self.new_points is not None:
            self._redraw_new()  # all slots hidden again (and the comments redrawn)
        else:
            self._redraw_comments()
        self._main_marks = None
