"""PLY triangle meshes as KNOSSOS stores them per tree (``{treeID}.ply`` in a ``.k.zip``).

A small numpy reader for ascii, binary_little_endian and binary_big_endian files with every
standard scalar type name in both spellings (``char``/``int8`` … ``double``/``float64``), any list
count/index types, and extra elements/properties skipped. It never trusts header counts for
allocation and raises ValueError (naming the source) for anything it cannot read. The writer
emits binary little endian like KNOSSOS (knossos-project/knossos:skeleton/skeletonizer.cpp
``saveMesh``/``loadMesh``). Vertex coordinates are physical nm (x, y, z) of the dataset's mag 1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Mesh", "read_ply", "write_ply"]

_SCALAR_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20
_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass(eq=False)
class Mesh:
    """Triangles: ``vertices`` (N, 3) float32 nm (x, y, z), ``faces`` (M, 3) int64 vertex indices,
    optional ``normals`` (N, 3) float32 and per-vertex ``colors`` (N, 4) uint8 RGBA."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(np.asarray(self.vertices, np.float32).reshape(-1, 3))
        self.faces = np.ascontiguousarray(np.asarray(self.faces, np.int64).reshape(-1, 3))
        n = len(self.vertices)
        if self.normals is not None:
            self.normals = np.ascontiguousarray(np.asarray(self.normals, np.float32).reshape(-1, 3))
            if len(self.normals) != n:
                raise ValueError(f"{len(self.normals)} normals for {n} vertices")
        if self.colors is not None:
            self.colors = np.ascontiguousarray(np.asarray(self.colors, np.uint8).reshape(-1, 4))
            if len(self.colors) != n:
                raise ValueError(f"{len(self.colors)} colours for {n} vertices")
        if len(self.faces):
            bad = np.flatnonzero(((self.faces < 0) | (self.faces >= n)).any(axis=1))
            if len(bad):
                raise ValueError(f"face {bad[0]} refers to a vertex outside 0..{n - 1}")

    def equals(self, other: Mesh) -> bool:
        """Same vertices, faces, normals and colours (exact)."""

        def same(a, b):
            return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))

        return (isinstance(other, Mesh) and same(self.vertices, other.vertices) and same(self.faces, other.faces)
                and same(self.normals, other.normals) and same(self.colors, other.colors))

    def __repr__(self) -> str:
        extras = "".join([", normals" if self.normals is not None else "", ", colors" if self.colors is not None else ""])
        return f"Mesh({len(self.vertices)} vertices, {len(self.faces)} faces{extras})"


@dataclass
class _Property:
    name: str
    dtype: str  # numpy kind+size, byte order added later
    count_dtype: str | None = None  # list properties only


@dataclass
class _Element:
    name: str
    count: int
    properties: list[_Property]


def _parse_header(data: bytes, name: str) -> tuple[str, list[_Element], int]:
    end = re.search(rb"[\r\n]end_header[ \t]*(\r\n|\n|\r)", data[:_MAX_HEADER])
    if not data.startswith(b"ply") or end is None:
        raise ValueError(f"{name}: not a PLY file (no 'ply' magic or no 'end_header' within the first MiB)")
    header = data[:end.start()].decode("ascii", errors="replace")
    fmt: str | None = None
    elements: list[_Element] = []
    for line_no, line in enumerate(header.splitlines(), 1):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info") or (line_no == 1 and words == ["ply"]):
            continue
        try:
            if words[0] == "format":
                if len(words) < 2 or words[1] not in _FORMATS:
                    raise ValueError(f"unknown format {' '.join(words[1:])!r}")
                fmt = words[1]
            elif words[0] == "element":
                if len(words) != 3 or not words[2].isdigit():
                    raise ValueError(f"malformed element line {line!r}")
                elements.append(_Element(words[1], int(words[2]), []))
            elif words[0] == "property":
                if not elements:
                    raise ValueError("property before any element")
                if len(words) == 5 and words[1] == "list":
                    count_t, item_t = words[2], words[3]
                    if count_t not in _SCALAR_TYPES or item_t not in _SCALAR_TYPES:
                        raise ValueError(f"unknown list type in {line!r}")
                    if _SCALAR_TYPES[count_t][0] == "f":
                        raise ValueError(f"list count type must be an integer in {line!r}")
                    elements[-1].properties.append(_Property(words[4], _SCALAR_TYPES[item_t], _SCALAR_TYPES[count_t]))
                elif len(words) == 3 and words[1] in _SCALAR_TYPES:
                    elements[-1].properties.append(_Property(words[2], _SCALAR_TYPES[words[1]]))
                else:
                    raise ValueError(f"malformed property line {line!r}")
            elif line_no == 1:
                raise ValueError("first line must be 'ply'")
            else:
                raise ValueError(f"unknown header keyword {words[0]!r}")
        except ValueError as err:
            raise ValueError(f"{name}: PLY header line {line_no}: {err}") from None
    if fmt is None:
        raise ValueError(f"{name}: PLY header has no 'format' line")
    return fmt, elements, end.end()


