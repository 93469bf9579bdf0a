"""Where dask graphs run: the local threaded scheduler, or a dask.distributed cluster.

``scheduler`` is None (local threads), a local scheduler name (``"threads"``, ``"sync"``,
``"processes"``), a scheduler address (``"tcp://host:8786"``, connected with
``distributed.Client``) or an existing ``distributed.Client``. We start no cluster of our own.
Progress goes to stderr locally (``dask.diagnostics.ProgressBar``) and through
``distributed.progress`` on a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

__all__ = ["LOCAL_SCHEDULERS", "client_or_none", "compute"]

LOCAL_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded", "processes")


def _is_local(scheduler) -> bool:
    return scheduler is None or (isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS)


@contextmanager
def client_or_none(address) -> Iterator[Any]:
    """A ``distributed.Client`` connected to ``address`` (closed afterwards), the given Client,
    or None for the local schedulers."""
    if _is_local(address):
        yield None
        return
    if not isinstance(address, str):  # already a Client: the caller owns it
        yield address
        return
    try:
        from distributed import Client
    except ImportError:
        raise RuntimeError(
            f"--scheduler {address}: running on a dask.distributed cluster needs the package distributed "
            "(pip install napari-knossos[distributed])"
        ) from None
    client = Client(address)
    try:
        yield client
    finally:
        client.close()


def compute(collections: Sequence, scheduler=None, progress: bool = True) -> list:
    """Compute dask collections together; their results in order.

    With a cluster the graph is submitted with ``client.compute`` (results gathered back),
    otherwise it runs on the local scheduler named by ``scheduler`` (threads by default).
    """
    collections = list(collections)
    if not collections:
        return []
    with client_or_none(scheduler) as client:
        if client is None:
            import dask
            from dask.diagnostics import ProgressBar

            bar = ProgressBar(out=sys.stderr, minimum=0.5) if progress else nullcontext()
            with bar:
                return list(dask.compute(*collections, scheduler=scheduler or "threads"))
        futures = client.compute(collections)
        if progress:
            from distributed import progress as show_progress

            show_progress(futures, notebook=False)
        return list(client.gather(futures))
