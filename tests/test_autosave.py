"""Recovery files (where, write, find, discard), the autosave schedule and KNOSSOS revision
names."""

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.autosave import (
    RECOVERY_SUFFIX,
    Autosaver,
    default_annotation_name,
    discard_recovery,
    find_recovery,
    next_revision_path,
    recovery_candidates,
    recovery_path,
    write_recovery,
)
from napari_knossos.annotation.kzip import Annotation, read_kzip, write_kzip
from napari_knossos.annotation.nml import read_nml

FIXTURE = Path(__file__).parent / "data" / "nml" / "knossos_synthetic.nml"


def annotation() -> Annotation:
    return Annotation(skeleton=read_nml(FIXTURE), extra_files={"notes.txt": b"keep me"})


def set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, ns=(int(seconds * 1e9), int(seconds * 1e9)))


# -- where --------------------------------------------------------------------------------
def test_recovery_beside_a_writable_annotation(tmp_path):
    data = tmp_path / "data"
    assert recovery_path(tmp_path / "cell.k.zip", data) == tmp_path / "cell.recovery.k.zip"
    assert recovery_path(tmp_path / "cell.003.k.zip", data) == tmp_path / "cell.003.recovery.k.zip"
    assert recovery_path(str(tmp_path / "cell.nml"), data) == tmp_path / "cell.nml.recovery.k.zip"
    assert recovery_path(tmp_path / "CELL.K.ZIP", data) == tmp_path / "CELL.recovery.k.zip"


def test_recovery_in_the_data_dir_without_a_path(tmp_path):
    data = tmp_path / "data"
    assert recovery_path(None, data) == data / "recovery" / ("untitled" + RECOVERY_SUFFIX)
    assert recovery_path("", data) == data / "recovery" / ("untitled" + RECOVERY_SUFFIX)


