"""KNOSSOS ``.k.zip`` annotation container (knossos-project/knossos:annotation/file_io.cpp).

Members: ``annotation.xml`` (KNOSSOS NML), ``mergelist.txt``, ``{treeID}.ply`` meshes, edited
segmentation cubes ``{EXP}_mag{M}x{X}y{Y}z{Z}.seg.sz`` (Snappy raw stream of uint64 ids, x
fastest), ``settings.ini`` and ``microworker.txt`` (kept verbatim), extra ``*.nml`` skeletons
(merged into the skeleton) and any other member kept byte for byte.

Safety: nothing is ever extracted to disk, executed or imported (KNOSSOS runs ``*.py`` members;
we keep them as opaque bytes). Members with absolute or ``..`` names, declared sizes over 2 GiB,
compression ratios over 1000, encryption or corrupt data are skipped with a
:class:`KZipWarning` naming them; the rest of the archive still opens. Pure Python.
"""

from __future__ import annotations

import io
import os
import re
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..formats.atomic import atomic_open
from .mergelist import SegmentObject, read_mergelist, write_mergelist
from .ply import Mesh, read_ply, write_ply
from .skeleton import NODE_COLUMNS, Group, Skeleton

__all__ = ["Annotation", "KZipWarning", "SegmentationCube", "merge_skeleton", "read_kzip", "write_kzip"]

MAX_MEMBER_SIZE = 2 * 1024**3
MAX_COMPRESSION_RATIO = 1000
CUBE_MEMBER = re.compile(
    r"(?P<exp>.*?)_?mag(?P<mag>[0-9]+)x(?P<x>[0-9]+)y(?P<y>[0-9]+)z(?P<z>[0-9]+)"
    r"(?P<ext>\.seg\.sz|\.segmentation\.snappy)"
)
_DECIMAL = re.compile(r"[0-9]+")
_FIXED_MEMBERS = ("annotation.xml", "mergelist.txt", "settings.ini", "microworker.txt")


class KZipWarning(UserWarning):
    """A member of a .k.zip was skipped or kept undecoded."""


def _warn(message: str) -> None:
    warnings.warn(message, KZipWarning, stacklevel=3)


class SegmentationCube:
    """One edited segmentation cube: a Snappy raw stream of ``shape`` (x, y, z) uint64 ids.

    ``array`` decodes lazily to (z, y, x) uint64 (cached; edit it in place or assign a new one).
    A cube whose stream does not hold exactly 8·voxels bytes is not ``decodable`` and is written
    back unchanged under its original member name.
    """

    def __init__(self, member: str, payload: bytes | None = None, shape=(128, 128, 128),
                 array: np.ndarray | None = None, decodable: bool = True) -> None:
        self.member = member
        self.shape = tuple(int(s) for s in shape)
        self.payload = payload
        self.decodable = decodable
        self._array = None
        if array is not None:
            self.array = array
        elif payload is None:
            raise ValueError("a segmentation cube needs a payload or an array")

    @classmethod
    def from_array(cls, array: np.ndarray, member: str = "") -> SegmentationCube:
        """A cube from (z, y, x) ids (converted to uint64)."""
        arr = np.asarray(array)
        return cls(member, shape=arr.shape[::-1], array=arr)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            if not self.decodable:
                raise ValueError(f"{self.member}: not a {'x'.join(map(str, self.shape))} uint64 Snappy cube")
            import cramjam

            cx, cy, cz = self.shape
            out = np.empty(cx * cy * cz, "<u8")
            try:
                n = cramjam.snappy.decompress_raw_into(self.payload, out)
            except cramjam.DecompressionError as err:
                raise ValueError(f"{self.member}: corrupt Snappy stream ({err})") from None
            if n != out.nbytes:
                raise ValueError(f"{self.member}: Snappy stream holds {n} bytes, the cube needs {out.nbytes}")
            self._array = out.reshape(cz, cy, cx)
        return self._array

    @array.setter
    def array(self, value: np.ndarray) -> None:
        arr = np.ascontiguousarray(value, dtype="<u8")
        if arr.ndim != 3:
            raise ValueError(f"a segmentation cube is 3-D (z, y, x), got shape {arr.shape}")
        if not self.decodable:
            self.payload = None  # the undecodable stream is replaced
        self.shape = arr.shape[::-1]
        self._array = arr
        self.decodable = True

    def encoded(self) -> bytes:
        """The member bytes: the original stream unless the voxels were changed."""
        if self._array is None:
            return self.payload
        if self.payload is not None and self.decodable:
            decoded, self._array = self._array, None
            try:
                unchanged = np.array_equal(self.array, decoded)
            except ValueError:  # the stream no longer fits the (new) shape
                unchanged = False
            finally:
                self._array = decoded
            if unchanged:
                return self.payload
        import cramjam

        return bytes(cramjam.snappy.compress_raw(self._array.tobytes()))

    def __repr__(self) -> str:
        state = "decoded" if self._array is not None else ("encoded" if self.decodable else "undecodable")
        return f"SegmentationCube({self.member!r}, {'x'.join(map(str, self.shape))}, {state})"


