"""Headless processing on dask: convert, downsample, inspect (and meshes, statistics).

Pure Python like :mod:`napari_knossos.formats`: never imports napari or Qt. Every long
operation takes ``scheduler``: None (local threads), a dask.distributed scheduler address or
``Client`` (see :mod:`.scheduler`).
"""