def test_recovery_in_the_data_dir_when_the_folder_is_unusable(tmp_path):
    data = tmp_path / "data"
    gone_a, gone_b = tmp_path / "gone_a" / "cell.k.zip", tmp_path / "gone_b" / "cell.k.zip"
    a, b = recovery_path(gone_a, data), recovery_path(gone_b, data)
    assert a.parent == b.parent == data / "recovery"
    assert a.name.startswith("cell-") and a.name.endswith(RECOVERY_SUFFIX)
    assert a != b  # same name, different folders
    assert recovery_path(gone_a, data) == a  # stable


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_recovery_in_the_data_dir_when_the_folder_is_read_only(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert recovery_path(folder / "cell.k.zip", tmp_path / "data").parent == tmp_path / "data" / "recovery"
    finally:
        folder.chmod(0o755)


# -- write, find, discard ---------------------------------------------------------------------
def test_write_recovery_round_trip(tmp_path):
    ann = annotation()
    target = recovery_path(None, tmp_path / "data")  # folder does not exist yet
    assert write_recovery(ann, target) == target
    back = read_kzip(target)
    for column in ("id", "tree", "x", "y", "z"):
        np.testing.assert_array_equal(back.skeleton.nodes[column], ann.skeleton.nodes[column])
    assert back.skeleton.trees[3].properties == ann.skeleton.trees[3].properties  # the synapse
    assert back.extra_files == {"notes.txt": b"keep me"}
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp file left


def test_find_recovery_only_when_newer(tmp_path):
    data = tmp_path / "data"
    path = tmp_path / "cell.k.zip"
    write_kzip(annotation(), path)
    set_mtime(path, 1_000_000)
    assert find_recovery(path, data) is None
    rec = write_recovery(annotation(), recovery_path(path, data))
    set_mtime(rec, 1_000_060)
    assert find_recovery(path, data) == rec
    set_mtime(rec, 999_000)  # the user saved after the autosave
    assert find_recovery(path, data) is None
    set_mtime(rec, 1_000_000)  # same time: not newer
    assert find_recovery(path, data) is None


def test_find_recovery_newest_of_both_places(tmp_path):
    data = tmp_path / "data"
    path = tmp_path / "cell.k.zip"
    write_kzip(annotation(), path)
    set_mtime(path, 1_000_000)
    beside, in_data = recovery_candidates(path, data)
    assert beside == recovery_path(path, data) == tmp_path / "cell.recovery.k.zip"
    assert in_data.parent == data / "recovery"  # where it went while the folder was not writable
    write_recovery(annotation(), beside)
    set_mtime(beside, 1_000_100)
    assert find_recovery(path, data) == beside
    write_recovery(annotation(), in_data)
    set_mtime(in_data, 1_000_200)
    assert find_recovery(path, data) == in_data
    set_mtime(in_data, 1_000_050)
    assert find_recovery(path, data) == beside
    assert [discard_recovery(p) for p in recovery_candidates(path, data)] == [True, True]
    assert find_recovery(path, data) is None


def test_find_recovery_without_annotation_file(tmp_path):
    data = tmp_path / "data"
    assert find_recovery(None, data) is None
    rec = write_recovery(annotation(), recovery_path(None, data))
    assert find_recovery(None, data) == rec
    never_saved = tmp_path / "new.k.zip"  # path chosen, file not written yet
    rec2 = write_recovery(annotation(), recovery_path(never_saved, data))
    assert find_recovery(never_saved, data) == rec2


def test_discard_recovery(tmp_path):
    rec = write_recovery(annotation(), tmp_path / "a.recovery.k.zip")
    assert discard_recovery(rec) is True
    assert not rec.exists()
    assert discard_recovery(rec) is False
    assert discard_recovery(None) is False


# -- schedule -------------------------------------------------------------------------------
class FakeClock:
    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_autosaver_schedule():
    clock = FakeClock()
    saver = Autosaver(interval_s=300, clock=clock)
    clock.now += 299
    assert not saver.due(dirty=True)
    assert saver.seconds_until_due() == pytest.approx(1)
    clock.now += 1
    assert saver.due(dirty=True)
    assert not saver.due(dirty=False)  # nothing to save
    saver.mark_done()
    assert not saver.due(dirty=True)
    assert saver.seconds_until_due() == 300
    clock.now += 120
    saver.mark_done()  # the user saved: the interval starts again
    clock.now += 200
    assert not saver.due(dirty=True)
    clock.now += 100
    assert saver.due(dirty=True)
    saver.enabled = False
    assert not saver.due(dirty=True)


def test_autosaver_defaults_and_errors():
    saver = Autosaver()
    assert saver.interval_s == 300 and saver.enabled
    assert not saver.due(dirty=True)
    with pytest.raises(ValueError, match="interval_s"):
        Autosaver(interval_s=0)


# -- revision names ---------------------------------------------------------------------------
def test_default_name_and_revision_sequence():
    name = default_annotation_name(datetime(2026, 1, 1, 12, 0))
    assert name == "annotation-20260101T1200.000.k.zip"
    path = Path("/work") / name
    for revision in range(1, 12):
        path = next_revision_path(path)
        assert path == Path("/work") / f"annotation-20260101T1200.{revision:03d}.k.zip"
    assert default_annotation_name().startswith("annotation-")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("annotation-20260101T1200.003.k.zip", "annotation-20260101T1200.004.k.zip"),
        ("cell.k.zip", "cell.001.k.zip"),  # no revision: inserted before the suffix
        ("CELL.K.ZIP", "CELL.001.K.ZIP"),
        ("cell.nml", "cell.001.nml"),
        ("cell", "cell.001"),
        ("cell.001", "cell.002"),
        ("a.009.b.010.k.zip", "a.010.b.010.k.zip"),  # the first one, as KNOSSOS
        ("x.099.k.zip", "x.100.k.zip"),
        ("x.999.k.zip", "x.1000.k.zip"),  # KNOSSOS pads to three digits, not more
        ("cell.2024.k.zip", "cell.2024.001.k.zip"),  # four digits are not a revision
        ("cell.12.k.zip", "cell.12.001.k.zip"),
    ],
)
def test_next_revision_path(before, after):
    assert next_revision_path(before) == Path(after)


def test_revision_changes_only_the_file_name(tmp_path):
    folder = tmp_path / "v.005.d"
    assert next_revision_path(folder / "cell.k.zip") == folder / "cell.001.k.zip"
    with pytest.raises(ValueError, match="file name"):
        next_revision_path("/")