@dataclass(eq=False)
class Annotation:
    """Everything a ``.k.zip`` holds.

    ``meshes`` maps tree id → :class:`Mesh`; ``mesh_members`` keeps the original member name of
    meshes that came from a non-numeric PLY name (KNOSSOS made a new tree named after the file).
    ``cubes`` maps ``(mag, x, y, z)`` (mag number and cube coordinates as in the member name) →
    :class:`SegmentationCube`; ``experiment`` is the ``EXP`` prefix for their names.
    ``extra_files`` keeps every other member, in archive order.
    """

    skeleton: Skeleton = field(default_factory=Skeleton)
    objects: list[SegmentObject] = field(default_factory=list)
    meshes: dict[int, Mesh] = field(default_factory=dict)
    mesh_members: dict[int, str] = field(default_factory=dict)
    cubes: dict[tuple[int, int, int, int], SegmentationCube] = field(default_factory=dict)
    experiment: str = ""
    settings_ini: bytes | None = None
    microworker: bytes | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)
    merged_nml: list[str] = field(default_factory=list)  # *.nml members merged into the skeleton

    @property
    def job(self) -> dict | None:
        """``microworker.txt`` as KNOSSOS reads it: id, campaign, worker, submit_path (None if absent)."""
        if self.microworker is None:
            return None
        lines = self.microworker.decode("utf-8", errors="replace").splitlines() + [""] * 4
        try:
            job_id = int(lines[0].strip() or 0)
        except ValueError:
            job_id = 0
        return {"id": job_id, "campaign": lines[1], "worker": lines[2], "submit_path": lines[3]}

    def cube_member_name(self, key: tuple[int, int, int, int]) -> str:
        cube = self.cubes[key]
        if not cube.decodable:
            return cube.member
        mag, x, y, z = key
        exp = self.experiment or self.skeleton.parameters.experiment
        return f"{exp}_mag{mag}x{x}y{y}z{z}.seg.sz"

    def __repr__(self) -> str:
        return (f"Annotation({self.skeleton!r}, {len(self.objects)} objects, {len(self.meshes)} meshes, "
                f"{len(self.cubes)} cubes, {len(self.extra_files)} extra files)")


# -- reading ------------------------------------------------------------------------------------
def _unsafe_reason(name: str) -> str | None:
    if not name or "\x00" in name:
        return "an empty name or a NUL byte"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' path component"
    return None


def _read_members(zf: zipfile.ZipFile, label: str) -> dict[str, bytes]:
    """Safe members of ``zf`` in archive order; bad ones skipped with a warning naming them."""
    members: dict[str, bytes] = {}
    for info in zf.infolist():
        name = info.filename
        where = f"{label}: member {name!r}"
        reason = _unsafe_reason(name)
        if reason:
            _warn(f"{where} skipped: its name is {reason}")
            continue
        if name in members:
            _warn(f"{where} skipped: duplicate name (the first one is kept)")
            continue
        if info.flag_bits & 0x1:
            _warn(f"{where} skipped: encrypted")
            continue
        if info.file_size > MAX_MEMBER_SIZE:
            _warn(f"{where} skipped: declares {info.file_size} bytes uncompressed (limit {MAX_MEMBER_SIZE})")
            continue
        if info.file_size and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            _warn(f"{where} skipped: compression ratio {info.file_size / max(info.compress_size, 1):.0f} "
                  f"exceeds {MAX_COMPRESSION_RATIO} (zip bomb?)")
            continue
        try:
            members[name] = zf.read(info)  # zipfile never inflates past the declared size
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
                ValueError) as err:
            _warn(f"{where} skipped: unreadable ({err})")
    return members


def _shift_groups(groups: list[Group], shift: int) -> None:
    for g in groups:
        for sub in g.walk():
            sub.id += shift


