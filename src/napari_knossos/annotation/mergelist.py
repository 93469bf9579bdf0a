"""KNOSSOS ``mergelist.txt``: segmentation objects made of supervoxels.

Four lines per object (knossos-project/knossos:segmentation/segmentation.cpp ``mergelistSave`` /
``mergelistLoad``)::

    <objId> <todo 0|1> <immutable 0|1> <svId> {' ' <svId>}
    <x> <y> <z> [' ' <r> <g> <b>]
    <category>
    <comment>

The writer reproduces KNOSSOS byte for byte, including the trailing space after ``x y z`` when an
object has no colour; newlines inside category/comment become spaces. Pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["SegmentObject", "read_mergelist", "write_mergelist"]

_UINT64_MAX = 2**64 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass
class SegmentObject:
    """One merged segmentation object. ``position`` is (x, y, z) in mag-1 voxels (0-based),
    ``color`` (r, g, b) 0-255 or None for the default colour."""

    id: int
    todo: bool = False
    immutable: bool = False
    supervoxels: list[int] = field(default_factory=list)
    position: tuple[int, int, int] = (0, 0, 0)
    color: tuple[int, int, int] | None = None
    category: str = ""
    comment: str = ""


def _int(token: str, lo: int, hi: int, what: str) -> int:
    if not _INTEGER.fullmatch(token):
        raise ValueError(f"{what} {token!r} is not an integer")
    value = int(token)
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} is outside [{lo}, {hi}]")
    return value


def _flag(token: str, what: str) -> bool:
    if token not in ("0", "1"):
        raise ValueError(f"{what} must be 0 or 1, not {token!r}")
    return token == "1"


def _parse_ids(line: str) -> tuple[int, bool, bool, list[int]]:
    tokens = line.split()
    if len(tokens) < 4:
        raise ValueError("first line needs '<objId> <todo> <immutable> <supervoxel id> ...' "
                         f"(at least one supervoxel), got {line!r}")
    obj_id = _int(tokens[0], 0, _UINT64_MAX, "object id")
    todo = _flag(tokens[1], "todo")
    immutable = _flag(tokens[2], "immutable")
    supervoxels = [_int(t, 0, _UINT64_MAX, "supervoxel id") for t in tokens[3:]]
    return obj_id, todo, immutable, supervoxels


def _parse_position(line: str) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
    tokens = line.split()
    if len(tokens) not in (3, 6):
        raise ValueError(f"second line needs 'x y z' or 'x y z r g b', got {line!r}")
    x, y, z = (_int(t, _INT32_MIN, _INT32_MAX, "coordinate") for t in tokens[:3])
    color = None
    if len(tokens) == 6:
        r, g, b = (_int(t, 0, 255, "colour component") for t in tokens[3:])
        color = (r, g, b)
    return (x, y, z), color


def read_mergelist(text: str | bytes, name: str = "mergelist.txt") -> list[SegmentObject]:
    """Parse a mergelist; ValueError naming ``name`` and the line of the malformed record.

    ``\\r\\n`` line ends are accepted (KNOSSOS opens the file in text mode); blank lines after
    the last record are ignored.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line end
    lines = [ln.removesuffix("\r") for ln in lines]
    while lines and not lines[-1].strip() and len(lines) % 4:
        lines.pop()  # trailing blank lines that cannot be the end of a record
    objects: list[SegmentObject] = []
    for start in range(0, len(lines), 4):
        record = lines[start:start + 4]
        line_no = start + 1
        if len(record) < 4:
            raise ValueError(f"{name}: line {line_no}: record has {len(record)} of 4 lines "
                             "(ids, position, category, comment)")
        try:
            obj_id, todo, immutable, supervoxels = _parse_ids(record[0])
        except ValueError as err:
            raise ValueError(f"{name}: line {line_no}: {err}") from None
        try:
            position, color = _parse_position(record[1])
        except ValueError as err:
            raise ValueError(f"{name}: line {line_no + 1} (record at line {line_no}): {err}") from None
        objects.append(SegmentObject(id=obj_id, supervoxels=supervoxels, todo=todo, immutable=immutable,
                                     position=position, color=color, category=record[2], comment=record[3]))
    return objects


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def write_mergelist(objects) -> str:
    """Serialize ``objects`` exactly as KNOSSOS does (``\\n`` line ends, trailing space without colour)."""
    out: list[str] = []
    for obj in objects:
        if not obj.supervoxels:
            raise ValueError(f"mergelist object {obj.id} has no supervoxel (KNOSSOS needs at least one)")
        ids = " ".join(str(int(s)) for s in obj.supervoxels)
        out.append(f"{int(obj.id)} {int(bool(obj.todo))} {int(bool(obj.immutable))} {ids}\n")
        x, y, z = (int(v) for v in obj.position)
        if obj.color is None:
            out.append(f"{x} {y} {z} \n")
        else:
            r, g, b = (int(v) for v in obj.color)
            out.append(f"{x} {y} {z} {r} {g} {b}\n")
        out.append(_one_line(obj.category) + "\n")
        out.append(_one_line(obj.comment) + "\n")
    return "".join(out)
