"""Atomic and durable writes (formats/atomic.py) and every save routed through them: no temporary file
is left behind, a failure keeps the old file, durable saves fsync the file and its folder, bulk
dataset writing (convert) does not fsync per chunk file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.kzip import Annotation, write_kzip
from napari_knossos.annotation.nml import write_nml
from napari_knossos.annotation.skeleton import Skeleton
from napari_knossos.annotation.synapses import write_connectivity_csv, write_synapses_csv
from napari_knossos.formats import open_dataset
from napari_knossos.formats.atomic import (
    AtomicFile,
    atomic_open,
    atomic_write_blocks,
    atomic_write_bytes,
    new_file_mode,
    read_umask,
)
from napari_knossos.formats.inplace import chunk_writer
from napari_knossos.formats.knossos_writer import write_cube
from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

OLD = b"old contents\n"


class FsyncLog:
    """Records every ``os.fsync`` (kind and inode of the synced descriptor) and then really syncs."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, int]] = []
        real = os.fsync

        def fsync(fd):
            st = os.fstat(fd)
            self.calls.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def synced(self, path: Path) -> bool:
        kind = "dir" if path.is_dir() else "file"
        return (kind, path.stat().st_ino) in self.calls

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def _old_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(OLD)
    return path


def _failing_blocks():
    yield b"first block "
    raise RuntimeError("producer failed mid-write")


# ------------------------------------------------------------------ the helpers themselves
def _write_bytes(path, data, durable):
    atomic_write_bytes(path, data, durable=durable)


def _write_blocks(path, data, durable):
    atomic_write_blocks(path, [data[:3], data[3:]] if isinstance(data, bytes) else data, durable=durable)


def _write_open(path, data, durable):
    with atomic_open(path, durable=durable) as f:
        for block in [data] if isinstance(data, bytes) else data:
            f.write(block)


def _write_atomic_file(path, data, durable):
    with AtomicFile(path, durable=durable) as out:
        for block in [data] if isinstance(data, bytes) else data:
            out.pwrite(block, 0) if block is data else out.write(block)
        out.commit()


HELPERS = [_write_bytes, _write_blocks, _write_open, _write_atomic_file]


@pytest.mark.parametrize("helper", HELPERS, ids=lambda h: h.__name__)
def test_helper_replaces_durably_and_leaves_no_temp_file(tmp_path, monkeypatch, helper):
    path = _old_file(tmp_path, "a.bin")
    os.chmod(path, 0o600)
    log = FsyncLog(monkeypatch)
    helper(path, b"new contents", True)
    assert path.read_bytes() == b"new contents"
    assert _leftovers(tmp_path) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file keeps its mode
    assert log.synced(path) and log.synced(tmp_path)  # the file (same inode after the rename) and its folder


@pytest.mark.parametrize("helper", HELPERS, ids=lambda h: h.__name__)
def test_helper_not_durable_does_not_fsync(tmp_path, monkeypatch, helper):
    log = FsyncLog(monkeypatch)
    helper(tmp_path / "sub" / "new.bin", b"data", False)
    assert (tmp_path / "sub" / "new.bin").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "sub" / "new.bin").stat().st_mode) == new_file_mode()
    assert log.calls == []


@pytest.mark.parametrize("umask", [0o077, 0o002, 0o022])
@pytest.mark.parametrize("helper", HELPERS, ids=lambda h: h.__name__)
def test_new_file_mode_follows_the_umask_like_open(tmp_path, helper, umask):
    old = os.umask(umask)
    try:
        assert read_umask() == umask
        with open(tmp_path / "by_open.bin", "wb"):
            pass
        helper(tmp_path / "new.bin", b"data", False)
    finally:
        os.umask(old)
        read_umask()
    mode = stat.S_IMODE((tmp_path / "new.bin").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "by_open.bin").stat().st_mode)


def test_read_umask_without_proc_sets_and_restores(monkeypatch):
    """Where /proc/self/status has no Umask line (macOS, old kernels) the umask is read by setting it."""
    from napari_knossos.formats import atomic

    monkeypatch.setattr(atomic, "_umask_from_proc", lambda: None)
    old = os.umask(0o027)
    try:
        assert read_umask() == 0o027 and new_file_mode() == 0o640
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(old)
        read_umask()


