"""npe2 sample-data contribution: the bundled synthetic neuropil dataset."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["sample_path", "annotation_path", "knossos_sample", "webknossos_sample", "annotated_sample"]


def sample_path(kind: str = "knossos") -> Path:
    """Path of the bundled sample: ``knossos`` (its .k.toml) or ``webknossos`` (dataset folder)."""
    root = Path(str(files("napari_knossos") / "sample_data"))
    if kind == "knossos":
        tomls = sorted((root / "knossos").glob("*.k.toml"))
        if not tomls:
            raise FileNotFoundError(f"{root / 'knossos'}: sample KNOSSOS dataset missing")
        return tomls[0]
    if kind == "webknossos":
        return root / "webknossos"
    raise ValueError(f"unknown sample kind {kind!r}")


def _read(path: Path) -> list[tuple]:
    from ._reader import read_paths

    return read_paths(str(path))


def knossos_sample() -> list[tuple]:
    return _read(sample_path("knossos"))


def webknossos_sample() -> list[tuple]:
    return _read(sample_path("webknossos"))


def annotation_path() -> Path:
    """The bundled sample annotation (.k.zip) that fits the sample dataset."""
    return Path(str(files("napari_knossos") / "sample_data")) / "annotation" / "synthetic_neuropil.k.zip"


def annotated_sample() -> list[tuple]:
    """The KNOSSOS sample volume with its annotation: skeletons, synapses, a mesh."""
    from ._reader import read_annotations

    return _read(sample_path("knossos")) + read_annotations(str(annotation_path()))
