"""Working time with idle detection: a fake clock drives real sequences of user actions; the
result goes into the NML ``<time ms checksum>`` and back."""

import hashlib
import re
import struct
from pathlib import Path

import pytest

from napari_knossos.annotation.nml import read_nml, write_nml
from napari_knossos.annotation.skeleton import Skeleton
from napari_knossos.annotation.worktime import INT32_MAX, WorkTimer

FIXTURE = Path(__file__).parent / "data" / "nml" / "knossos_synthetic.nml"


class FakeClock:
    """Seconds, set by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(timer: WorkTimer, clock: FakeClock, offsets_s) -> None:
    """One activity at each offset (seconds after the clock's start)."""
    start = clock.now
    for offset in offsets_s:
        clock.now = start + offset
        timer.activity()


def test_activity_time_is_counted():
    clock = FakeClock()
    timer = WorkTimer(clock=clock)
    assert timer.elapsed_ms == 0
    timer.activity()  # counting starts here
    clock.now += 7.25
    assert timer.elapsed_ms == 7250  # pending time is visible live
    timer.activity()
    clock.now += 30
    timer.activity()
    assert timer.elapsed_ms == 37250


def test_start_value_is_continued():
    clock = FakeClock()
    timer = WorkTimer(start_ms=90_000, clock=clock)
    run(timer, clock, [0, 12, 24.5])
    assert timer.elapsed_ms == 90_000 + 24_500


def test_idle_gaps_count_only_up_to_the_timeout():
    clock = FakeClock()
    timer = WorkTimer(idle_timeout_s=60, clock=clock)
    # 10 s work, a 10-minute break, 5 s work, a 61 s pause, 2 s work
    run(timer, clock, [0, 10, 610, 615, 676, 678])
    assert timer.elapsed_ms == (10 + 60 + 5 + 60 + 2) * 1000
    timer = WorkTimer(idle_timeout_s=300, clock=clock)
    run(timer, clock, [0, 10, 610, 615, 676, 678])
    assert timer.elapsed_ms == (10 + 300 + 5 + 61 + 2) * 1000


def test_live_value_never_decreases_and_stops_at_the_timeout():
    clock = FakeClock()
    timer = WorkTimer(idle_timeout_s=60, clock=clock)
    timer.activity()
    start = clock.now
    samples = []
    for tenth in range(0, 3000, 7):  # 0 … 300 s after the only activity
        clock.now = start + tenth / 10
        samples.append(timer.elapsed_ms)
    assert samples == sorted(samples)
    assert samples[-1] == 60_000
    assert timer.idle
    clock.now = start + 400
    timer.activity()  # the break counted 60 s, the new activity starts a new gap
    assert timer.elapsed_ms == 60_000 and not timer.idle


def test_pause_and_resume():
    clock = FakeClock()
    timer = WorkTimer(clock=clock)
    run(timer, clock, [0, 20])
    timer.pause()
    assert timer.paused
    clock.now += 100
    timer.activity()  # ignored while paused
    assert timer.elapsed_ms == 20_000
    timer.resume()
    clock.now += 100
    timer.activity()  # counting restarts here: the paused time does not count
    clock.now += 30
    timer.activity()
    assert timer.elapsed_ms == 50_000 and not timer.paused


def test_pause_keeps_the_time_since_the_last_activity():
    clock = FakeClock()
    timer = WorkTimer(clock=clock)
    timer.activity()
    clock.now += 15
    timer.pause()
    clock.now += 500
    assert timer.elapsed_ms == 15_000
    timer.pause()  # twice: no change
    assert timer.elapsed_ms == 15_000


def test_reset():
    clock = FakeClock()
    timer = WorkTimer(clock=clock)
    run(timer, clock, [0, 40])
    timer.reset(5_000)
    clock.now += 20
    assert timer.elapsed_ms == 5_000  # not counting until the next activity
    timer.activity()
    clock.now += 1
    assert timer.elapsed_ms == 6_000
    with pytest.raises(ValueError, match="negative"):
        timer.reset(-1)


def knossos_checksum(ms: int) -> str:
    return hashlib.sha256(struct.pack("<i", ms)).hexdigest()


def test_apply_to_writes_the_nml_time(tmp_path):
    skel = read_nml(FIXTURE)
    assert skel.dialect == "knossos" and skel.parameters.time_ms == 0
    clock = FakeClock()
    timer = WorkTimer.from_skeleton(skel, clock=clock)
    run(timer, clock, [0, 45.5, 90.25])
    version = skel.version
    assert timer.apply_to(skel) == 90_250
    assert skel.parameters.time_ms == 90_250 and skel.version == version
    path = tmp_path / "timed.nml"
    write_nml(skel, path, dialect="knossos")
    element = re.search(rb"<time [^>]*>", path.read_bytes()).group(0).decode()
    assert f'ms="{90_250}"' in element and f'checksum="{knossos_checksum(90_250)}"' in element
    again = read_nml(path)
    assert again.parameters.time_ms == 90_250
    assert WorkTimer.from_skeleton(again, clock=clock).elapsed_ms == 90_250


def test_webknossos_time_is_a_timestamp_not_working_time():
    skel = Skeleton()
    skel.dialect = "webknossos"
    skel.parameters.time_ms = 1_700_000_000_000  # creation time, Unix ms
    clock = FakeClock()
    timer = WorkTimer.from_skeleton(skel, clock=clock)
    assert timer.elapsed_ms == 0
    run(timer, clock, [0, 3])
    assert timer.apply_to(skel) is None
    assert skel.parameters.time_ms == 1_700_000_000_000
    assert timer.apply_to(skel, force=True) == 3_000 and skel.parameters.time_ms == 3_000


def test_clamped_to_int32_like_knossos():
    clock = FakeClock()
    timer = WorkTimer(start_ms=INT32_MAX - 1_000, clock=clock)
    run(timer, clock, [0, 30])
    skel = Skeleton()
    assert timer.elapsed_ms == INT32_MAX - 1_000 + 30_000
    assert timer.apply_to(skel) == INT32_MAX == 2**31 - 1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="idle_timeout_s"):
        WorkTimer(idle_timeout_s=0)
    with pytest.raises(ValueError, match="start_ms"):
        WorkTimer(start_ms=-5)


def test_real_clock_default():
    timer = WorkTimer()
    timer.activity()
    timer.activity()
    assert 0 <= timer.elapsed_ms < 1_000
    assert "WorkTimer(" in repr(timer)