def test_chmod_refused_by_the_file_system_still_saves(tmp_path, monkeypatch):
    """vfat/exFAT/SMB refuse chmod (EPERM, ENOTSUP, EINVAL): the save still goes through."""
    path = _old_file(tmp_path, "a.k.zip")
    codes = iter([errno.EPERM, errno.ENOTSUP, errno.EINVAL])

    def fchmod(fd, mode):
        code = next(codes)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fchmod", fchmod)
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    atomic_write_blocks(tmp_path / "new.bin", [b"a", b"b"])
    with atomic_open(tmp_path / "other.bin") as f:
        f.write(b"c")
    assert (tmp_path / "new.bin").read_bytes() == b"ab" and (tmp_path / "other.bin").read_bytes() == b"c"
    assert _leftovers(tmp_path) == []


def test_other_chmod_errors_abort_the_save(tmp_path, monkeypatch):
    path = _old_file(tmp_path, "a.bin")

    def fchmod(fd, mode):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fchmod", fchmod)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_close_error_is_raised_and_removes_the_temp_file(tmp_path, monkeypatch):
    """NFS reports delayed write errors at close: that error reaches the caller (not a later EBADF),
    the old file stays and no temporary file is left."""
    path = _old_file(tmp_path, "a.bin")
    real_close = os.close
    out = AtomicFile(path)
    closes = []

    def close(fd):
        real_close(fd)  # like Linux: the descriptor is released even when close reports an error
        if fd == out.fd and not closes:
            closes.append(fd)
            raise OSError(errno.EIO, "delayed write error")

    monkeypatch.setattr(os, "close", close)
    with pytest.raises(OSError, match="delayed write error") as info, out:
        out.write(b"new contents")
        out.commit()
    assert info.value.errno == errno.EIO and closes == [out.fd]
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_created_folders_are_synced_into_their_parents(tmp_path, monkeypatch):
    """A durable save into new folders syncs each new folder's parent once, so the folders survive a power cut."""
    (tmp_path / "a").mkdir()
    log = FsyncLog(monkeypatch)
    path = tmp_path / "a" / "b" / "c" / "x.bin"
    atomic_write_bytes(path, b"data")
    assert path.read_bytes() == b"data" and log.synced(path)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert log.synced(folder), folder
    assert not log.synced(tmp_path)  # not created, nothing in it changed
    assert log.count("dir") == 3
    log.calls.clear()
    atomic_write_bytes(tmp_path / "a" / "b" / "c" / "y.bin", b"data")  # folders exist now: only its own
    assert log.count("dir") == 1 and log.synced(tmp_path / "a" / "b" / "c")


def test_created_folders_not_synced_when_not_durable(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    out = AtomicFile(tmp_path / "a" / "b" / "x.bin", durable=False)
    with out:
        out.write(b"data")
        out.commit()
    assert out.created_folders == [tmp_path / "a", tmp_path / "a" / "b"]
    assert log.calls == []


@pytest.mark.parametrize("helper", [_write_blocks, _write_open, _write_atomic_file], ids=lambda h: h.__name__)
def test_helper_failure_mid_write_keeps_old_file(tmp_path, helper):
    path = _old_file(tmp_path, "a.bin")
    with pytest.raises(RuntimeError, match="mid-write"):
        helper(path, _failing_blocks(), True)
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_write_bytes_failure_keeps_old_file(tmp_path):
    path = _old_file(tmp_path, "a.bin")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # raises in the writer, after the temp file exists
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_failing_rename_keeps_old_file(tmp_path, monkeypatch):
    path = _old_file(tmp_path, "a.bin")

    def replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ annotation saves
def _skeleton() -> Skeleton:
    skel = Skeleton()
    tree = skel.add_tree(name="axon")
    a = skel.add_node((10, 20, 30), tree.id)
    b = skel.add_node((11, 21, 31), tree.id)
    skel.set_edges([(a, b)])
    return skel


def test_kzip_save_is_durable_and_failure_keeps_old(tmp_path, monkeypatch):
    path = _old_file(tmp_path, "a.k.zip")
    ann = Annotation(skeleton=_skeleton())
    ann.extra_files = {"notes.txt": b"kept", "broken.txt": object()}  # the second member raises mid-write
    with pytest.raises(TypeError):
        write_kzip(ann, path)
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path) == []
    log = FsyncLog(monkeypatch)
    ann.extra_files = {"notes.txt": b"kept"}
    write_kzip(ann, path)
    assert path.read_bytes()[:2] == b"PK"
    assert log.synced(path) and log.synced(tmp_path)
    assert _leftovers(tmp_path) == []


