"""The .k.zip container: fixture values, round trips, cubes, meshes, merged NMLs and hostile archives."""

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.kzip import Annotation, KZipWarning, SegmentationCube, read_kzip, write_kzip
from napari_knossos.annotation.mergelist import SegmentObject
from napari_knossos.annotation.nml import read_nml

DATA = Path(__file__).parent / "data" / "kzip"
FIXTURE = DATA / "synthetic.k.zip"
EXPECTED = json.loads((DATA / "expected.json").read_text())
TINY = (32, 32, 32)


def members(data) -> dict[str, bytes]:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with zipfile.ZipFile(src) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def fixture_members() -> dict[str, bytes]:
    return members(FIXTURE.read_bytes())


def assert_same_skeleton(a, b):
    assert sorted(a.trees) == sorted(b.trees)
    for tid, ta in a.trees.items():
        tb = b.trees[tid]
        assert (ta.name, ta.color, ta.visible, ta.properties) == (tb.name, tb.color, tb.visible, tb.properties)
    for col in a.nodes:
        np.testing.assert_array_equal(a.nodes[col], b.nodes[col], err_msg=col)
    assert sorted(map(tuple, a.edges.tolist())) == sorted(map(tuple, b.edges.tolist()))
    assert a.comments == b.comments
    assert [n for n, _ in a.branchpoints] == [n for n, _ in b.branchpoints]
    assert a.node_properties == b.node_properties
    pa, pb = a.parameters, b.parameters
    assert (pa.experiment, pa.scale, pa.active_node, pa.edit_position) == \
        (pb.experiment, pb.scale, pb.active_node, pb.edit_position)


def assert_same_annotation(a: Annotation, b: Annotation):
    assert_same_skeleton(a.skeleton, b.skeleton)
    assert a.objects == b.objects
    assert sorted(a.meshes) == sorted(b.meshes)
    assert all(a.meshes[t].equals(b.meshes[t]) for t in a.meshes)
    assert a.mesh_members == b.mesh_members
    assert sorted(a.cubes) == sorted(b.cubes)
    for key, cube in a.cubes.items():
        if cube.decodable:
            np.testing.assert_array_equal(cube.array, b.cubes[key].array)
        else:
            assert cube.payload == b.cubes[key].payload and not b.cubes[key].decodable
    assert (a.settings_ini, a.microworker, a.extra_files) == (b.settings_ini, b.microworker, b.extra_files)


# -- the fixture --------------------------------------------------------------------------------
def test_fixture_every_expected_value():
    ann = read_kzip(FIXTURE, cube_shape=TINY)
    raw = fixture_members()
    # skeleton: the annotation.xml member read by read_nml, with the expected node positions
    assert_same_skeleton(ann.skeleton, read_nml(raw["annotation.xml"]))
    skel = ann.skeleton
    for nid, pos in EXPECTED["nml_nodes_zero_based"].items():
        np.testing.assert_array_equal(skel.position(int(nid)), pos)
    assert skel.synapses() == [EXPECTED["synapse"]]
    assert [n for n, _ in skel.branchpoints] == EXPECTED["branchpoints"]
    # mergelist objects exactly
    expected_objects = [SegmentObject(id=o["id"], todo=bool(o["todo"]), immutable=bool(o["immutable"]),
                                      supervoxels=o["supervoxels"], position=tuple(o["position"]),
                                      color=None if o["color"] is None else tuple(o["color"]),
                                      category=o["category"], comment=o["comment"])
                        for o in EXPECTED["mergelist_objects"]]
    assert ann.objects == expected_objects
    # the PLY mesh of tree 1
    assert list(ann.meshes) == [1] and ann.mesh_members == {}
    assert ann.meshes[1].vertices.shape == (4, 3) and ann.meshes[1].faces.shape == (2, 3)
    # the edited segmentation cube (mag 1, cube 0,0,0) of experiment "tiny"
    assert list(ann.cubes) == [(1, 0, 0, 0)] and ann.experiment == "tiny"
    z, y, x = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    expected = 1 + x // 16 + 2 * (y // 16) + 4 * (z // 16)
    cube = ann.cubes[(1, 0, 0, 0)].array
    assert cube.dtype == np.uint64 and cube.shape == (32, 32, 32)
    np.testing.assert_array_equal(cube, expected)
    for key, value in EXPECTED["seg_samples_mag1"].items():
        xx, yy, zz = map(int, key.split(","))
        assert cube[zz, yy, xx] == value
    # settings.ini kept verbatim, nothing else left over
    assert ann.settings_ini == raw["settings.ini"]
    assert ann.microworker is None and ann.job is None
    assert ann.extra_files == {}