# -- binary -------------------------------------------------------------------------------------
def _read_binary_element(data: bytes, pos: int, el: _Element, order: str, name: str,
                         is_face: bool) -> tuple[dict[str, np.ndarray], int]:
    """Columns of one element (scalar columns as arrays, list columns as (count, k) arrays when all
    rows have k items, else list of arrays) and the position after it."""
    remaining = len(data) - pos
    if not el.properties:
        return {}, pos
    # fast path: every list has the item count of the first row (always true for triangle meshes)
    fields, first_counts, p = [], [], pos
    for i, prop in enumerate(el.properties):
        if prop.count_dtype is None:
            fields.append((f"p{i}", order + prop.dtype))
            p += np.dtype(prop.dtype).itemsize
        else:
            cdt = np.dtype(order + prop.count_dtype)
            if el.count == 0 or p + cdt.itemsize > len(data):
                break
            k = int(np.frombuffer(data, cdt, 1, p)[0])
            if k < 0:
                break
            first_counts.append(k)
            fields.append((f"c{i}", cdt))
            fields.append((f"p{i}", order + prop.dtype, (k,)))
            p += cdt.itemsize + k * np.dtype(prop.dtype).itemsize
    else:
        row = np.dtype(fields)
        if row.itemsize * el.count <= remaining:
            table = np.frombuffer(data, row, el.count, pos) if el.count else np.zeros(0, row)
            uniform = all((table[f"c{i}"] == first_counts[j]).all()
                          for j, i in enumerate(i for i, pr in enumerate(el.properties) if pr.count_dtype))
            if uniform:
                return {prop.name: table[f"p{i}"] for i, prop in enumerate(el.properties)}, pos + row.itemsize * el.count
    # slow path: row by row (variable lists); bounded because every row takes at least one byte
    if el.count > remaining:
        raise ValueError(f"{name}: element '{el.name}' declares {el.count} rows but only {remaining} bytes follow")
    columns: dict[str, list] = {prop.name: [] for prop in el.properties}
    p = pos
    for r in range(el.count):
        for prop in el.properties:
            if prop.count_dtype is None:
                dt = np.dtype(order + prop.dtype)
                if p + dt.itemsize > len(data):
                    raise ValueError(f"{name}: truncated PLY data in element '{el.name}' row {r}")
                columns[prop.name].append(np.frombuffer(data, dt, 1, p)[0])
                p += dt.itemsize
            else:
                cdt = np.dtype(order + prop.count_dtype)
                idt = np.dtype(order + prop.dtype)
                if p + cdt.itemsize > len(data):
                    raise ValueError(f"{name}: truncated PLY data in element '{el.name}' row {r}")
                k = int(np.frombuffer(data, cdt, 1, p)[0])
                p += cdt.itemsize
                if is_face and prop.name in _FACE_LISTS and k != 3:
                    raise ValueError(f"{name}: face {r} has {k} vertices; only triangles are supported")
                if k < 0 or p + k * idt.itemsize > len(data):
                    raise ValueError(f"{name}: truncated PLY data in element '{el.name}' row {r}")
                columns[prop.name].append(np.frombuffer(data, idt, k, p))
                p += k * idt.itemsize
    out: dict[str, np.ndarray] = {}
    for prop in el.properties:
        vals = columns[prop.name]
        out[prop.name] = np.array(vals) if prop.count_dtype is None else vals
    return out, p


