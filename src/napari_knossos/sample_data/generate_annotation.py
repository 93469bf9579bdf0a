"""Generate the sample annotation (``annotation/synthetic_neuropil.k.zip``) from the sample volume.

    python -m napari_knossos.sample_data.generate_annotation [OUT.k.zip]

Deterministic: reads the bundled KNOSSOS segmentation, traces the longest neurites as trees
(one node every few slices, on a voxel of the neurite nearest its centroid), adds side
branches with branch points, comments, KNOSSOS synapses (cleft trees between nodes of
neighbouring neurites), a mesh for one tree (the project's mesher,
``processing.mesh.mesh_from_mask``), and a mergelist with one object per traced neurite plus
one merged object.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_knossos.annotation import BoundingBox, Skeleton
from napari_knossos.annotation.kzip import Annotation, write_kzip
from napari_knossos.annotation.mergelist import SegmentObject
from napari_knossos.annotation.ply import Mesh
from napari_knossos.formats import open_dataset
from napari_knossos.processing.mesh import mesh_from_mask

HERE = Path(__file__).resolve().parent
OUT = HERE / "annotation" / "synthetic_neuropil.k.zip"
N_TREES = 12
Z_STEP = 6
TIME0 = 0


def load_segmentation() -> tuple[np.ndarray, tuple[float, float, float], str]:
    """Mag-1 segmentation (z, y, x), voxel size (x, y, z) nm and experiment name of the sample."""
    toml = next((HERE / "knossos").glob("*.k.toml"))
    ds = open_dataset(str(toml))
    seg = next(layer for layer in ds.layers if layer.is_segmentation)
    return np.asarray(seg.mags[0].array[:]), tuple(seg.voxel_size), ds.name


def _inside_point(mask2d: np.ndarray, target_yx) -> tuple[int, int]:
    """The voxel of ``mask2d`` nearest ``target_yx`` (so a node always lies inside its neurite)."""
    ys, xs = np.nonzero(mask2d)
    d = (ys - target_yx[0]) ** 2 + (xs - target_yx[1]) ** 2
    i = int(np.argmin(d))
    return int(ys[i]), int(xs[i])


def choose_neurites(seg: np.ndarray, n: int) -> list[int]:
    """The ``n`` segment ids present in the most z slices (ties: larger volume, then smaller id)."""
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    slices = np.array([np.count_nonzero((seg[::Z_STEP] == i).any(axis=(1, 2))) for i in ids])
    order = np.lexsort((ids, -counts, -slices))
    return [int(ids[k]) for k in order[:n]]


def trace(skel: Skeleton, seg: np.ndarray, seg_id: int, tree_id: int, clock: list[int]) -> list[int]:
    """Nodes along neurite ``seg_id`` every Z_STEP slices, linked in z order; returns node ids."""
    nodes = []
    for z in range(0, seg.shape[0], Z_STEP):
        mask = seg[z] == seg_id
        if mask.sum() < 4:
            continue
        ys, xs = np.nonzero(mask)
        y, x = _inside_point(mask, (ys.mean(), xs.mean()))
        clock[0] += 1000
        nid = skel.add_node((x, y, z), tree_id, radius=1.5, in_vp=0, in_mag=1, time=clock[0])
        if nodes:
            skel.link(nodes[-1], nid)
        nodes.append(nid)
    return nodes


def add_branch(skel: Skeleton, seg: np.ndarray, seg_id: int, tree_id: int, at: int, clock: list[int]) -> int | None:
    """A two-node side branch from node ``at`` towards the far side of its neurite."""
    x0, y0, z0 = (int(v) for v in skel.position(at))
    prev = at
    for dz in (2, 4):
        z = min(z0 + dz, seg.shape[0] - 1)
        mask = seg[z] == seg_id
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        far = int(np.argmax((ys - y0) ** 2 + (xs - x0) ** 2))
        y, x = _inside_point(mask, ((ys[far] + y0) / 2, (xs[far] + x0) / 2))
        clock[0] += 1000
        nid = skel.add_node((x, y, z), tree_id, radius=1.5, in_vp=0, in_mag=1, time=clock[0])
        skel.link(prev, nid)
        prev = nid
    skel.push_branchpoint(at)
    return prev


def add_synapses(skel: Skeleton, traced: dict[int, list[int]], count: int, clock: list[int]) -> None:
    """Cleft trees between the closest node pairs of different neurites (KNOSSOS convention)."""
    pairs = []
    tids = sorted(traced)
    for i, a in enumerate(tids):
        pa = np.array([skel.position(n) for n in traced[a]])
        for b in tids[i + 1 :]:
            pb = np.array([skel.position(n) for n in traced[b]])
            d = np.linalg.norm((pa[:, None, :] - pb[None, :, :]) * [1, 1, 2.5], axis=2)
            k = np.unravel_index(int(np.argmin(d)), d.shape)
            pairs.append((float(d[k]), a, b, traced[a][k[0]], traced[b][k[1]]))
    used: set[int] = set()
    made = 0
    for _, a, b, na, nb in sorted(pairs):
        if a in used or b in used:
            continue
        used |= {a, b}
        mid = np.rint((skel.position(na) + skel.position(nb)) / 2)
        cleft = skel.add_tree(visible=False, properties={"synapticCleft": "true", "preSynapse": str(na),
                                                         "postSynapse": str(nb)})
        clock[0] += 1000
        skel.add_node(tuple(mid), cleft.id, radius=1.5, in_vp=0, in_mag=1, time=clock[0])
        skel.set_comment(na, "pre-synapse")
        skel.set_comment(nb, "post-synapse")
        made += 1
        if made == count:
            return


def neurite_mesh(seg: np.ndarray, seg_id: int, voxel_size_xyz) -> Mesh:
    """Surface (mag-1 nm, x y z, faces oriented outwards, vertex normals) of a neurite meshed at
    mag 2 (every second voxel of ``seg``) by the project's mesher, unsmoothed."""
    mask = seg[::2, ::2, ::2] == seg_id
    return mesh_from_mask(mask, (0, 0, 0), (2, 2, 2), voxel_size_xyz, smooth_iterations=0)