def merge_skeleton(target: Skeleton, other: Skeleton) -> Skeleton:
    """Merge ``other`` into ``target`` like KNOSSOS "merge on load": when ``target`` has trees,
    every node id of ``other`` is shifted by ``target``'s largest node id and every tree id by its
    largest tree id (so nothing collides); ``target``'s parameters are kept."""
    if not target.trees and not target.num_nodes:
        return other
    node_shift = int(target.nodes["id"].max()) if target.num_nodes else 0
    tree_shift = max(target.trees, default=0)
    group_shift = max((g.id for g in target.iter_groups()), default=0)

    for tree in other.trees.values():
        tree.id += tree_shift
        if tree.group_id is not None:
            tree.group_id += group_shift
        for key in ("preSynapse", "postSynapse"):
            value = tree.properties.get(key)
            if value is not None and _DECIMAL.fullmatch(value.strip()):
                tree.properties[key] = str(int(value) + node_shift)
        target.trees[tree.id] = tree
    _shift_groups(other.groups, group_shift)
    target.groups.extend(other.groups)
    columns = {}
    for col in NODE_COLUMNS:
        add = other.nodes[col]
        if col == "id":
            add = add + node_shift
        elif col == "tree":
            add = add + tree_shift
        columns[col] = np.concatenate([target.nodes[col], add])
    target.set_nodes(columns)
    target.set_edges(np.concatenate([target.edges, other.edges + node_shift]))
    for nid, text in other.comments.items():
        target.comments[nid + node_shift] = text
    for prop, values in other.node_properties.items():
        dest = target.node_properties.setdefault(prop, {})
        for nid, v in values.items():
            dest[nid + node_shift] = v
    target.branchpoints.extend((nid + node_shift, t) for nid, t in other.branchpoints)
    return target


def _nml_reader():
    from .nml import read_nml

    return read_nml


