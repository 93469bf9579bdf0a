"""PLY meshes: ascii / binary LE / binary BE, type spellings, list types, errors, trimesh interop."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.ply import Mesh, read_ply, write_ply

DATA = Path(__file__).parent / "data" / "kzip"

VERTICES = np.array([[100, 100, 125], [300, 100, 125], [300, 300, 125], [100, 300, 125.5]], np.float32)
FACES = np.array([[0, 1, 2], [0, 2, 3]])
COLORS = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [255, 255, 0, 128]], np.uint8)


def make_ply(fmt, *, vtype="float", ctype="uchar", count_t="uchar", index_t="int", extra=True,
             faces=FACES, vertices=VERTICES, colors=COLORS):
    """A PLY with an extra vertex property, an extra face property and an extra element."""
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    np_t = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
            "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
            "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4"}
    head = ["ply", f"format {fmt} 1.0", "comment made by a test", f"element vertex {len(vertices)}"]
    head += [f"property {vtype} {k}" for k in "xyz"]
    if extra:
        head += ["property double quality"]
    head += [f"property {ctype} {k}" for k in ("red", "green", "blue", "alpha")]
    head += [f"element face {len(faces)}", f"property list {count_t} {index_t} vertex_indices"]
    if extra:
        head += ["property ushort flags", "element edge 1", "property int vertex1", "property list uchar float w"]
    head += ["end_header"]
    body = b""
    if order is None:
        rows = []
        for v, c in zip(vertices, colors):
            rows.append(" ".join([*(repr(float(x)) for x in v), *(["0.5"] if extra else []), *map(str, c)]))
        for f in faces:
            rows.append(" ".join([str(len(f)), *map(str, f), *(["7"] if extra else [])]))
        if extra:
            rows.append("1 2 0.5 1.5")
        body = ("\n".join(rows) + "\n").encode()
    else:
        for v, c in zip(vertices, colors):
            body += np.array(v, order + np_t[vtype]).tobytes()
            if extra:
                body += np.array([0.5], order + "f8").tobytes()
            body += np.array(c, order + np_t[ctype]).tobytes()
        for f in faces:
            body += np.array([len(f)], order + np_t[count_t]).tobytes() + np.array(f, order + np_t[index_t]).tobytes()
            if extra:
                body += np.array([7], order + "u2").tobytes()
        if extra:
            body += np.array([1], order + "i4").tobytes() + np.array([2], order + "u1").tobytes()
            body += np.array([0.5, 1.5], order + "f4").tobytes()
    return ("\n".join(head) + "\n").encode() + body


def test_fixture_mesh():
    with zipfile.ZipFile(DATA / "synthetic.k.zip") as zf:
        mesh = read_ply(zf.read("1.ply"), name="1.ply")
    assert mesh.vertices.shape == (4, 3) and mesh.faces.shape == (2, 3)
    np.testing.assert_array_equal(mesh.vertices, [[100, 100, 125], [300, 100, 125], [300, 300, 125], [100, 300, 125]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.colors[:, 3], 255)
    assert mesh.normals is None


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("vtype, ctype, count_t, index_t", [
    ("float", "uchar", "uchar", "int"),
    ("float32", "uint8", "uint8", "uint32"),
    ("double", "ushort", "char", "short"),
    ("float64", "uint16", "int8", "int16"),
    ("float", "uchar", "ushort", "uint"),
    ("float", "uchar", "uint16", "ushort"),
    ("float", "uchar", "int", "uchar"),
    ("float", "uchar", "int32", "uint16"),
])
def test_formats_and_type_names(fmt, vtype, ctype, count_t, index_t):
    mesh = read_ply(make_ply(fmt, vtype=vtype, ctype=ctype, count_t=count_t, index_t=index_t), name="t.ply")
    np.testing.assert_array_equal(mesh.vertices, VERTICES)
    np.testing.assert_array_equal(mesh.faces, FACES)
    np.testing.assert_array_equal(mesh.colors, COLORS)
    assert mesh.vertices.dtype == np.float32 and mesh.colors.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_non_triangle_face_is_named(fmt):
    faces = [[0, 1, 2], [0, 2, 3], [0, 1, 2, 3]]
    with pytest.raises(ValueError, match=r"q\.ply: face 2 has 4 vertices"):
        read_ply(make_ply(fmt, faces=faces), name="q.ply")
    with pytest.raises(ValueError, match=r"face 0 has 4 vertices"):  # uniform quads take the fast path
        read_ply(make_ply(fmt, faces=[[0, 1, 2, 3]], extra=False), name="q.ply")


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("bad", [4, -1])
def test_out_of_range_index_is_named(fmt, bad):
    with pytest.raises(ValueError, match=r"o\.ply: face 1 refers to vertex"):
        read_ply(make_ply(fmt, faces=[[0, 1, 2], [0, bad, 3]]), name="o.ply")


@pytest.mark.parametrize("data", [
    b"",
    b"not a ply",
    b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",  # no y, z
    b"ply\nformat binary_middle_endian 1.0\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n",
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nproperty float y\n"
    b"property float z\nend_header\n\x00\x00"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
    b"element face 99999999999\nproperty list uchar int vertex_indices\nend_header\n" + b"\x00" * 12 + b"\x03"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
    b"element face 1\nproperty list float int vertex_indices\nend_header\n1 2 3\n3 0 0 0\n"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
    b"element face 1\nproperty list uchar int vertex_indices\nend_header\n1 2 three\n3 0 0 0\n"),
    b"ply\nformat ascii 1.0\nelement vertex 1\nproperty fluffy x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 0 0\n",
])
def test_malformed_files_raise_value_error(data):
    with pytest.raises(ValueError, match="bad.ply"):
        read_ply(data, name="bad.ply")


def test_random_garbage_never_crashes():
    rng = np.random.default_rng(0)
    good = make_ply("binary_little_endian")
    header_end = good.index(b"end_header\n") + len(b"end_header\n")
    for _ in range(200):
        body = bytearray(good[header_end:])
        for i in rng.integers(0, len(body), 5):
            body[i] = rng.integers(0, 256)
        cut = int(rng.integers(0, len(body) + 1))
        try:
            mesh = read_ply(good[:header_end] + bytes(body[:cut]), name="g.ply")
        except ValueError:
            continue
        assert isinstance(mesh, Mesh)


def test_normals_and_rgb_without_alpha_and_float_colors():
    head = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"property float nx\nproperty float ny\nproperty float nz\nproperty float red\nproperty float green\n"
            b"property float blue\nelement face 1\nproperty list uchar int vertex_index\nend_header\n")
    body = b"0 0 0 0 0 1 1 0 0\n1 0 0 0 0 1 0 1 0\n0 1 0 0 0 1 0 0 0.5\n3 0 1 2\n"
    mesh = read_ply(head + body)
    np.testing.assert_array_equal(mesh.normals, [[0, 0, 1]] * 3)
    np.testing.assert_array_equal(mesh.colors, [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 128, 255]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2]])


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("with_colors, with_normals", [(True, False), (False, False), (True, True)])
def test_write_read_round_trip(binary, with_colors, with_normals):
    rng = np.random.default_rng(1)
    verts = rng.random((50, 3), np.float32) * 1e4
    faces = rng.integers(0, 50, (80, 3))
    normals = rng.random((50, 3), np.float32) if with_normals else None
    colors = rng.integers(0, 256, (50, 4), np.uint8) if with_colors else None
    mesh = Mesh(verts, faces, normals, colors)
    data = write_ply(mesh, binary=binary)
    assert data.startswith(b"ply\nformat " + (b"binary_little_endian" if binary else b"ascii"))
    assert b"property list uchar int vertex_indices\n" in data
    assert read_ply(data).equals(mesh)


def test_writer_header_is_knossos_layout():
    data = write_ply(Mesh(VERTICES, FACES, colors=COLORS))
    head = data[:data.index(b"end_header\n") + 11].decode()
    assert head == ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                    "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
                    "property uchar alpha\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    assert len(data) == len(head) + 4 * 16 + 2 * 13


def test_trimesh_loads_what_we_write():
    trimesh = pytest.importorskip("trimesh")
    for binary in (True, False):
        data = write_ply(Mesh(VERTICES, FACES, colors=COLORS), binary=binary)
        tm = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
        np.testing.assert_array_equal(tm.vertices, VERTICES)
        np.testing.assert_array_equal(tm.faces, FACES)
        np.testing.assert_array_equal(tm.visual.vertex_colors, COLORS)


def test_we_read_what_trimesh_writes():
    trimesh = pytest.importorskip("trimesh")
    tm = trimesh.Trimesh(VERTICES, FACES, vertex_colors=COLORS, process=False)
    for encoding in ("binary", "ascii"):
        mesh = read_ply(tm.export(file_type="ply", encoding=encoding))
        np.testing.assert_array_equal(mesh.vertices, VERTICES)
        np.testing.assert_array_equal(mesh.faces, FACES)
        np.testing.assert_array_equal(mesh.colors, COLORS)


def test_mesh_validates_indices():
    with pytest.raises(ValueError, match="face 1 refers to a vertex"):
        Mesh(VERTICES, [[0, 1, 2], [0, 1, 4]])