def test_fixture_round_trip(tmp_path):
    ann = read_kzip(FIXTURE, cube_shape=TINY)
    out = tmp_path / "out.k.zip"
    write_kzip(ann, out)
    assert [p.name for p in tmp_path.iterdir()] == ["out.k.zip"]  # no temp file left behind
    written = members(out.read_bytes())
    assert list(written) == ["annotation.xml", "mergelist.txt", "1.ply", "tiny_mag1x0y0z0.seg.sz", "settings.ini"]
    raw = fixture_members()
    for name in ("mergelist.txt", "tiny_mag1x0y0z0.seg.sz", "settings.ini"):
        assert written[name] == raw[name], name  # byte-exact
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    again = read_kzip(out, cube_shape=TINY)
    assert_same_annotation(ann, again)
    # a second pass is member-exact
    write_kzip(again, out)
    assert members(out.read_bytes()) == written
    assert members(write_kzip(read_kzip(out, cube_shape=TINY))) == written


def test_write_is_atomic_and_replaces(tmp_path):
    out = tmp_path / "a.k.zip"
    out.write_bytes(b"old content")
    ann = read_kzip(FIXTURE.read_bytes(), cube_shape=TINY)
    ann.meshes[99] = ann.meshes[1]  # a mesh whose tree is gone: warns, still written
    with pytest.warns(KZipWarning, match="tree 99"):
        write_kzip(ann, out)
    assert "99.ply" in members(out.read_bytes())
    del ann.meshes[99]
    ann.extra_files["x.txt"] = b"1"
    ann.extra_files["annotation.xml"] = b"clash"
    with pytest.raises(ValueError, match="two members named 'annotation.xml'"):
        write_kzip(ann, out)
    assert "99.ply" in members(out.read_bytes())  # the failed write left the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.k.zip"]


# -- segmentation cubes -------------------------------------------------------------------------
def test_cube_axis_order_edit_and_legacy_name():
    import cramjam

    shape = (16, 8, 4)  # x, y, z
    z, y, x = np.meshgrid(np.arange(4), np.arange(8), np.arange(16), indexing="ij")
    ids = (x + 100 * y + 10000 * z + 2**40).astype("<u8")
    payload = bytes(cramjam.snappy.compress_raw(ids.tobytes()))  # x fastest on disk
    data = make_zip([("exp_name_mag2x3y4z5.segmentation.snappy", payload), ("annotation.xml", b"<things/>")])
    ann = read_kzip(data, cube_shape=shape)
    cube = ann.cubes[(2, 3, 4, 5)]
    assert ann.experiment == "exp_name" and cube.decodable
    np.testing.assert_array_equal(cube.array, ids)
    cube.array[0, 0, 0] = 7  # edit in place: re-encoded on write, under the .seg.sz name
    ann.cubes[(1, 0, 0, 1)] = SegmentationCube.from_array(np.full((4, 8, 16), 3))
    written = members(write_kzip(ann))
    assert "exp_name_mag2x3y4z5.seg.sz" in written and "exp_name_mag1x0y0z1.seg.sz" in written
    again = read_kzip(write_kzip(ann), cube_shape=shape)
    assert again.cubes[(2, 3, 4, 5)].array[0, 0, 0] == 7
    np.testing.assert_array_equal(again.cubes[(2, 3, 4, 5)].array.ravel()[1:], ids.ravel()[1:])
    np.testing.assert_array_equal(again.cubes[(1, 0, 0, 1)].array, 3)