def read_kzip(source, *, dataset_scale=None, cube_shape=(128, 128, 128)) -> Annotation:
    """Read a ``.k.zip`` (path, bytes or binary file object). ``dataset_scale`` (x, y, z nm)
    rescales NML coordinates like KNOSSOS; ``cube_shape`` (x, y, z) is the segmentation cube size
    of the dataset.

    Malformed ``annotation.xml``/``mergelist.txt`` raise ValueError naming the member; unsafe,
    oversized or corrupt members and unreadable PLY/NML/cube members only warn."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, fileobj = "k.zip data", io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        label, fileobj = str(getattr(source, "name", "k.zip file")), source
    else:
        label, fileobj = os.fspath(source), os.fspath(source)
    try:
        with zipfile.ZipFile(fileobj) as zf:
            members = _read_members(zf, label)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{label}: not a zip archive ({err})") from None

    ann = Annotation()
    cube_shape = tuple(int(v) for v in cube_shape)
    voxels = int(np.prod(cube_shape))
    handled: set[str] = set()
    plys: list[str] = []

    def where(name: str) -> str:
        return f"{label}: member {name!r}"

    if "annotation.xml" in members:
        read_nml = _nml_reader()
        handled.add("annotation.xml")
        try:
            ann.skeleton = read_nml(members["annotation.xml"], dataset_scale=dataset_scale,
                                    name=where("annotation.xml"))
        except ValueError as err:
            if "annotation.xml" in str(err):
                raise
            raise ValueError(f"{where('annotation.xml')}: {err}") from None
    for name, data in members.items():
        lower = name.lower()
        if name in _FIXED_MEMBERS:
            continue
        if lower.endswith(".nml"):
            read_nml = _nml_reader()
            try:
                other = read_nml(data, dataset_scale=dataset_scale, name=where(name))
            except ValueError as err:
                _warn(f"{where(name)} kept as an extra file: unreadable NML ({err})")
                continue
            ann.skeleton = merge_skeleton(ann.skeleton, other)
            ann.merged_nml.append(name)
            handled.add(name)
        elif lower.endswith(".ply"):
            plys.append(name)
        else:
            match = CUBE_MEMBER.fullmatch(name)
            if match is None:
                continue
            handled.add(name)
            key = tuple(int(match[k]) for k in ("mag", "x", "y", "z"))
            if key in ann.cubes:
                _warn(f"{where(name)}: a second member for cube mag {key[0]} ({key[1]}, {key[2]}, {key[3]}); "
                      f"kept as an extra file")
                handled.discard(name)
                continue
            if not ann.experiment:
                ann.experiment = os.path.basename(match["exp"])
            ann.cubes[key] = _cube_from_member(name, data, cube_shape, voxels, where(name))

    if "mergelist.txt" in members:
        handled.add("mergelist.txt")
        ann.objects = read_mergelist(members["mergelist.txt"], name=where("mergelist.txt"))
    if "settings.ini" in members:
        handled.add("settings.ini")
        ann.settings_ini = members["settings.ini"]
    if "microworker.txt" in members:
        handled.add("microworker.txt")
        ann.microworker = members["microworker.txt"]

    for name in plys:  # after the skeleton: meshes attach to its trees
        try:
            mesh = read_ply(members[name], name=where(name))
        except ValueError as err:
            _warn(f"{err}; the member is kept as an extra file")
            continue
        stem = name[:-4]
        if _DECIMAL.fullmatch(stem):
            tree_id = int(stem)
            if tree_id in ann.meshes:
                _warn(f"{where(name)}: tree {tree_id} already has a mesh; kept as an extra file")
                continue
            if tree_id not in ann.skeleton.trees:
                ann.skeleton.add_tree(id=tree_id)
        else:  # KNOSSOS: a new tree whose comment is the file name (reuse one we wrote before)
            tree_id = next((t.id for t in ann.skeleton.trees.values()
                            if t.name == name and t.id not in ann.meshes), None)
            if tree_id is None:
                tree_id = ann.skeleton.add_tree(name=name).id
            ann.mesh_members[tree_id] = name
        ann.meshes[tree_id] = mesh
        handled.add(name)

    ann.extra_files = {name: data for name, data in members.items() if name not in handled}
    return ann


def _cube_from_member(name: str, data: bytes, shape, voxels: int, where: str) -> SegmentationCube:
    import cramjam

    try:
        n = cramjam.snappy.decompress_raw_len(data)
    except cramjam.DecompressionError as err:
        _warn(f"{where}: not a Snappy stream ({err}); kept as raw bytes")
        return SegmentationCube(name, data, shape, decodable=False)
    if n != 8 * voxels:
        _warn(f"{where}: Snappy stream holds {n} bytes, a {'x'.join(map(str, shape))} uint64 cube needs "
              f"{8 * voxels}; kept as raw bytes")
        return SegmentationCube(name, data, shape, decodable=False)
    return SegmentationCube(name, data, shape)


# -- writing ------------------------------------------------------------------------------------
def _member_list(ann: Annotation) -> list[tuple[str, bytes]]:
    from .nml import write_nml

    out: list[tuple[str, bytes]] = list(ann.extra_files.items())
    out.append(("annotation.xml", write_nml(ann.skeleton, dialect="knossos")))
    if ann.objects:
        out.append(("mergelist.txt", write_mergelist(ann.objects).encode("utf-8", errors="surrogateescape")))
    for tree_id, mesh in ann.meshes.items():
        if tree_id not in ann.skeleton.trees:
            _warn(f"mesh of tree {tree_id} written although the tree no longer exists")
        out.append((ann.mesh_members.get(tree_id) or f"{tree_id}.ply", write_ply(mesh)))
    for key in ann.cubes:
        out.append((ann.cube_member_name(key), ann.cubes[key].encoded()))
    if ann.settings_ini is not None:
        out.append(("settings.ini", ann.settings_ini))
    if ann.microworker is not None:
        out.append(("microworker.txt", ann.microworker))
    seen: set[str] = set()
    for name, _ in out:
        if name in seen:
            raise ValueError(f"two members named {name!r}")
        if _unsafe_reason(name):
            raise ValueError(f"member name {name!r} is {_unsafe_reason(name)}")
        seen.add(name)
    return out


def _write_zip(fileobj, members: list[tuple[str, bytes]]) -> None:
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o644 << 16) if not name.endswith("/") else (0o40755 << 16) | 0x10
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def write_kzip(annotation: Annotation, path=None) -> bytes | None:
    """Write ``annotation`` as a .k.zip in KNOSSOS member order (extra files first, then
    annotation.xml, mergelist.txt, meshes, cubes, settings.ini, microworker.txt), DEFLATE.
    With a ``path`` the file is replaced atomically and durably (:func:`..formats.atomic.atomic_open`); without one the
    archive bytes are returned."""
    members = _member_list(annotation)
    if path is None:
        buf = io.BytesIO()
        _write_zip(buf, members)
        return buf.getvalue()
    with atomic_open(path, parents=False) as f:
        _write_zip(f, members)
    return None
