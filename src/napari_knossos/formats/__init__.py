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
    raise ValueError(f"{_display(path)}: not a KNOSSOS, webKnossos or Zarr dataset{_remote_hint(path)}")


def _display(path) -> str:
    from .store import is_url, open_store

    return open_store(path).location() if is_url(os.fspath(path)) else os.fspath(path)


def _remote_hint(path) -> str:
    """For a URL: what the server said about the path itself (404, 401, ...)."""
    from .store import RemoteAccessError, is_url, open_store, split_parent

    if not is_url(os.fspath(path)):
        return ""
    parent, name = split_parent(os.fspath(path))
    try:
        found = open_store(parent).read(name)
    except RemoteAccessError as err:
        return f" ({err})"
    return " (HTTP 404: nothing at this URL)" if found is None else ""