def build() -> Annotation:
    seg, voxel_size, experiment = load_segmentation()
    skel = Skeleton()
    skel.dialect = "knossos"
    p = skel.parameters
    p.experiment = experiment
    p.scale = voxel_size
    z, y, x = seg.shape
    p.movement_area = BoundingBox(top_left=(0, 0, 0), size=(x, y, z))
    p.knossos = {"createdin": {"version": "napari-knossos sample"}, "lastsavedin": {"version": "napari-knossos sample"}}
    clock = [TIME0]
    traced: dict[int, list[int]] = {}
    objects = []
    for k, seg_id in enumerate(choose_neurites(seg, N_TREES)):
        tree = skel.add_tree(name=f"neurite {seg_id}")
        nodes = trace(skel, seg, seg_id, tree.id, clock)
        traced[tree.id] = nodes
        skel.set_comment(nodes[0], "first node")
        skel.set_comment(nodes[-1], "ending")
        if k < 4 and len(nodes) > 4:
            end = add_branch(skel, seg, seg_id, tree.id, nodes[len(nodes) // 2], clock)
            if end is not None:
                skel.set_comment(end, "branch ending")
        objects.append(SegmentObject(id=seg_id, supervoxels=[seg_id], position=tuple(int(v) for v in skel.position(nodes[0])),
                                     category="neuron", comment=f"tree {tree.id}"))
    add_synapses(skel, traced, 4, clock)
    # one merged object: the first two traced neurites as one (a merge a proofreader would make)
    first, second = objects[0], objects[1]
    objects.append(SegmentObject(id=max(o.id for o in objects) + 1000, todo=True, supervoxels=first.supervoxels + second.supervoxels,
                                 position=first.position, color=(255, 128, 0), category="merged", comment="merge candidate"))
    p.active_node = traced[1][0]
    p.edit_position = tuple(float(v) for v in skel.position(traced[1][0]))
    p.time_ms = clock[0]
    first_tree = min(traced)
    seg_of_first = objects[0].supervoxels[0]
    meshes = {first_tree: neurite_mesh(seg, seg_of_first, voxel_size)}
    return Annotation(skeleton=skel, objects=objects, meshes=meshes, experiment=experiment)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    write_kzip(build(), out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
