"""napari adapter for annotations: files' models ↔ layer data (skeleton, meshes), no Qt.

Reading: an :class:`~napari_knossos.annotation.kzip.Annotation` becomes a Points (nodes)
and a Vectors (edges) layer plus one Surface per mesh, all in mag-1 voxel coordinates with
``scale`` = voxel size (nm), like the volumes. Writing: the Points layer is reconciled with
the model it carries (moved, deleted and added points), so edits made with napari's own
Points tools reach the file even when no tool widget kept them in sync.
"""

from __future__ import annotations

import numpy as np

from .annotation import Skeleton
from .annotation.kzip import Annotation
from .annotation.ply import Mesh
from .skeleton_layers import AXIS_LABELS, COMMENTS_ROLE, SKELETON_KEY, UNITS, skeleton_layer_data, tree_colors

__all__ = ["ANNOTATION_KEY", "annotation_from_layers", "annotation_layer_data", "mesh_layer_data", "reconcile_points"]

ANNOTATION_KEY = "napari_knossos_annotation"


def _voxel_size(ann: Annotation, voxel_size_xyz=None) -> tuple[float, float, float]:
    vs = voxel_size_xyz or ann.skeleton.parameters.scale or (1.0, 1.0, 1.0)
    return tuple(float(v) for v in vs)


def mesh_layer_data(mesh: Mesh, voxel_size_xyz, name: str, color=None, metadata=None) -> tuple:
    """Surface layer data for a mesh (nm x, y, z vertices → voxel z, y, x at nm scale)."""
    vs = np.asarray(voxel_size_xyz, np.float64)
    verts = (mesh.vertices.astype(np.float64) / vs)[:, ::-1]
    kwargs = {
        "name": name,
        "scale": tuple(vs[::-1]),
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "opacity": 0.6,
        "shading": "smooth",
        "metadata": metadata or {},
    }
    if color is not None:
        kwargs["vertex_colors"] = np.tile(np.asarray(color, np.float32), (len(verts), 1))
    return (verts, mesh.faces.astype(np.int64)), kwargs, "surface"


def annotation_layer_data(ann: Annotation, voxel_size_xyz=None, name: str = "annotation", source: str = "") -> list[tuple]:
    """Layer data for a whole annotation: skeleton nodes + edges, then one Surface per mesh."""
    vs = _voxel_size(ann, voxel_size_xyz)
    meta = {ANNOTATION_KEY: ann, "napari_knossos_source": source}
    layers = skeleton_layer_data(ann.skeleton, vs, name=name, metadata=meta)
    colors = tree_colors(ann.skeleton)
    for tree_id, mesh in sorted(ann.meshes.items()):
        tree = ann.skeleton.trees.get(tree_id)
        label = tree.name if tree is not None and tree.name else f"tree {tree_id}"
        layers.append(mesh_layer_data(mesh, vs, f"{name} mesh {label}", colors.get(tree_id),
                                      {**meta, "napari_knossos_tree_id": tree_id, "napari_knossos_mesh": mesh}))
    return layers


def reconcile_points(skel: Skeleton, data: np.ndarray, features) -> None:
    """Bring ``skel`` in line with a Points layer's ``data`` (z, y, x voxels) and ``features``.

    Rows whose ``node_id`` is in the model move the node; model nodes without a row are
    deleted; rows without a valid ``node_id`` become new nodes of their ``tree_id`` (a new
    tree when that is not a tree of the model).
    """
    data = np.asarray(data, np.float64).reshape(-1, 3)
    ids = np.asarray(features["node_id"], np.float64) if "node_id" in features else np.full(len(data), np.nan)
    known = ~np.isnan(ids) & np.isin(ids, skel.nodes["id"])
    gone = np.setdiff1d(skel.nodes["id"], ids[known].astype(np.int64))
    if len(gone):
        skel.delete_nodes(gone.tolist())
    if known.any():
        rows = skel.rows(ids[known].astype(np.int64))
        for axis, col in enumerate(("z", "y", "x")):
            changed = skel.nodes[col][rows] != data[known, axis]
            if changed.any():
                skel.nodes[col][rows[changed]] = data[known, axis][changed]
                skel.version += 1
    trees = np.asarray(features["tree_id"], np.float64) if "tree_id" in features else np.full(len(data), np.nan)
    new_tree: int | None = None
    for r in np.flatnonzero(~known):
        tid = trees[r]
        if np.isnan(tid) or int(tid) not in skel.trees:
            if new_tree is None:
                new_tree = skel.add_tree().id
            tid = new_tree
        z, y, x = data[r]
        skel.add_node((x, y, z), int(tid))


def annotation_from_layers(layer_data: list[tuple]) -> Annotation:
    """The annotation to write from npe2 writer input ``[(data, meta, layer_type), ...]``.

    Uses the model the Points layer carries (reconciled with the layer), else builds one tree
    from plain points; Surface layers that belong to a tree become its mesh.
    """
    ann: Annotation | None = None
    points = [(d, m) for d, m, t in layer_data if t == "points"]
    shown_comments = [m for _d, m in points if (m.get("metadata") or {}).get("napari_knossos_role") == COMMENTS_ROLE]
    if shown_comments and len(shown_comments) == len(points):
        raise ValueError(f"layer {shown_comments[0].get('name', '')!r} only shows the skeleton's comments: "
                         "select the skeleton's nodes layer to save it")
    points = [(d, m) for d, m in points if not any(m is c for c in shown_comments)]
    for data, meta in points:
        md = meta.get("metadata", {}) or {}
        if ANNOTATION_KEY in md:
            ann = md[ANNOTATION_KEY]
        elif SKELETON_KEY in md:
            ann = Annotation(skeleton=md[SKELETON_KEY])
        else:
            continue
        reconcile_points(ann.skeleton, data, meta.get("features", {}))
        break
    if ann is None:
        ann = Annotation()
        skel = ann.skeleton
        for data, meta in points:
            scale = meta.get("scale")
            if scale is not None and skel.parameters.scale is None and len(scale) == 3:
                skel.parameters.scale = (float(scale[2]), float(scale[1]), float(scale[0]))
            tree = skel.add_tree(name=str(meta.get("name", "")))
            for z, y, x in np.asarray(data, np.float64).reshape(-1, 3):
                skel.add_node((x, y, z), tree.id)
    vs = np.asarray(ann.skeleton.parameters.scale or (1.0, 1.0, 1.0), np.float64)
    for data, meta, kind in layer_data:
        md = meta.get("metadata", {}) or {}
        if kind == "surface" and "napari_knossos_tree_id" in md:
            verts, faces = data[0], data[1]
            ann.meshes[int(md["napari_knossos_tree_id"])] = Mesh(np.asarray(verts)[:, ::-1] * vs, faces)
    return ann
