"""npe2 reader contribution: sniff cheaply, return None for anything we cannot open.

Datasets (KNOSSOS, webKnossos, Zarr) open as lazy image/labels pyramids; annotations (NML,
.k.zip, webKnossos annotation zips, SWC, PLY) open as skeleton Points + Vectors (+ Surface)
layers. Several annotation files opened together merge into one skeleton, as in KNOSSOS.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["annotation_kind", "get_reader", "read_paths"]

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
    except Exception:  # noqa: BLE001 (napari offers us every path: never raise while sniffing)
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
    layers = annotation_layer_data(ann, name=name, source=";".join(paths))
    for p in paths:
        if annotation_kind(p) == "kzip":
            layers.extend(segmentation_overlays(p, ann))
    return layers


def segmentation_overlays(path: str, ann) -> list[tuple]:
    """Labels layers for the segmentation edits an annotation zip carries: KNOSSOS ``.seg.sz``
    cubes of a .k.zip, and the volume layers of a webKnossos volume-annotation zip. Zeros are
    transparent, so each overlays its dataset; the segmentation widget can apply it to the
    dataset's own segmentation layer."""
    import numpy as np

    from .annotation.volume import EditableVolume
    from .formats import volume_zip
    from .segmentation_layers import overlay_layer_data

    out = []
    stem = Path(path).name.split(".")[0]
    scale = ann.skeleton.parameters.scale or (1.0, 1.0, 1.0)
    if ann.cubes:
        numbers = sorted({key[0] for key in ann.cubes} | {1})
        cube = np.array(next(c.shape for c in ann.cubes.values()), np.int64)  # (x, y, z) voxels
        stop_xyz = np.zeros(3, np.int64)
        for (mag, x, y, z) in ann.cubes:
            stop_xyz = np.maximum(stop_xyz, (np.array([x, y, z]) + 1) * cube * mag)
        volume = EditableVolume.from_kzip(ann, None, shape_zyx=tuple(stop_xyz[::-1].tolist()),
                                          mags=[(m, m, m) for m in numbers], voxel_size=scale,
                                          chunk_zyx=tuple(cube[::-1].tolist()))
        out.append(overlay_layer_data(volume, f"{stem} segmentation edits", path, ann))
    if any(name.lower().endswith(".zip") for name in ann.extra_files):
        try:
            volumes = volume_zip.read_volume_zip(path)
        except ValueError as error:
            import warnings

            warnings.warn(f"{path}: volume layers not opened: {error}", stacklevel=2)
            return out
        for vol in volumes.volumes:
            if not vol.bucket_count():
                continue
            volume = EditableVolume.from_volume_zip(volumes, None, name_or_id=vol.id,
                                                    voxel_size=vol.voxel_size or scale)
            out.append(overlay_layer_data(volume, f"{stem} {vol.name}", path, volumes, volume_id=vol.id))
    return out
