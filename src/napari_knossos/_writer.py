"""npe2 writer contributions: skeleton layers → .nml / .k.zip / .swc, Surface → .ply.

Every file is written atomically and durably (:mod:`.formats.atomic`).
"""

from __future__ import annotations

from pathlib import Path

from .formats.atomic import atomic_write_bytes

__all__ = ["write_kzip", "write_nml", "write_ply", "write_swc"]


def _atomic_write(path: str, data: bytes) -> None:
    atomic_write_bytes(path, data, parents=False)


def write_nml(path: str, layer_data: list[tuple]) -> list[str]:
    """Skeleton → NML (webKnossos dialect; KNOSSOS dialect if the skeleton came from KNOSSOS)."""
    from .annotation.nml import write_nml as nml_bytes
    from .annotation_layers import annotation_from_layers

    ann = annotation_from_layers(layer_data)
    _atomic_write(path, nml_bytes(ann.skeleton))
    return [path]


def write_kzip(path: str, layer_data: list[tuple]) -> list[str]:
    """Skeleton (+ meshes, mergelist, segmentation cubes, kept members) → KNOSSOS .k.zip."""
    from .annotation.kzip import write_kzip as kzip_write
    from .annotation_layers import annotation_from_layers

    kzip_write(annotation_from_layers(layer_data), path)
    return [path]


def write_swc(path: str, layer_data: list[tuple]) -> list[str]:
    """Skeleton → SWC in voxel units, one file per tree (``name.swc``, ``name.<tree>.swc``, …)."""
    from .annotation.swc import write_swc as swc_text
    from .annotation_layers import annotation_from_layers

    skel = annotation_from_layers(layer_data).skeleton
    trees = [t for t in sorted(skel.trees) if len(skel.node_ids(t))]
    out = []
    base = Path(path)
    for i, tree_id in enumerate(trees):
        target = base if i == 0 else base.with_name(f"{base.name.removesuffix('.swc')}.{tree_id}.swc")
        _atomic_write(str(target), swc_text(skel, tree_id, voxel_size_nm=skel.parameters.scale, units="voxel").encode())
        out.append(str(target))
    return out


def write_ply(path: str, data, meta: dict) -> list[str]:
    """Surface → binary PLY with vertices in nm (x, y, z), as KNOSSOS expects."""
    import numpy as np

    from .annotation.ply import Mesh
    from .annotation.ply import write_ply as ply_bytes

    verts, faces = np.asarray(data[0], np.float64), np.asarray(data[1])
    scale = np.asarray(meta.get("scale", (1.0,) * verts.shape[1]), np.float64)[-3:]
    nm_xyz = (verts[:, -3:] * scale)[:, ::-1]
    _atomic_write(path, ply_bytes(Mesh(nm_xyz, faces)))
    return [path]
