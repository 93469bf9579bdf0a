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
    "node_features",
    "skeleton_layer_data",
    "tree_colors",
]

SKELETON_KEY = "napari_knossos_skeleton"
SYNC_KEY = "napari_knossos_sync"
UNITS = ("nm", "nm", "nm")
AXIS_LABELS = ("z", "y", "x")
DEFAULT_RADIUS_VOXELS = 1.5  # KNOSSOS default node radius


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


def _radius_voxels(skel: Skeleton, voxel_size_xyz) -> np.ndarray:
    r = skel.nodes["radius"].astype(np.float64)
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


def _visible_mask(skel: Skeleton) -> np.ndarray:
    hidden = [tid for tid, t in skel.trees.items() if not t.visible]
    return ~np.isin(skel.nodes["tree"], hidden) if hidden else np.ones(skel.num_nodes, bool)


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
        "border_color": "white",
        "border_width": 0.05,
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
    return [(points_data(skel), points_kwargs, "points"), (edge_vectors(skel), vectors_kwargs, "vectors")]


class SkeletonSync:
    """Binds a Skeleton to its Points and Vectors layers, both ways.

    Points moved with napari's select tool move the nodes; deleted points delete the nodes
    (with their edges, comments and branch points). Points added with napari's add tool
    become nodes of the tree in ``points.feature_defaults["tree_id"]`` (a new tree if it
    does not exist).
    """

    def __init__(self, skel: Skeleton, points, vectors, voxel_size_xyz=None):
        self.skel, self.points, self.vectors = skel, points, vectors
        self.voxel_size_xyz = voxel_size_xyz or skel.parameters.scale or (1.0, 1.0, 1.0)
        self._removing: list[int] = []
        self._updating = False
        points.events.data.connect(self._on_points_data)
        # napari keeps weak references to bound methods: the layers keep the sync alive
        points.metadata[SYNC_KEY] = self
        vectors.metadata[SYNC_KEY] = self

    def disconnect(self) -> None:
        self.points.events.data.disconnect(self._on_points_data)

    # -- napari → model -------------------------------------------------------------------
    def _on_points_data(self, event) -> None:
        if self._updating:
            return
        action = str(getattr(event, "action", ""))
        action = action.rsplit(".", 1)[-1].lower()
        indices = [int(i) for i in getattr(event, "data_indices", ())]
        if action == "removing":
            ids = self.points.features["node_id"].to_numpy()
            self._removing = [int(ids[i]) for i in indices if 0 <= i < len(ids)]
        elif action == "removed":
            if self._removing:
                self.skel.delete_nodes(self._removing)
                self._removing = []
                self._refresh_edges()
        elif action == "changed" and len(indices) < len(self.points.data):
            ids = self.points.features["node_id"].to_numpy()
            data = self.points.data
            for i in indices:
                z, y, x = data[i]
                self.skel.move_node(int(ids[i]), (x, y, z))
            self._refresh_edges()
        elif action == "added":
            self._adopt_added(indices)

    def _adopt_added(self, indices) -> None:
        feats = self.points.features
        n = len(self.points.data)
        rows = [i if i >= 0 else n + i for i in indices]
        for r in rows:
            tid = int(feats["tree_id"].iloc[r]) if "tree_id" in feats else self.skel.next_tree_id()
            if tid not in self.skel.trees or tid <= 0:
                tid = self.skel.add_tree().id
            z, y, x = self.points.data[r]
            nid = self.skel.add_node((x, y, z), tid)
            with self._blocked():
                feats.loc[feats.index[r], "node_id"] = nid
                feats.loc[feats.index[r], "tree_id"] = tid
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

    def _refresh_edges(self) -> None:
        colors = _node_colors(self.skel)
        self.vectors.data = edge_vectors(self.skel)
        if self.skel.num_edges:
            self.vectors.edge_color = _edge_colors(self.skel, colors)

    def refresh(self) -> None:
        """Redraw both layers from the model (after edits made outside napari's tools)."""
        (pdata, pkw, _), (vdata, vkw, _) = skeleton_layer_data(self.skel, self.voxel_size_xyz)
        with self._blocked():
            self.points.data = pdata
            self.points.features = pkw["features"]
            if len(pdata):
                self.points.size = pkw["size"]
                self.points.face_color = pkw["face_color"]
                self.points.shown = pkw["shown"]
            self.vectors.data = vdata
            if len(vdata):
                self.vectors.edge_color = vkw["edge_color"]
