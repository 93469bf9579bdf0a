"""Autosave, crash recovery files and KNOSSOS revision names (pure Python; the Qt timer that
calls :meth:`Autosaver.due` lives in the widget).

KNOSSOS autosaves every 5 minutes when there are unsaved changes (Preferences → Save;
knossos-project/knossos:annotation/annotation.cpp ``autoSaveTimer``), by a normal save that,
with "auto increment" on, bumps the file's revision number (annotation/file_io.cpp
``updatedFileName``). napari-knossos autosaves instead to a separate **recovery file**, so an
autosave never replaces the user's file nor piles up revisions:

* beside the annotation: ``cell.k.zip`` → ``cell.recovery.k.zip``; other names keep their
  suffix: ``cell.nml`` → ``cell.nml.recovery.k.zip``;
* in ``<user data dir>/recovery/`` when the annotation has no path yet
  (``untitled.recovery.k.zip``) or its folder is not writable
  (``<name>-<hash of the folder>.recovery.k.zip``, so equal names in different folders differ).

A recovery file counts only while it is newer (mtime) than the annotation file; the widget
discards it after a successful save and offers it on open (:func:`find_recovery`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .kzip import Annotation, write_kzip

__all__ = [
    "DEFAULT_AUTOSAVE_INTERVAL_S",
    "RECOVERY_SUFFIX",
    "Autosaver",
    "default_annotation_name",
    "discard_recovery",
    "find_recovery",
    "next_revision_path",
    "recovery_candidates",
    "recovery_path",
    "write_recovery",
]

DEFAULT_AUTOSAVE_INTERVAL_S = 300.0  # KNOSSOS default: 5 minutes
RECOVERY_SUFFIX = ".recovery.k.zip"
KZIP_SUFFIX = ".k.zip"
UNTITLED = "untitled"
# KNOSSOS: the first ".NNN." (exactly three digits) in the name; we also accept it at the end
_REVISION = re.compile(r"\.(?P<number>[0-9]{3})(?=\.|$)")


# -- revision names -----------------------------------------------------------------------
def default_annotation_name(now: datetime | None = None) -> str:
    """KNOSSOS' default file name ``annotation-YYYYMMDDTHHMM.000.k.zip`` (local time)."""
    now = now or datetime.now()
    return now.strftime("annotation-%Y%m%dT%H%M.000.k.zip")


def next_revision_path(path) -> Path:
    """The path with its revision bumped, as KNOSSOS' "auto increment" does on save.

    The revision is the first ``.NNN.`` (exactly three digits) in the file name, or ``.NNN`` at
    its end: ``annotation-20260101T1200.003.k.zip`` → ``….004.k.zip``, zero-padded to three
    digits (``.999.`` → ``.1000.``, which, as in KNOSSOS, is not recognised again). Without a
    revision ``.001`` is inserted before the suffix (``.k.zip`` or the last one):
    ``cell.k.zip`` → ``cell.001.k.zip``. Only the file name changes, never a folder.
    """
    p = Path(path)
    name = p.name
    if not name:
        raise ValueError(f"{str(path)!r} has no file name to number")
    match = _REVISION.search(name)
    if match:
        number = int(match.group("number")) + 1
        new = f"{name[: match.start('number')]}{number:03d}{name[match.end('number') :]}"
    else:
        suffix = name[-len(KZIP_SUFFIX) :] if name.lower().endswith(KZIP_SUFFIX) else p.suffix
        new = f"{name[: len(name) - len(suffix)]}.001{suffix}"
    return p.with_name(new)


# -- recovery files -----------------------------------------------------------------------
def _recovery_name(annotation: Path) -> str:
    name = annotation.name
    if name.lower().endswith(KZIP_SUFFIX):
        name = name[: -len(KZIP_SUFFIX)]
    return name + RECOVERY_SUFFIX


def _data_dir_candidate(annotation: Path | None, user_data_dir) -> Path:
    folder = Path(user_data_dir) / "recovery"
    if annotation is None:
        return folder / (UNTITLED + RECOVERY_SUFFIX)
    digest = hashlib.sha256(os.fsencode(annotation.parent)).hexdigest()[:8]
    name = _recovery_name(annotation)
    return folder / f"{name[: -len(RECOVERY_SUFFIX)]}-{digest}{RECOVERY_SUFFIX}"


def _writable_dir(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _absolute(annotation_path) -> Path | None:
    if annotation_path is None or str(annotation_path) == "":
        return None
    return Path(annotation_path).expanduser().absolute()


def recovery_path(annotation_path, user_data_dir) -> Path:
    """Where to autosave ``annotation_path`` (None: an annotation never saved); see the module
    docstring for the rule."""
    annotation = _absolute(annotation_path)
    if annotation is not None and _writable_dir(annotation.parent):
        return annotation.parent / _recovery_name(annotation)
    return _data_dir_candidate(annotation, user_data_dir)


def write_recovery(annotation: Annotation, path) -> Path:
    """Write ``annotation`` as a .k.zip to ``path`` atomically (creating its folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_kzip(annotation, target)
    return target


def recovery_candidates(annotation_path, user_data_dir) -> list[Path]:
    """Every place a recovery file of ``annotation_path`` may be (beside it, in the data dir),
    whether it exists or not: after a save the widget discards them all."""
    annotation = _absolute(annotation_path)
    candidates = [_data_dir_candidate(annotation, user_data_dir)]
    if annotation is not None:
        candidates.insert(0, annotation.parent / _recovery_name(annotation))
    return candidates


def find_recovery(annotation_path, user_data_dir) -> Path | None:
    """A recovery file of ``annotation_path`` newer than the annotation file (the newest of
    :func:`recovery_candidates`), or None. Without an annotation file (None or missing) any
    recovery file found counts."""
    annotation = _absolute(annotation_path)
    candidates = recovery_candidates(annotation, user_data_dir)
    try:
        saved_ns = annotation.stat().st_mtime_ns if annotation is not None else None
    except FileNotFoundError:
        saved_ns = None
    best: tuple[int, Path] | None = None
    for candidate in candidates:
        try:
            mtime_ns = candidate.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if (saved_ns is None or mtime_ns > saved_ns) and (best is None or mtime_ns > best[0]):
            best = (mtime_ns, candidate)
    return None if best is None else best[1]


def discard_recovery(path) -> bool:
    """Delete a recovery file; True if one was deleted (None or a missing file: False)."""
    if path is None:
        return False
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    return True


# -- timing ---------------------------------------------------------------------------------
class Autosaver:
    """When to autosave: every ``interval_s`` seconds since the last save, if there are unsaved
    changes (KNOSSOS: default 5 minutes, only with unsaved changes). ``clock`` returns seconds
    (monotonic); injectable for tests. The interval starts at construction."""

    def __init__(
        self,
        interval_s: float = DEFAULT_AUTOSAVE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.interval_s = float(interval_s)
        self.enabled = enabled
        self._clock = clock
        self._last = clock()

    def seconds_until_due(self) -> float:
        """Seconds left in the current interval (0 when it has passed)."""
        return max(self.interval_s - (self._clock() - self._last), 0.0)

    def due(self, dirty: bool) -> bool:
        """True when enabled, ``dirty`` and the interval has passed since the last save."""
        return self.enabled and dirty and self.seconds_until_due() == 0.0

    def mark_done(self) -> None:
        """A save happened (an autosave or the user's own): the interval starts again."""
        self._last = self._clock()