def test_autosave_is_durable(tmp_path, monkeypatch):
    from napari_knossos.annotation.autosave import write_recovery

    log = FsyncLog(monkeypatch)
    path = write_recovery(Annotation(skeleton=_skeleton()), tmp_path / "rec" / "a.recovery.k.zip")
    assert log.synced(path) and log.synced(path.parent)


def test_nml_save_is_durable(tmp_path, monkeypatch):
    path = _old_file(tmp_path, "a.nml")
    log = FsyncLog(monkeypatch)
    write_nml(_skeleton(), path)
    assert b"<things" in path.read_bytes()
    assert log.synced(path) and log.synced(tmp_path)
    assert _leftovers(tmp_path) == []


def test_synapse_csvs_are_durable(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    write_synapses_csv(_skeleton(), tmp_path / "syn.csv")
    write_connectivity_csv(_skeleton(), tmp_path / "conn.csv")
    assert log.synced(tmp_path / "syn.csv") and log.synced(tmp_path / "conn.csv") and log.synced(tmp_path)
    assert _leftovers(tmp_path) == []


def test_npe2_writer_is_durable(tmp_path, monkeypatch):
    from napari_knossos._writer import _atomic_write

    path = _old_file(tmp_path, "a.swc")
    log = FsyncLog(monkeypatch)
    _atomic_write(str(path), b"1 0 0 0 0 1 -1\n")
    assert log.synced(path) and log.synced(tmp_path)


# ------------------------------------------------------------------ dataset writes
def _segmentation(tmp_path: Path, n: int = 2):
    vol = (np.arange((32 * n) ** 3, dtype=np.uint32).reshape((32 * n,) * 3) % 7).astype(np.uint32)
    write_webknossos_dataset(tmp_path / "ds", (1, 1, 1), [WkLayerSpec("seg", "segmentation", {1: vol})],
                             shard_shape=32, chunk_shape=32)
    layer = open_dataset(str(tmp_path / "ds")).layer("seg")
    return layer, vol


def test_inplace_edit_is_durable_one_folder_sync_per_folder(tmp_path, monkeypatch):
    layer, _ = _segmentation(tmp_path)
    writer = chunk_writer(layer, 1)
    assert writer.durable
    log = FsyncLog(monkeypatch)
    chunks = {(z, y, x): np.full((32, 32, 32), 5, np.uint32) for z in range(2) for y in range(2) for x in range(2)}
    writer.write_chunks(chunks)
    files = [p for p in (tmp_path / "ds" / "seg" / "1").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(files) == 8 and all(log.synced(p) for p in files)
    folders = {p.parent for p in files}
    assert all(log.synced(f) for f in folders) and log.count("dir") == len(folders)
    assert _leftovers(tmp_path) == []
    assert (np.asarray(open_dataset(str(tmp_path / "ds")).layer("seg").mags[0].array[:]) == 5).all()


def test_inplace_edit_into_new_folders_syncs_their_parents(tmp_path, monkeypatch):
    """Zarr3 with one chunk per shard: shards in new folders (``c/0/1/1/``) sync the folders holding the
    new folders too, each once per write_chunks."""
    vol = np.zeros((64, 64, 64), np.uint32)
    vol[:32, :32, :32] = 1  # only chunk (0, 0, 0) is stored, the others are the fill value
    write_webknossos_dataset(tmp_path / "ds", (1, 1, 1), [WkLayerSpec("seg", "segmentation", {1: vol})],
                             shard_shape=32, chunk_shape=32)
    mag = tmp_path / "ds" / "seg" / "1"
    layer = open_dataset(str(tmp_path / "ds")).layer("seg")
    writer = chunk_writer(layer, 1)
    before = set(mag.rglob("*"))
    log = FsyncLog(monkeypatch)
    writer.write_chunks({(1, 1, 1): np.full((32, 32, 32), 5, np.uint32), (0, 1, 1): np.full((32, 32, 32), 6, np.uint32)})
    new = set(mag.rglob("*")) - before
    new_folders, new_files = {p for p in new if p.is_dir()}, {p for p in new if p.is_file()}
    assert len(new_files) == 2 and len(new_folders) == 2  # c/0/1 and c/0/1/1 did not exist
    assert all(log.synced(p) for p in new_files)
    must_sync = {f.parent for f in new_folders} | {p.parent for p in new_files}
    assert all(log.synced(f) for f in must_sync), sorted(str(f) for f in must_sync if not log.synced(f))
    assert log.count("dir") == len(must_sync)  # each folder once
    assert _leftovers(tmp_path) == []
    arr = np.asarray(open_dataset(str(tmp_path / "ds")).layer("seg").mags[0].array[:])
    assert (arr[32:, 32:, 32:] == 5).all() and (arr[:32, 32:, 32:] == 6).all() and (arr[:32, :32, :32] == 1).all()


def test_inplace_edit_not_durable_does_not_fsync(tmp_path, monkeypatch):
    layer, _ = _segmentation(tmp_path)
    writer = chunk_writer(layer, 1)
    writer.durable = False
    log = FsyncLog(monkeypatch)
    writer.write_chunks({(0, 0, 0): np.full((32, 32, 32), 3, np.uint32)})
    assert log.calls == []


def test_knossos_cube_write_is_not_durable(tmp_path, monkeypatch):
    log = FsyncLog(monkeypatch)
    write_cube(tmp_path / "c.raw", np.ones((4, 4, 4), np.uint8), ".raw")
    assert (tmp_path / "c.raw").stat().st_size == 64 and log.calls == []


def test_zarr3_mag_metadata_is_replaced_atomically_without_fsync(tmp_path, monkeypatch):
    from napari_knossos.formats.wk_writer import write_zarr3_mag

    log = FsyncLog(monkeypatch)
    path = tmp_path / "layer" / "1"
    write_zarr3_mag(path, np.ones((32, 32, 32), np.uint8), 32, 32)
    first = (path / "zarr.json").read_text()
    write_zarr3_mag(path, np.ones((32, 32, 64), np.uint16), 32, 32)  # over the old array
    second = (path / "zarr.json").read_text()
    assert first != second and '"uint16"' in second
    assert stat.S_IMODE((path / "zarr.json").stat().st_mode) == new_file_mode()
    assert _leftovers(tmp_path) == [] and log.calls == []


def test_convert_does_not_fsync_per_chunk(tmp_path, monkeypatch):
    from napari_knossos.processing.convert import convert_dataset

    _segmentation(tmp_path)
    log = FsyncLog(monkeypatch)
    dst = convert_dataset(tmp_path / "ds", tmp_path / "out", to="wk-zarr3", chunk=32, shard=32,
                          downsample=False, scheduler="threads", progress=False)
    chunk_files = [p for p in Path(dst).rglob("*") if p.is_file() and p.parent.name != "out"
                   and p.name not in ("zarr.json", "datasource-properties.json")]
    assert len(chunk_files) >= 8
    assert log.calls == []
    assert _leftovers(tmp_path) == []


def test_convert_chunk_writers_are_not_durable(tmp_path):
    from napari_knossos.processing.volumes import MagTarget

    _segmentation(tmp_path)
    target = MagTarget("zarr", str(tmp_path / "ds" / "seg"), "1", np.dtype(np.uint32), 1, (64, 64, 64), (32, 32, 32),
                       dims=(("c", 0), ("x", 1), ("y", 2), ("z", 3)), token="t")
    assert target.writer().durable is False
