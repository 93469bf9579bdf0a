"""mergelist.txt: exact grammar, KNOSSOS writer quirks, byte-exact round trips."""

import json
import zipfile
from pathlib import Path

import pytest

from napari_knossos.annotation.mergelist import SegmentObject, read_mergelist, write_mergelist

DATA = Path(__file__).parent / "data" / "kzip"


def fixture_text() -> str:
    with zipfile.ZipFile(DATA / "synthetic.k.zip") as zf:
        return zf.read("mergelist.txt").decode()


def test_fixture_objects_match_expected():
    expected = json.loads((DATA / "expected.json").read_text())["mergelist_objects"]
    objects = read_mergelist(fixture_text())
    assert len(objects) == len(expected)
    for obj, exp in zip(objects, expected):
        assert obj.id == exp["id"]
        assert int(obj.todo) == exp["todo"] and int(obj.immutable) == exp["immutable"]
        assert obj.supervoxels == exp["supervoxels"]
        assert list(obj.position) == exp["position"]
        assert (None if obj.color is None else list(obj.color)) == exp["color"]
        assert obj.category == exp["category"] and obj.comment == exp["comment"]


def test_fixture_round_trip_is_byte_exact():
    text = fixture_text()
    assert write_mergelist(read_mergelist(text)) == text
    assert write_mergelist(read_mergelist(text.encode())) == text


def test_writer_quirks():
    objs = [
        SegmentObject(id=7, supervoxels=[9, 2**64 - 1], position=(-3, 0, 2**31 - 1), category="a\nb",
                      comment="line1\r\nline2"),
        SegmentObject(id=8, todo=True, immutable=True, supervoxels=[8], position=(1, 2, 3), color=(0, 128, 255)),
    ]
    text = write_mergelist(objs)
    assert text == (f"7 0 0 9 {2**64 - 1}\n-3 0 {2**31 - 1} \na b\nline1 line2\n"
                    "8 1 1 8\n1 2 3 0 128 255\n\n\n")
    again = read_mergelist(text)
    assert again[0].supervoxels == [9, 2**64 - 1] and again[0].category == "a b"
    assert again[1].color == (0, 128, 255) and again[1].todo and again[1].immutable
    assert write_mergelist(again) == text
    with pytest.raises(ValueError, match="object 5 has no supervoxel"):
        write_mergelist([SegmentObject(id=5)])


def test_knossos_utils_generated_list_and_crlf():
    # knossos_utils writes "{id} 0 0 {id}\n{x} {y} {z}\n\n\n" (no trailing space)
    objs = read_mergelist("4 0 0 4\n1 2 3\n\n\n5 0 0 5\r\n4 5 6\r\n\r\nc\r\n\n")
    assert [o.id for o in objs] == [4, 5]
    assert objs[1].position == (4, 5, 6) and objs[1].comment == "c"
    assert read_mergelist("") == []


@pytest.mark.parametrize("text, line", [
    ("1 0 0\n1 2 3 \n\n\n", 1),                      # no supervoxel
    ("1 0 0 2\n1 2 3 \n\n\n1 2 0 4\n1 2 3 \n\n\n", 5),  # todo not 0/1
    ("1 0 0 2\n1 2 3 \n\n\n2 0 0 x\n0 0 0 \n\n\n", 5),  # non-integer supervoxel
    ("1 0 0 2\n1 2\n\n\n", 2),                       # short position
    ("1 0 0 2\n1 2 3 4\n\n\n", 2),                   # partial colour
    ("1 0 0 2\n1 2 3 4 5 256\n\n\n", 2),             # colour out of range
    ("1 0 0 2\n1 2 99999999999\n\n\n", 2),           # int32 overflow
    ("1 0 0 -2\n1 2 3 \n\n\n", 1),                   # negative id
    ("1 0 0 1_0\n1 2 3 \n\n\n", 1),                  # Python-only integer syntax
    ("1 0 0 2\n1 2 3 \ncat\n", 1),                   # truncated record
])
def test_malformed_records_name_the_line(text, line):
    with pytest.raises(ValueError, match=rf"mergelist.txt: line {line}\b"):
        read_mergelist(text)
