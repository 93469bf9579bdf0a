"""File formats: pure Python, no napari or Qt import.

``sniff(path)`` names the format of a path or URL from a few small marker files (or
returns None); ``open_dataset(path)`` opens it lazily as a :class:`~.model.Dataset`.
"""

from __future__ import annotations

import os

from .model import Dataset, Layer, Mag

__all__ = ["Dataset", "Layer", "Mag", "sniff", "open_dataset"]


def _openers():
    from . import knossos, webknossos, zarr_io

    # order matters: the most specific markers first
    return [
        ("knossos", knossos.sniff, knossos.open_knossos),
        ("webknossos", webknossos.sniff, webknossos.open_webknossos),
        ("zarr", zarr_io.sniff, zarr_io.open_zarr),
    ]


def sniff(path: str | os.PathLike) -> str | None:
    """The format family that can open ``path`` ("knossos", "webknossos", "zarr"), or None.

    Looks only at the path and at a few small marker files; never raises.
    """
    for name, sniffer, _ in _openers():
        try:
            if sniffer(path):
                return name
        except Exception:  # a sniffer must never take napari down
            continue
    return None


def open_dataset(path: str | os.PathLike, **kwargs) -> Dataset:
    """Open a dataset lazily; ValueError if no format recognises it."""
    for name, sniffer, opener in _openers():
        try:
            ok = sniffer(path)
        except Exception:
            ok = False
        if ok:
            return opener(path, **kwargs)
    raise ValueError(f"{os.fspath(path)}: not a KNOSSOS, webKnossos or Zarr dataset")
