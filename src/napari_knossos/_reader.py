"""npe2 reader contribution: sniff cheaply, return None for anything we cannot open."""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["get_reader", "read_paths"]


def _as_list(path) -> list[str]:
    paths = path if isinstance(path, (list, tuple)) else [path]
    return [os.fspath(p) for p in paths]


def get_reader(path) -> Callable | None:
    """A reader for ``path`` (or a list of paths) if every path is a dataset we know; else None.

    Never raises: napari offers every folder to a reader that accepts directories.
    """
    try:
        from .formats import sniff

        paths = _as_list(path)
        if not paths or not all(sniff(p) for p in paths):
            return None
    except Exception:
        return None
    return read_paths


def read_paths(path) -> list[tuple]:
    """Open each dataset lazily and return its layers (images first, then segmentations)."""
    from .formats import open_dataset
    from .layer_data import dataset_to_layer_data

    out: list[tuple] = []
    for p in _as_list(path):
        out.extend(dataset_to_layer_data(open_dataset(p)))
    return out