# -- ascii --------------------------------------------------------------------------------------
def _read_ascii_element(tokens: list[str], pos: int, el: _Element, name: str,
                        is_face: bool) -> tuple[dict[str, np.ndarray], int]:
    remaining = len(tokens) - pos
    if el.count > remaining and el.properties:
        raise ValueError(f"{name}: element '{el.name}' declares {el.count} rows but only {remaining} values follow")

    def convert(values: np.ndarray, dtype: str, row: int | None = None) -> np.ndarray:
        try:
            return values.astype(np.float64 if dtype[0] == "f" else np.int64).astype(dtype)
        except (ValueError, OverflowError):
            where = f" row {row}" if row is not None else ""
            raise ValueError(f"{name}: non-numeric value in PLY element '{el.name}'{where}") from None

    if not el.properties:
        return {}, pos
    # fast path: uniform rows (the list lengths of the first row everywhere)
    layout, width, p = [], 0, pos
    for prop in el.properties:
        if prop.count_dtype is None:
            layout.append((prop, None))
            width += 1
            p += 1
            continue
        if el.count == 0 or p >= len(tokens) or not tokens[p].isdigit():
            break
        k = int(tokens[p])
        layout.append((prop, k))
        width += 1 + k
        p += 1 + k
    else:
        if width * el.count <= remaining:
            block = np.array(tokens[pos:pos + width * el.count], dtype=str).reshape(el.count, width)
            col, out, uniform = 0, {}, True
            for prop, k in layout:
                if k is None:
                    out[prop.name] = convert(block[:, col], prop.dtype)
                    col += 1
                    continue
                if not (block[:, col] == str(k)).all():
                    uniform = False
                    break
                out[prop.name] = convert(block[:, col + 1:col + 1 + k], prop.dtype)
                col += 1 + k
            if uniform:
                return out, pos + width * el.count
    # slow path: row by row
    columns: dict[str, list] = {prop.name: [] for prop in el.properties}
    p = pos
    for r in range(el.count):
        for prop in el.properties:
            if p >= len(tokens):
                raise ValueError(f"{name}: truncated PLY data in element '{el.name}' row {r}")
            if prop.count_dtype is None:
                columns[prop.name].append(convert(np.array(tokens[p:p + 1]), prop.dtype, r)[0])
                p += 1
                continue
            if not tokens[p].isdigit():
                raise ValueError(f"{name}: bad list length {tokens[p]!r} in PLY element '{el.name}' row {r}")
            k = int(tokens[p])
            p += 1
            if is_face and prop.name in _FACE_LISTS and k != 3:
                raise ValueError(f"{name}: face {r} has {k} vertices; only triangles are supported")
            if p + k > len(tokens):
                raise ValueError(f"{name}: truncated PLY data in element '{el.name}' row {r}")
            columns[prop.name].append(convert(np.array(tokens[p:p + k], dtype=str), prop.dtype, r))
            p += k
    out = {}
    for prop in el.properties:
        vals = columns[prop.name]
        out[prop.name] = np.array(vals) if prop.count_dtype is None else vals
    return out, p