def test_cube_of_wrong_size_is_kept_raw():
    fixture = fixture_members()
    with pytest.warns(KZipWarning, match="tiny_mag1x0y0z0.seg.sz.*needs"):
        ann = read_kzip(FIXTURE)  # default 128³ cube shape: the 32³ stream does not fit
    cube = ann.cubes[(1, 0, 0, 0)]
    assert not cube.decodable and cube.payload == fixture["tiny_mag1x0y0z0.seg.sz"]
    with pytest.raises(ValueError, match="tiny_mag1x0y0z0.seg.sz"):
        _ = cube.array
    garbage = make_zip([("e_mag1x0y0z0.seg.sz", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")])
    with pytest.warns(KZipWarning, match="e_mag1x0y0z0.seg.sz"):
        bad = read_kzip(garbage, cube_shape=TINY)
    assert not bad.cubes[(1, 0, 0, 0)].decodable
    written = members(write_kzip(ann))
    assert written["tiny_mag1x0y0z0.seg.sz"] == fixture["tiny_mag1x0y0z0.seg.sz"]  # unchanged name and bytes


# -- meshes, merged NMLs, other members -----------------------------------------------------------
def test_named_and_orphan_meshes():
    fixture = fixture_members()
    ply = fixture["1.ply"]
    data = make_zip([("annotation.xml", fixture["annotation.xml"]), ("sv.ply", ply), ("9.ply", ply),
                     ("bad.ply", b"ply\nformat ascii 1.0\nend_header\n")])
    with pytest.warns(KZipWarning, match="bad.ply"):
        ann = read_kzip(data, cube_shape=TINY)
    named = next(t for t in ann.skeleton.trees.values() if t.name == "sv.ply")
    assert named.id == 4  # KNOSSOS: a new tree, the file name as its comment
    assert ann.mesh_members == {4: "sv.ply"} and sorted(ann.meshes) == [4, 9]
    assert 9 in ann.skeleton.trees  # a numeric name for a missing tree creates that tree
    assert ann.extra_files == {"bad.ply": b"ply\nformat ascii 1.0\nend_header\n"}
    written = members(write_kzip(ann))
    assert list(written)[:2] == ["bad.ply", "annotation.xml"]  # extra files first
    assert {"sv.ply", "9.ply"} <= set(written)
    with pytest.warns(KZipWarning, match="bad.ply"):
        again = read_kzip(write_kzip(ann), cube_shape=TINY)
    assert_same_annotation(ann, again)  # no second "sv.ply" tree


def test_extra_nml_members_are_merged_with_shifted_ids():
    fixture = fixture_members()
    xml = fixture["annotation.xml"]
    data = make_zip([("annotation.xml", xml), ("more/extra.nml", xml)])
    ann = read_kzip(data, cube_shape=TINY)
    base = read_nml(xml)
    skel = ann.skeleton
    assert ann.merged_nml == ["more/extra.nml"] and ann.extra_files == {}
    assert sorted(skel.trees) == [1, 2, 3, 4, 5, 6]
    assert skel.nodes["id"].tolist() == list(range(1, 15))
    np.testing.assert_array_equal(skel.position(8), base.position(1))
    assert skel.tree_of(8) == 4 and skel.comments[8] == base.comments[1]
    assert skel.has_edge(8, 9) and len(skel.edges) == 2 * len(base.edges)
    assert [n for n, _ in skel.branchpoints] == [2, 9]
    assert {s["cleft_tree"]: (s["pre_node"], s["post_node"]) for s in skel.synapses()} == {3: (4, 5), 6: (11, 12)}
    assert skel.parameters.active_node == base.parameters.active_node
    again = read_kzip(write_kzip(ann), cube_shape=TINY)
    assert_same_skeleton(skel, again.skeleton) and again.merged_nml == []


def test_archive_without_annotation_xml_and_microworker():
    job = b"17\ncampaign A\nworker 9\nhttp://example.invalid/submit\n"
    data = make_zip([("mergelist.txt", "1 0 0 1\n0 0 0 \n\n\n"), ("microworker.txt", job), ("notes/readme.md", "hi")])
    ann = read_kzip(data)
    assert ann.skeleton.num_nodes == 0 and not ann.skeleton.trees
    assert ann.job == {"id": 17, "campaign": "campaign A", "worker": "worker 9",
                       "submit_path": "http://example.invalid/submit"}
    written = members(write_kzip(ann))
    assert list(written) == ["notes/readme.md", "annotation.xml", "mergelist.txt", "microworker.txt"]
    assert written["microworker.txt"] == job
    assert_same_annotation(ann, read_kzip(write_kzip(ann)))


def test_malformed_core_members_raise():
    with pytest.raises(ValueError, match="mergelist.txt.*line 1"):
        read_kzip(make_zip([("mergelist.txt", "1 0 0\n0 0 0 \n\n\n")]))
    with pytest.raises(ValueError, match="annotation.xml"):
        read_kzip(make_zip([("annotation.xml", "<things><thing")]))
    with pytest.raises(ValueError, match="not a zip"):
        read_kzip(b"PK\x03\x04 this is not really a zip")


# -- hostile archives ---------------------------------------------------------------------------
def patch_central_size(data: bytes, name: str, size: int) -> bytes:
    """Make the central directory declare ``size`` uncompressed bytes for ``name``."""
    buf = bytearray(data)
    eocd = buf.rindex(b"PK\x05\x06")
    entries, _, pos = struct.unpack_from("<HII", buf, eocd + 10)
    for _ in range(entries):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", buf, pos + 28)
        if bytes(buf[pos + 46:pos + 46 + name_len]).decode() == name:
            struct.pack_into("<I", buf, pos + 24, size)
            return bytes(buf)
        pos += 46 + name_len + extra_len + comment_len
    raise KeyError(name)


def test_hostile_archive(tmp_path):
    marker = tmp_path / "pwned.txt"
    script = f"open({str(marker)!r}, 'w').write('executed')\n".encode()
    good_mergelist = "1 0 0 1\n0 0 0 \n\n\n"
    bomb = b"\0" * (20 * 1024 * 1024)  # deflates ~1030:1
    entries = [
        ("../evil.txt", b"escape"),
        ("/abs/path", b"absolute"),
        ("a/../../b.txt", b"escape"),
        ("..\\windows.txt", b"escape"),
        ("C:\\temp\\x.txt", b"drive"),
        ("bomb.bin", bomb),
        ("corrupt.txt", b"some text that deflates " * 200),
        ("huge.txt", b"declares more than 2 GiB"),
        ("run_me.py", script),
        ("mergelist.txt", good_mergelist),
        ("ok.txt", b"fine"),
    ]
    data = bytearray(make_zip(entries))
    # flip bytes inside corrupt.txt's deflate stream
    start = data.index(b"corrupt.txt") + len("corrupt.txt") + 10
    data[start:start + 8] = b"\xff" * 8
    data = patch_central_size(bytes(data), "huge.txt", 3 * 1024**3)
    path = tmp_path / "evil.k.zip"
    path.write_bytes(data)
    with pytest.warns(KZipWarning) as record:
        ann = read_kzip(path)
    messages = "\n".join(str(w.message) for w in record)
    for name in ("../evil.txt", "/abs/path", "a/../../b.txt", "..\\windows.txt", "C:\\temp\\x.txt",
                 "bomb.bin", "corrupt.txt", "huge.txt"):
        assert repr(name) in messages, name
    assert "compression ratio" in messages and "declares 3221225472 bytes" in messages
    assert [o.supervoxels for o in ann.objects] == [[1]]  # the rest still opens
    assert ann.extra_files == {"run_me.py": script, "ok.txt": b"fine"}
    assert not marker.exists()  # the .py member was never executed
    out = tmp_path / "out.k.zip"
    write_kzip(ann, out)
    assert not marker.exists()
    written = members(out.read_bytes())
    assert written["run_me.py"] == script
    assert not any(".." in n or n.startswith("/") for n in written)
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/abs/path").exists()


def test_lying_member_size_is_caught():
    # a member whose data inflates past its declared size is cut at that size and fails its CRC
    data = make_zip([("liar.txt", b"x" * 5000), ("ok.txt", b"fine")])
    data = patch_central_size(data, "liar.txt", 100)
    with pytest.warns(KZipWarning, match="liar.txt"):
        ann = read_kzip(data)
    assert ann.extra_files == {"ok.txt": b"fine"}


def test_duplicate_and_encrypted_members():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("dup.txt", b"first")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("dup.txt", b"second")
    with pytest.warns(KZipWarning, match="dup.txt.*duplicate"):
        ann = read_kzip(buf.getvalue())
    assert ann.extra_files == {"dup.txt": b"first"}
    enc = bytearray(make_zip([("secret.txt", b"s"), ("ok.txt", b"o")], zipfile.ZIP_STORED))
    cd = struct.unpack_from("<I", enc, enc.rindex(b"PK\x05\x06") + 16)[0]
    struct.pack_into("<H", enc, cd + 8, 1)  # central directory: encrypted flag
    with pytest.warns(KZipWarning, match="secret.txt.*encrypted"):
        ann = read_kzip(bytes(enc))
    assert ann.extra_files == {"ok.txt": b"o"}


def test_zlib_level_and_modest_cube_ratio():
    # an all-background edited 128³ cube deflates far below the refusal ratio
    import cramjam

    payload = bytes(cramjam.snappy.compress_raw(np.zeros(128**3, "<u8").tobytes()))
    assert len(payload) / len(zlib.compress(payload, 9)) < 1000
    ann = read_kzip(make_zip([("e_mag1x0y0z0.seg.sz", payload)]))
    assert ann.cubes[(1, 0, 0, 0)].array.max() == 0
