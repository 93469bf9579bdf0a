"""npe2 reader contribution: sniff cheaply, return None for anything we cannot open.

Datasets (KNOSSOS, webKnossos, Zarr) open as lazy image/labels pyramids; annotations (NML,
.k.zip, webKnossos annotation zips, SWC, PLY) open as skeleton Points + Vectors (+ Surface)
layers. Several annotation files opened together merge into one skeleton, as in KNOSSOS.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

__all__ = ["get_reader", "read_paths", "annotation_kind"]

_ANNOTATION_SUFFIXES = {".nml": "nml", ".swc": "swc", ".ply": "ply"}


def _as_list(path) -> list[str]:
    paths = path if isinstance(path, (list, tuple)) else [path]
    return [os.fspath(p) for p in paths]


def annotation_kind(path: str) -> str | None:
    """"nml", "kzip", "swc" or "ply" for a local annotation file (cheap: name and zip directory)."""
    name = Path(path).name.lower()
    if not os.path.isfile(path):
        return None
    for suffix, kind in _ANNOTATION_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n == "annotation.xml" or n.lower().endswith(".nml") for n in names):
            return "kzip"
    return None


def get_reader(path) -> Callable | None:
    """A reader for ``path`` (or a list of paths) if every path is something we open; else None.

    Never raises: napari offers every folder to a reader that accepts directories.
    """
    try:
        paths = _as_list(path)
        if not paths:
            return None
        if all(annotation_kind(p) for p in paths):
            return read_annotations
        from .formats import sniff

        if all(sniff(p) for p in paths):
            return read_paths
    except Exception:
        return None
    return None


def read_paths(path) -> list[tuple]:
    """Open each dataset lazily and return its layers (images first, then segmentations)."""
    from .formats import open_dataset
    from .layer_data import dataset_to_layer_data

    out: list[tuple] = []
    for p in _as_list(path):
        out.extend(dataset_to_layer_data(open_dataset(p)))
    return out


def load_annotation(path: str):
    """The :class:`~napari_knossos.annotation.kzip.Annotation` of one annotation file."""
    from .annotation.kzip import Annotation, read_kzip
    from .annotation.nml import read_nml
    from .annotation.ply import read_ply
    from .annotation.swc import read_swc

    kind = annotation_kind(path)
    if kind == "kzip":
        return read_kzip(path)
    if kind == "nml":
        return Annotation(skeleton=read_nml(path))
    if kind == "swc":
        return Annotation(skeleton=read_swc(path, units="voxel"))
    if kind == "ply":
        ann = Annotation()
        tree = ann.skeleton.add_tree(name=Path(path).name)
        ann.meshes[tree.id] = read_ply(path)
        return ann
    raise ValueError(f"{path}: not an annotation file (.nml, .k.zip, .swc, .ply)")


def read_annotations(path) -> list[tuple]:
    """Open annotation files; several merge into one skeleton (ids shifted as KNOSSOS does)."""
    from .annotation.kzip import merge_skeleton
    from .annotation_layers import annotation_layer_data

    paths = _as_list(path)
    ann = load_annotation(paths[0])
    for p in paths[1:]:
        other = load_annotation(p)
        before = max(ann.skeleton.trees, default=0)
        ann.skeleton = merge_skeleton(ann.skeleton, other.skeleton)
        shift = before if ann.skeleton is not other.skeleton else 0
        for tree_id, mesh in other.meshes.items():
            ann.meshes[tree_id + shift] = mesh
        ann.objects.extend(other.objects)
    name = Path(paths[0]).name.split(".")[0] if len(paths) == 1 else "annotation"
    return annotation_layer_data(ann, name=name, source=";".join(paths))