# -- public API ---------------------------------------------------------------------------------
def _to_uint8(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        col = col * 255.0 if len(col) and np.nanmax(col) <= 1.0 else col
        return np.clip(np.nan_to_num(col), 0, 255).round().astype(np.uint8)
    return np.clip(col, 0, 255).astype(np.uint8)


def read_ply(source, name: str | None = None) -> Mesh:
    """Read a PLY mesh from bytes or a path. ValueError naming ``name`` for malformed files,
    non-triangle faces (naming the face) and out-of-range vertex indices."""
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        with open(source, "rb") as f:
            data = f.read()
    else:
        data = bytes(source)
        name = name or "PLY data"
    fmt, elements, pos = _parse_header(data, name)
    order = _FORMATS[fmt]
    tokens = data[pos:].decode("ascii", errors="replace").split() if order is None else []
    tpos = 0
    found: dict[str, dict[str, np.ndarray]] = {}
    try:
        for el in elements:
            is_face = el.name == "face"
            if order is None:
                cols, tpos = _read_ascii_element(tokens, tpos, el, name, is_face)
            else:
                cols, pos = _read_binary_element(data, pos, el, order, name, is_face)
            if el.name in ("vertex", "face") and el.name not in found:
                found[el.name] = cols
            elif el.name in ("vertex", "face"):
                raise ValueError(f"{name}: more than one '{el.name}' element")
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - anything unforeseen in hostile data is still "malformed"
        raise ValueError(f"{name}: unreadable PLY data ({type(err).__name__}: {err})") from None

    vertex = found.get("vertex")
    if vertex is None or not all(k in vertex for k in "xyz"):
        raise ValueError(f"{name}: PLY has no 'vertex' element with x, y, z")
    for k in "xyz":
        if not isinstance(vertex[k], np.ndarray) or vertex[k].ndim != 1:
            raise ValueError(f"{name}: vertex property '{k}' must be a scalar")
    vertices = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float32)
    normals = None
    if all(isinstance(vertex.get(k), np.ndarray) and vertex[k].ndim == 1 for k in ("nx", "ny", "nz")):
        normals = np.stack([vertex[k] for k in ("nx", "ny", "nz")], axis=1).astype(np.float32)
    colors = None
    rgb = [vertex.get(k) for k in ("red", "green", "blue")]
    if all(isinstance(c, np.ndarray) and c.ndim == 1 for c in rgb):
        alpha = vertex.get("alpha")
        if not (isinstance(alpha, np.ndarray) and alpha.ndim == 1):
            alpha = np.full(len(vertices), 255, np.uint8)
        colors = np.stack([_to_uint8(c) for c in [*rgb, alpha]], axis=1)

    faces = np.zeros((0, 3), np.int64)
    face = found.get("face")
    if face is not None:
        key = next((k for k in _FACE_LISTS if k in face), None)
        if key is None:
            raise ValueError(f"{name}: PLY 'face' element has no list property 'vertex_indices'")
        col = face[key]
        if isinstance(col, np.ndarray) and col.ndim == 2:
            if col.shape[1] != 3 and len(col):
                raise ValueError(f"{name}: face 0 has {col.shape[1]} vertices; only triangles are supported")
            faces = col.astype(np.int64).reshape(-1, 3)
        elif isinstance(col, list):
            faces = np.array([np.asarray(f, np.int64) for f in col], np.int64).reshape(-1, 3)
        else:
            raise ValueError(f"{name}: PLY face property '{key}' must be a list")
    n = len(vertices)
    bad = np.flatnonzero(((faces < 0) | (faces >= n)).any(axis=1)) if len(faces) else []
    if len(bad):
        raise ValueError(f"{name}: face {bad[0]} refers to vertex {faces[bad[0]].tolist()} outside 0..{n - 1}")
    return Mesh(vertices, faces, normals, colors)


def write_ply(mesh: Mesh, binary: bool = True) -> bytes:
    """PLY bytes: binary little endian (default) or ascii; ``x y z`` [``nx ny nz``]
    [``red green blue alpha`` uchar], faces as ``list uchar int vertex_indices``."""
    n, m = len(mesh.vertices), len(mesh.faces)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if mesh.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {n}"]
    header += [f"property {'float' if dt == '<f4' else 'uchar'} {k}" for k, dt in fields]
    header += [f"element face {m}", "property list uchar int vertex_indices", "end_header", ""]
    head = "\n".join(header).encode("ascii")
    if len(mesh.faces) and (mesh.faces.max() > np.iinfo(np.int32).max):
        raise ValueError("vertex index exceeds int32")
    vert = np.zeros(n, np.dtype(fields))
    for i, k in enumerate("xyz"):
        vert[k] = mesh.vertices[:, i]
    if mesh.normals is not None:
        for i, k in enumerate(("nx", "ny", "nz")):
            vert[k] = mesh.normals[:, i]
    if mesh.colors is not None:
        for i, k in enumerate(("red", "green", "blue", "alpha")):
            vert[k] = mesh.colors[:, i]
    if binary:
        face = np.zeros(m, np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
        face["n"] = 3
        face["v"] = mesh.faces
        return head + vert.tobytes() + face.tobytes()
    lines = []
    for row in vert:
        lines.append(" ".join(f"{float(v):.9g}" if dt == "<f4" else str(int(v)) for v, (_, dt) in zip(row, fields)))
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces.tolist()]
    return head + ("\n".join(lines) + "\n" if lines else "").encode("ascii")
