"""SWC neuron morphologies with the KNOSSOS mapping (knossos-project/knossos:skeleton/swc.cpp).

Line: ``id type x y z radius parent``; ``#`` starts a comment. One file is one tree. The SWC
type maps to a node comment (1 soma, 2 axon, 3 basal, 4 apical, 5 fork point, 6 end point,
7 custom; on export also ``dendrite`` → 3, anything else → 0). Units: ``"um"`` (µm, converted
with the mag-1 voxel size in nm; radius with the x size) or ``"voxel"`` (0-based voxels as
stored). Pure Python + numpy.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .skeleton import NODE_COLUMNS, Skeleton, Tree

__all__ = ["SWC_TYPE_COMMENTS", "read_swc", "write_swc"]

SWC_TYPE_COMMENTS = {1: "soma", 2: "axon", 3: "basal", 4: "apical", 5: "fork point", 6: "end point", 7: "custom"}
_COMMENT_TYPES = {**{v: k for k, v in SWC_TYPE_COMMENTS.items()}, "dendrite": 3}
_DEFAULT_RADIUS = 1.5  # KNOSSOS default node radius (voxels)
_VIEWPORT_UNDEFINED = 5


def _unit_factors(units: str, voxel_size_nm) -> np.ndarray:
    """Voxels per file unit along (x, y, z)."""
    if units in ("um", "µm", "micron"):
        if voxel_size_nm is None:
            raise ValueError("voxel_size_nm is needed to convert µm SWC coordinates")
        size = np.asarray(voxel_size_nm, np.float64).reshape(3)
        if not (size > 0).all():
            raise ValueError(f"voxel size must be positive, got {tuple(size)}")
        return 1000.0 / size
    if units in ("voxel", "px"):
        return np.ones(3)
    raise ValueError(f"units must be 'um' or 'voxel', not {units!r}")


def _snap(values: np.ndarray) -> np.ndarray:
    """Remove float noise of the unit conversion: values within 1e-6 of an integer become it."""
    rounded = np.round(values)
    return np.where(np.abs(values - rounded) < 1e-6, rounded, values)


def _read_text(source) -> tuple[str, str]:
    if isinstance(source, os.PathLike):
        return Path(source).read_text(encoding="utf-8", errors="replace"), os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return bytes(source).decode("utf-8", errors="replace"), "SWC data"
    if isinstance(source, str) and "\n" not in source and os.path.isfile(source):
        return Path(source).read_text(encoding="utf-8", errors="replace"), source
    return str(source), "SWC data"


def read_swc(source, *, voxel_size_nm=None, units: str = "um", skeleton: Skeleton | None = None,
             tree_id: int | None = None, name: str | None = None) -> Skeleton:
    """Add the SWC ``source`` (text, bytes or path) as one new tree to ``skeleton`` (a new one by
    default) and return the skeleton. Node ids are kept unless they collide with nodes already in
    ``skeleton``, then all are shifted past its largest id. Malformed lines raise ValueError
    naming the line."""
    text, label = _read_text(source)
    label = name or label
    factors = _unit_factors(units, voxel_size_nm)
    rows: list[tuple[int, int, float, float, float, float, int]] = []
    line_of: dict[int, int] = {}
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 7:
            raise ValueError(f"{label}: line {line_no}: expected 7 fields 'id type x y z radius parent', "
                             f"got {len(parts)}")
        try:
            nid, typ, parent = int(parts[0]), int(parts[1]), int(parts[6])
            x, y, z, r = (float(v) for v in parts[2:6])
        except ValueError:
            raise ValueError(f"{label}: line {line_no}: malformed SWC node line {raw.strip()!r}") from None
        if not all(np.isfinite((x, y, z, r))):
            raise ValueError(f"{label}: line {line_no}: non-finite coordinate or radius")
        if nid < 0:
            raise ValueError(f"{label}: line {line_no}: negative node id {nid}")
        if nid in line_of:
            raise ValueError(f"{label}: line {line_no}: duplicate node id {nid} (first on line {line_of[nid]})")
        if parent == nid:
            raise ValueError(f"{label}: line {line_no}: node {nid} is its own parent")
        line_of[nid] = line_no
        rows.append((nid, typ, x, y, z, r, parent))
    for nid, _, _, _, _, _, parent in rows:
        if parent >= 0 and parent not in line_of:
            raise ValueError(f"{label}: line {line_of[nid]}: parent {parent} of node {nid} is not in the file")

    skel = skeleton if skeleton is not None else Skeleton()
    tid = skel.next_tree_id() if tree_id is None else int(tree_id)
    ids = np.array([r[0] for r in rows], np.int64)
    shift = 0
    if len(ids):
        shift = 1 - int(ids.min()) if ids.min() < 1 else 0  # KNOSSOS node ids start at 1
        if skel.num_nodes and np.isin(ids + shift, skel.nodes["id"]).any():
            shift += int(skel.nodes["id"].max())
    skel.add_tree(Tree(id=tid))
    if rows:
        table = np.array([r[2:6] for r in rows], np.float64)
        pos = _snap(table[:, :3] * factors)
        radius = _snap(table[:, 3] * factors[0])
        new = {"id": ids + shift, "tree": np.full(len(rows), tid), "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
               "radius": radius, "in_vp": np.full(len(rows), _VIEWPORT_UNDEFINED), "in_mag": np.ones(len(rows))}
        merged = {}
        for col, (dt, default) in NODE_COLUMNS.items():
            add = new.get(col, np.full(len(rows), default, dt))
            merged[col] = np.concatenate([skel.nodes[col], np.asarray(add, dt)])
        skel.set_nodes(merged)
        edges = np.array([(p + shift, n + shift) for n, _, _, _, _, _, p in rows if p >= 0], np.int64).reshape(-1, 2)
        if len(edges):
            skel.set_edges(np.concatenate([skel.edges, edges]))
        for nid, typ, *_ in rows:
            comment = SWC_TYPE_COMMENTS.get(typ)
            if comment:
                skel.comments[nid + shift] = comment
    return skel


def _fmt(value: float) -> str:
    return f"{value:.10g}"


def write_swc(skeleton: Skeleton, tree_id: int, *, voxel_size_nm=None, units: str = "um") -> str:
    """SWC text of one tree like KNOSSOS: nodes renumbered 1..N in depth-first order starting
    with the soma-commented components (rooted at the soma), then the other components from their
    smallest id; neighbours are visited in id order, so writing a file read back from this output
    gives the same text. Parent −1 for roots, comment → type. Edges that close a cycle cannot be
    expressed in SWC and are dropped with a warning."""
    if tree_id not in skeleton.trees:
        raise KeyError(f"no tree with id {tree_id}")
    factors = _unit_factors(units, voxel_size_nm)
    per_voxel = 1.0 / factors  # file units per voxel
    mask = skeleton.nodes["tree"] == tree_id
    ids = skeleton.nodes["id"][mask]
    if not len(ids):
        return ""
    pos = np.stack([skeleton.nodes[c][mask] for c in "xyz"], axis=1) * per_voxel
    radius = np.where(np.isnan(skeleton.nodes["radius"][mask]), _DEFAULT_RADIUS,
                      skeleton.nodes["radius"][mask]).astype(np.float64) * per_voxel[0]
    row_of = {int(n): i for i, n in enumerate(ids.tolist())}
    neighbours: dict[int, list[int]] = {int(n): [] for n in ids.tolist()}
    for a, b in skeleton.edges.tolist():
        if a in row_of and b in row_of:
            neighbours[a].append(b)
            neighbours[b].append(a)

    somata = [n for n in ids.tolist() if skeleton.comments.get(n) == "soma"]
    parent_of: dict[int, int] = {}
    order: list[int] = []
    cycles = 0
    for root in somata + ids.tolist():
        if root in parent_of:
            continue
        parent_of[root] = root
        stack = [root]
        while stack:  # like KNOSSOS' NodeGenerator: pop the last queued node, queue its unseen neighbours
            node = stack.pop()
            order.append(node)
            for nb in sorted(neighbours[node], reverse=True):  # smallest id popped first: idempotent
                if nb not in parent_of:
                    parent_of[nb] = node
                    stack.append(nb)
                elif parent_of[node] != nb and parent_of[nb] != node:
                    cycles += 1
    if cycles:
        warnings.warn(f"tree {tree_id}: {cycles // 2} edge(s) close a cycle and are not written to SWC",
                      stacklevel=2)
    new_id = {n: i for i, n in enumerate(order, 1)}
    lines = []
    for n in order:
        i = row_of[n]
        typ = _COMMENT_TYPES.get(skeleton.comments.get(n, ""), 0)
        parent = -1 if parent_of[n] == n else new_id[parent_of[n]]
        x, y, z = pos[i]
        lines.append(f"{new_id[n]} {typ} {_fmt(x)} {_fmt(y)} {_fmt(z)} {_fmt(radius[i])} {parent}\n")
    return "".join(lines)
