"""Segmentation objects with KNOSSOS mergelist semantics, undoable (pure Python + numpy).

An object is a set of supervoxel (segment) ids with an id, todo flag, immutable lock, category,
comment, colour and position; a supervoxel may belong to several objects, as in KNOSSOS. The
behaviour follows knossos-project/knossos ``segmentation/segmentation.cpp`` (``Segmentation``)
and ``widgets/viewports/viewportevents.cpp`` (``merging``):

* Merge mode right-click on a supervoxel outside the selected object: :meth:`SegmentObjects.merge_at`
  merges *the object under the cursor* into the selected one; KNOSSOS takes the object that
  ``smallestImmutableObjectContainingSubobject`` picks (immutable first, then the one with the fewest
  supervoxels, then the oldest), and makes a one-supervoxel object if the supervoxel has none.
  With Ctrl (``only_supervoxel=True``) only that supervoxel's one-supervoxel object is merged.
* Shift+right on a supervoxel of the selected object: :meth:`SegmentObjects.unmerge_at` removes the
  object under the cursor (or, if that is the selected object itself, the supervoxel) from the
  selected object; Ctrl+Shift removes only the supervoxel (:meth:`SegmentObjects.split_off`). The
  part taken out stays (or becomes) an object of its own and gets the todo flag
  (``unmergeSelectedObjects``). Unmerging the last supervoxel deletes the object, as in KNOSSOS.
* Merging two objects (``mergeSelectedObjects``): the merged-in object disappears; an immutable
  merged-in object is kept unchanged (its supervoxels are then in both objects) and loses its
  todo flag.
* The object shown for a supervoxel (:meth:`SegmentObjects.object_of`, :meth:`SegmentObjects.lookup`)
  is ``largestObjectContainingSubobject``: mutable first, then most supervoxels, then the oldest.
* Objects are kept in KNOSSOS' order: new ones are appended, a deleted one is replaced by the
  last (``removeObject`` swaps with the last), which is the order ``mergelistSave`` writes.

Immutable (locked) objects never change their supervoxels. When the *selected* object is locked,
KNOSSOS redirects the edit (merging into a locked object grows the other object or makes a new
one; unmerging from it makes a new object with the rest). ``immutable_policy="refuse"`` (the
default) raises :class:`SegmentEditRefused` in those cases instead, and when deleting or directly
editing a locked object; ``"knossos"`` reproduces KNOSSOS. Todo, category, comment, colour and
position of locked objects stay editable (KNOSSOS allows it too).

New ids: :meth:`SegmentObjects.next_id` = max(``largest_segment_id``, every object id, every
supervoxel id) + 1; a new object without supervoxels gets that id as object id *and* as its one
supervoxel (the id to paint with), so painted ids never collide with existing segments.

Every change is one undo step (exact inverse operations, no snapshots); :meth:`SegmentObjects.batch`
groups several. Round trip: :meth:`SegmentObjects.from_mergelist` then :meth:`SegmentObjects.to_mergelist`
gives the same text; supervoxels of an object keep their listed order until its membership
changes, then they are written ascending as KNOSSOS keeps them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .mergelist import SegmentObject, read_mergelist, write_mergelist

__all__ = ["KNOSSOS_CATEGORIES", "MergedObject", "SegmentChange", "SegmentEditRefused", "SegmentObjects"]

_UINT64_MAX = 2**64 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# KNOSSOS' predefined categories (segmentation.h ``prefixed_categories``)
KNOSSOS_CATEGORIES = ("", "cell", "cytoplasm", "ecs", "mito", "myelin", "neuron", "nucleus", "synapse")


class SegmentEditRefused(Exception):
    """An edit that is not allowed (locked object, background id ...); the message is for the status bar."""


@dataclass(eq=False)
class MergedObject:
    """One segmentation object. Read it freely; change it only through :class:`SegmentObjects`.

    ``position`` is (x, y, z) in mag-1 voxels, ``color`` (r, g, b) 0-255 or None (default colour).
    """

    id: int
    supervoxels: set[int]
    todo: bool = False
    immutable: bool = False
    category: str = ""
    comment: str = ""
    color: tuple[int, int, int] | None = None
    position: tuple[int, int, int] = (0, 0, 0)
    listed_order: list[int] | None = field(default=None, repr=False)  # file order until membership changes

    def sorted_supervoxels(self) -> list[int]:
        """Supervoxels as written to the mergelist (listed order, or ascending once edited)."""
        return list(self.listed_order) if self.listed_order is not None else sorted(self.supervoxels)


@dataclass(frozen=True)
class SegmentChange:
    """What one edit, undo or redo changed: ``object_ids`` (added, removed or changed objects) and
    ``supervoxels`` whose object (and so colour) may have changed; ``text`` names the edit."""

    text: str
    object_ids: frozenset[int]
    supervoxels: frozenset[int]


# -- reversible operations ------------------------------------------------------------------------
class _Op:
    objects: frozenset = frozenset()
    supervoxels: frozenset = frozenset()

    def apply(self, segs: SegmentObjects) -> None:
        raise NotImplementedError

    def revert(self, segs: SegmentObjects) -> None:
        raise NotImplementedError


class _AppendObject(_Op):
    def __init__(self, obj: MergedObject):
        self.obj = obj
        self.objects = frozenset((obj.id,))
        self.supervoxels = frozenset(obj.supervoxels)

    def apply(self, segs):
        segs._insert(self.obj, len(segs._order))

    def revert(self, segs):
        segs._remove_at(len(segs._order) - 1)


class _RemoveObject(_Op):
    """KNOSSOS ``removeObject``: the last object takes the removed one's place."""

    def __init__(self, segs: SegmentObjects, object_id: int):
        self.index = segs._pos[object_id]
        self.obj = segs._objects[object_id]
        self.objects = frozenset((object_id,))
        self.supervoxels = frozenset(self.obj.supervoxels)

    def apply(self, segs):
        segs._remove_at(self.index)

    def revert(self, segs):
        segs._insert(self.obj, self.index)


class _Membership(_Op):
    """Add (``add=True``) or remove supervoxels of one object; the listed order is dropped."""

    def __init__(self, obj: MergedObject, supervoxels: frozenset[int], add: bool):
        self.object_id = obj.id
        self.ids = supervoxels
        self.add = add
        self.listed = obj.listed_order
        self.objects = frozenset((obj.id,))
        self.supervoxels = supervoxels

    def _change(self, segs, add: bool) -> None:
        obj = segs._objects[self.object_id]
        if add:
            obj.supervoxels.update(self.ids)
            segs._register(self.object_id, self.ids)
        else:
            obj.supervoxels.difference_update(self.ids)
            segs._unregister(self.object_id, self.ids)

    def apply(self, segs):
        self._change(segs, self.add)
        segs._objects[self.object_id].listed_order = None

    def revert(self, segs):
        self._change(segs, not self.add)
        segs._objects[self.object_id].listed_order = self.listed


class _SetAttribute(_Op):
    def __init__(self, obj: MergedObject, name: str, value):
        self.object_id = obj.id
        self.name = name
        self.old = getattr(obj, name)
        self.new = value
        self.objects = frozenset((obj.id,))
        if name == "immutable":  # changes which object a shared supervoxel shows
            self.supervoxels = frozenset(obj.supervoxels)

    def apply(self, segs):
        setattr(segs._objects[self.object_id], self.name, self.new)
        segs.version += 1

    def revert(self, segs):
        setattr(segs._objects[self.object_id], self.name, self.old)
        segs.version += 1


@dataclass
class _Step:
    text: str
    ops: list[_Op] = field(default_factory=list)
    serial: int = 0

    def change(self) -> SegmentChange:
        return SegmentChange(
            self.text,
            frozenset().union(*(op.objects for op in self.ops)),
            frozenset().union(*(op.supervoxels for op in self.ops)),
        )


class _ObjectsView(Mapping):
    """Read-only ``id → MergedObject`` in KNOSSOS (mergelist) order."""

    def __init__(self, segs: SegmentObjects):
        self._segs = segs

    def __getitem__(self, object_id: int) -> MergedObject:
        return self._segs._objects[object_id]

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._segs._order))

    def __len__(self) -> int:
        return len(self._segs._order)

    def __contains__(self, object_id) -> bool:
        return object_id in self._segs._objects


# -- validation helpers ---------------------------------------------------------------------------
def _as_id(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    value = int(value)
    if not 0 <= value <= _UINT64_MAX:
        raise ValueError(f"{what} {value} is outside [0, 2**64-1]")
    return value


def _position(value) -> tuple[int, int, int]:
    xyz = tuple(int(v) for v in value)
    if len(xyz) != 3 or not all(_INT32_MIN <= v <= _INT32_MAX for v in xyz):
        raise ValueError(f"position must be 3 int32 values (x, y, z), not {value!r}")
    return xyz


def _color(value) -> tuple[int, int, int] | None:
    if value is None:
        return None
    rgb = tuple(int(v) for v in value)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"colour must be (r, g, b) with 0-255 each, or None, not {value!r}")
    return rgb


def _one_line(text: str) -> str:
    """KNOSSOS ``changeCategory``/``changeComment``: the mergelist has no line breaks."""
    return str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class SegmentObjects:
    """The segmentation objects of an annotation (KNOSSOS mergelist), editable with exact undo/redo.

    ``largest_segment_id``: the segmentation layer's ``largestSegmentId`` (None if unknown), used for
    :meth:`next_id`. ``immutable_policy``: ``"refuse"`` or ``"knossos"`` (see the module docstring).
    ``background_id``: the id that is never part of an object (KNOSSOS ``backgroundId``, 0).
    """

    def __init__(
        self,
        objects: Iterable[SegmentObject] = (),
        *,
        largest_segment_id: int | None = None,
        immutable_policy: Literal["refuse", "knossos"] = "refuse",
        background_id: int = 0,
        max_undo: int = 1000,
        name: str = "mergelist",
    ):
        if immutable_policy not in ("refuse", "knossos"):
            raise ValueError(f"immutable_policy must be 'refuse' or 'knossos', not {immutable_policy!r}")
        self.largest_segment_id = largest_segment_id
        self.immutable_policy = immutable_policy
        self.background_id = background_id
        self.max_undo = max_undo
        self._objects: dict[int, MergedObject] = {}
        self._order: list[int] = []
        self._pos: dict[int, int] = {}
        self._sv_objects: dict[int, list[int]] = {}
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._open: _Step | None = None
        self._serial = self._base_serial = self._saved_serial = 0
        self._subscribers: list[Callable[[SegmentChange], None]] = []
        self._lookup_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._dense_cache: tuple | None = None
        self.version = 0
        self._load(objects, name)

    # -- construction and serialisation -------------------------------------------------------------
    def _load(self, objects: Iterable[SegmentObject], name: str) -> None:
        highest = 0
        renamed = []
        for record in objects:
            object_id = _as_id(record.id, f"{name}: object id")
            if object_id in self._objects:  # KNOSSOS createObjectFromSubobjectId: ++highestId
                renamed.append((object_id, highest + 1))
                object_id = highest + 1
            highest = max(highest, object_id)
            listed = [_as_id(s, f"{name}: object {record.id}: supervoxel id") for s in record.supervoxels]
            if not listed:
                raise ValueError(f"{name}: object {record.id} has no supervoxel (KNOSSOS needs at least one)")
            members = set(listed)
            if len(members) != len(listed):
                twice = next(s for s in listed if listed.count(s) > 1)
                raise ValueError(
                    f"{name}: object {record.id} lists supervoxel {twice} twice (KNOSSOS refuses such a mergelist)"
                )
            obj = MergedObject(
                object_id,
                members,
                bool(record.todo),
                bool(record.immutable),
                str(record.category),
                str(record.comment),
                _color(record.color),
                _position(record.position),
                listed_order=listed,
            )
            self._insert(obj, len(self._order))
        if renamed:
            warnings.warn(
                f"{name}: duplicate object ids renumbered as KNOSSOS does: "
                + ", ".join(f"{a} → {b}" for a, b in renamed),
                UserWarning,
                stacklevel=3,
            )

    @classmethod
    def from_mergelist(cls, text: str | bytes, *, name: str = "mergelist.txt", **kwargs) -> SegmentObjects:
        """Objects of a ``mergelist.txt`` text; ValueError naming ``name`` and what is wrong."""
        return cls(read_mergelist(text, name=name), name=name, **kwargs)

    def to_objects(self) -> list[SegmentObject]:
        """The objects as :class:`~.mergelist.SegmentObject` records (for ``kzip.Annotation.objects``)."""
        out = []
        for object_id in self._order:
            obj = self._objects[object_id]
            out.append(
                SegmentObject(
                    id=obj.id,
                    todo=obj.todo,
                    immutable=obj.immutable,
                    supervoxels=obj.sorted_supervoxels(),
                    position=obj.position,
                    color=obj.color,
                    category=obj.category,
                    comment=obj.comment,
                )
            )
        return out

    def to_mergelist(self) -> str:
        """The ``mergelist.txt`` text, byte for byte as KNOSSOS writes it."""
        return write_mergelist(self.to_objects())

    # -- queries -----------------------------------------------------------------------------------
    @property
    def objects(self) -> Mapping[int, MergedObject]:
        """``id → MergedObject`` in mergelist order (read only)."""
        return _ObjectsView(self)

    def object_list(self) -> list[MergedObject]:
        """Every object in mergelist order, as a new list (fast bulk read, e.g. for tables)."""
        return [self._objects[o] for o in self._order]

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"SegmentObjects({len(self._order)} objects, {len(self._sv_objects)} supervoxels)"

    def objects_containing(self, supervoxel: int) -> list[int]:
        """Ids of every object holding ``supervoxel``, oldest first (KNOSSOS index order)."""
        owners = self._sv_objects.get(int(supervoxel), ())
        return sorted(owners, key=self._pos.__getitem__)

    def object_of(self, supervoxel: int) -> int | None:
        """The object a supervoxel is shown as (KNOSSOS ``largestObjectContainingSubobject``:
        mutable first, then most supervoxels, then oldest), None if it is in no object."""
        owners = self.objects_containing(supervoxel)
        if not owners:
            return None
        return min(owners, key=lambda o: (self._objects[o].immutable, -len(self._objects[o].supervoxels)))

    def object_under_cursor(self, supervoxel: int) -> int | None:
        """The object a merge click takes (KNOSSOS ``smallestImmutableObjectContainingSubobject``:
        immutable first, then fewest supervoxels, then oldest), None if it is in no object."""
        owners = self.objects_containing(supervoxel)
        if not owners:
            return None
        return min(owners, key=lambda o: (not self._objects[o].immutable, len(self._objects[o].supervoxels)))

    def supervoxels_of(self, object_id: int) -> np.ndarray:
        """Supervoxels of an object, ascending, as uint64."""
        return np.array(sorted(self._get(object_id).supervoxels), dtype=np.uint64)

    def todo_objects(self) -> list[int]:
        """Ids of objects flagged todo, ascending (KNOSSOS ``todolist``)."""
        return sorted(o for o in self._order if self._objects[o].todo)

    @property
    def categories(self) -> list[str]:
        """KNOSSOS' predefined categories plus every category in use, sorted."""
        return sorted(set(KNOSSOS_CATEGORIES) | {self._objects[o].category for o in self._order})

    def next_id(self) -> int:
        """max(``largest_segment_id``, every object id, every supervoxel id) + 1."""
        highest = max(self.largest_segment_id or 0, max(self._objects, default=0), max(self._sv_objects, default=0))
        if highest >= _UINT64_MAX:
            raise SegmentEditRefused("no free segment id is left (uint64 exhausted)")
        return highest + 1

    def lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """``(supervoxels, objects)``: every supervoxel in an object, ascending (uint64), and the id of
        the object it is shown as (:meth:`object_of`), for ``np.searchsorted`` recolouring. Cached
        until the next change; the arrays are read-only."""
        cache = self._lookup_cache
        if cache is not None and cache[0] == self.version:
            return cache[1], cache[2]
        objs = [self._objects[o] for o in self._order]
        sizes = np.fromiter((len(o.supervoxels) for o in objs), np.int64, count=len(objs))
        total = int(sizes.sum())
        svs = np.fromiter(itertools.chain.from_iterable(o.supervoxels for o in objs), np.uint64, count=total)
        owner = np.repeat(np.array(self._order, dtype=np.uint64), sizes)
        if total == len(self._sv_objects):  # no supervoxel in two objects
            perm = np.argsort(svs, kind="stable")
            keys, values = svs[perm], owner[perm]
        else:
            immutable = np.repeat(np.fromiter((o.immutable for o in objs), bool, count=len(objs)), sizes)
            index = np.repeat(np.arange(len(objs)), sizes)
            perm = np.lexsort((index, -np.repeat(sizes, sizes), immutable, svs))
            keys, values = svs[perm], owner[perm]
            first = np.ones(keys.size, bool)
            first[1:] = keys[1:] != keys[:-1]
            keys, values = keys[first], values[first]
        keys.flags.writeable = False
        values.flags.writeable = False
        self._lookup_cache = (self.version, keys, values)
        return keys, values

    def map_ids(self, ids, default: int | None = None) -> np.ndarray:
        """Object id of every supervoxel id in ``ids`` (any shape), uint64. Ids in no object stay
        themselves, or become ``default`` if given. Uses a dense table when the supervoxel ids are
        small (at most ``max(2**20, 4 * count)``), else ``np.searchsorted`` on :meth:`lookup` once
        per run of equal ids."""
        ids = np.asarray(ids)
        flat = ids.reshape(-1).astype(np.uint64, copy=False)
        keys, values = self.lookup()
        fill = None if default is None else np.uint64(default)
        if keys.size == 0:
            out = flat.copy() if fill is None else np.full(flat.shape, fill, np.uint64)
            return out.reshape(ids.shape)
        dense = self._dense_table(keys, values)
        if dense is not None:
            table, member = dense
            index = np.minimum(flat, np.uint64(table.size - 1)).astype(np.intp)
            inside = flat < table.size
            if fill is None:
                out = np.where(inside, table[index], flat)
            else:
                out = np.where(inside & member[index], table[index], fill)
            return out.reshape(ids.shape)
        if flat.size > 1:  # segmentations come in runs of equal ids: look up each run once
            starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
            if starts.size < flat.size // 2:
                heads = self.map_ids(flat[starts], default)
                return np.repeat(heads, np.diff(np.append(starts, flat.size))).reshape(ids.shape)
        pos = np.searchsorted(keys, flat)
        np.minimum(pos, keys.size - 1, out=pos)
        hit = keys[pos] == flat
        out = np.where(hit, values[pos], flat if fill is None else fill)
        return out.reshape(ids.shape)

    def _dense_table(self, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(object id or the id itself per id 0..max, in-an-object mask), cached with the lookup."""
        size = int(keys[-1]) + 1
        if size > max(1 << 20, 4 * keys.size):
            return None
        cached = self._dense_cache
        if cached is not None and cached[0] == self.version:
            return cached[1]
        table = np.arange(size, dtype=np.uint64)
        table[keys.astype(np.intp)] = values
        member = np.zeros(size, bool)
        member[keys.astype(np.intp)] = True
        self._dense_cache = (self.version, (table, member))
        return table, member

    # -- edits -------------------------------------------------------------------------------------
    def new_object(
        self,
        supervoxels: Iterable[int] = (),
        *,
        position=(0, 0, 0),
        todo: bool = False,
        immutable: bool = False,
        category: str = "",
        comment: str = "",
        color=None,
        object_id: int | None = None,
    ) -> int:
        """Create an object and return its id (:meth:`next_id` unless ``object_id`` is given). Without
        supervoxels it gets one new supervoxel with the same id, the id to paint with (KNOSSOS
        ``createAndSelectObject``, key ``C`` in paint modes)."""
        members = {self._check_supervoxel(s) for s in supervoxels}
        if object_id is None:
            object_id = self.next_id()
        else:
            object_id = _as_id(object_id, "object id")
            if object_id in self._objects:
                raise SegmentEditRefused(f"object {object_id} already exists")
        if not members:
            members = {self.next_id() if object_id in self._sv_objects else object_id}
            self._check_supervoxel(next(iter(members)))
        obj = MergedObject(
            object_id,
            members,
            bool(todo),
            bool(immutable),
            _one_line(category),
            _one_line(comment),
            _color(color),
            _position(position),
        )
        with self._step(f"New object {object_id}"):
            self._do(_AppendObject(obj))
        return object_id

    def delete_object(self, object_id: int) -> None:
        """Delete an object (KNOSSOS ``deleteSelectedObjects``); refused for a locked object unless
        ``immutable_policy="knossos"``."""
        obj = self._get(object_id)
        self._refuse_if_locked(obj, "delete it")
        with self._step(f"Delete object {obj.id}"):
            self._do(_RemoveObject(self, obj.id))

    def add_supervoxels(self, object_id: int, supervoxels: Iterable[int]) -> None:
        """Add supervoxels to an object (KNOSSOS ``newSubObject``); refused for a locked object."""
        obj = self._get(object_id)
        new = frozenset(self._check_supervoxel(s) for s in supervoxels) - obj.supervoxels
        if not new:
            return
        self._refuse_if_locked(obj, "add supervoxels")
        with self._step(f"Add {len(new)} supervoxel(s) to object {obj.id}"):
            self._do(_Membership(obj, new, add=True))

    def remove_supervoxels(self, object_id: int, supervoxels: Iterable[int]) -> None:
        """Remove supervoxels from an object; refused for a locked object and for the last supervoxel
        (delete the object instead)."""
        obj = self._get(object_id)
        gone = frozenset(int(s) for s in supervoxels) & obj.supervoxels
        if not gone:
            return
        self._refuse_if_locked(obj, "remove supervoxels")
        if gone == obj.supervoxels:
            raise SegmentEditRefused(f"object {obj.id} would have no supervoxel left: delete it instead")
        with self._step(f"Remove {len(gone)} supervoxel(s) from object {obj.id}"):
            self._do(_Membership(obj, gone, add=False))

    def merge(self, object_id: int, into: int) -> int:
        """Merge object ``object_id`` into ``into`` (KNOSSOS ``mergeSelectedObjects`` with ``into``
        selected first). Returns the object that holds the result (selected in KNOSSOS): ``into``,
        or with ``immutable_policy="knossos"`` and a locked ``into`` the other or a new object."""
        target, other = self._get(into), self._get(object_id)
        if target.id == other.id:
            return target.id
        with self._step(f"Merge object {other.id} into {target.id}"):
            return self._merge(target, other)

    def merge_at(self, supervoxel: int, into: int, *, only_supervoxel: bool = False, position=None) -> int:
        """Merge-mode right-click on ``supervoxel`` with ``into`` selected (Ctrl: ``only_supervoxel``).

        Merges the object under the cursor (:meth:`object_under_cursor`; with ``only_supervoxel`` the
        supervoxel's one-supervoxel object) into ``into``, creating a one-supervoxel object at
        ``position`` (default: ``into``'s) if there is none. A supervoxel already in ``into`` changes
        nothing. Returns the object holding the result, as :meth:`merge`.
        """
        supervoxel = self._check_supervoxel(supervoxel)
        target = self._get(into)
        if supervoxel in target.supervoxels:
            return target.id
        self._refuse_if_locked(target, "merge into it")
        where = target.position if position is None else _position(position)
        with self._step(f"Merge {'supervoxel' if only_supervoxel else 'object of'} {supervoxel} into {target.id}"):
            if only_supervoxel:
                other = self._single_object(supervoxel, where)
            else:
                candidate = self.object_under_cursor(supervoxel)
                other = self._objects[candidate] if candidate is not None else self._create({supervoxel}, where)
            return self._merge(target, other)

    def unmerge(self, object_id: int, from_object: int, *, position=None) -> int | None:
        """Take object ``object_id``'s supervoxels out of ``from_object`` (KNOSSOS
        ``unmergeSelectedObjects``); ``object_id`` stays an object and gets the todo flag. With
        ``object_id == from_object`` the object is deleted (KNOSSOS with one selected object).
        Returns the object holding the rest: ``from_object``, a new object (locked ``from_object``,
        ``immutable_policy="knossos"``, at ``position``), or None after a deletion."""
        source, part = self._get(from_object), self._get(object_id)
        with self._step(f"Unmerge object {part.id} from {source.id}"):
            return self._unmerge(source, part, source.position if position is None else _position(position))

    def unmerge_at(
        self, supervoxel: int, from_object: int, *, only_supervoxel: bool = False, position=None
    ) -> int | None:
        """Merge-mode Shift+right-click on ``supervoxel`` with ``from_object`` selected (Ctrl+Shift:
        ``only_supervoxel``). Takes the object under the cursor out of ``from_object``, or the
        supervoxel alone if ``only_supervoxel`` or if that object is ``from_object`` itself (KNOSSOS
        ``merging``); the part taken out becomes its own object (created at ``position`` if needed)
        with the todo flag. A supervoxel not in ``from_object`` changes nothing. Returns as :meth:`unmerge`.
        """
        supervoxel = self._check_supervoxel(supervoxel)
        source = self._get(from_object)
        if supervoxel not in source.supervoxels:
            return source.id
        where = source.position if position is None else _position(position)
        what = "supervoxel" if only_supervoxel else "object of"
        with self._step(f"Unmerge {what} {supervoxel} from {source.id}"):
            candidate = None if only_supervoxel else self.object_under_cursor(supervoxel)
            if candidate is None or candidate == source.id:
                part = self._single_object(supervoxel, where)
            else:
                part = self._objects[candidate]
            return self._unmerge(source, part, where)

    def split_off(self, supervoxel: int, from_object: int, *, position=None) -> int | None:
        """Ctrl+Shift+right-click: take only ``supervoxel`` out of ``from_object``."""
        return self.unmerge_at(supervoxel, from_object, only_supervoxel=True, position=position)

    def set_todo(self, object_id: int, todo: bool = True) -> None:
        self._set(object_id, "todo", bool(todo), "Todo" if todo else "Done")

    def set_immutable(self, object_id: int, immutable: bool = True) -> None:
        """Lock (immutable) or unlock an object."""
        self._set(object_id, "immutable", bool(immutable), "Lock" if immutable else "Unlock")

    def set_category(self, object_id: int, category: str) -> None:
        self._set(object_id, "category", _one_line(category), "Category")

    def set_comment(self, object_id: int, comment: str) -> None:
        self._set(object_id, "comment", _one_line(comment), "Comment")

    def set_color(self, object_id: int, color) -> None:
        """Custom colour (r, g, b), or None for the default (lookup-table) colour."""
        self._set(object_id, "color", _color(color), "Colour")

    def set_position(self, object_id: int, position) -> None:
        """The object's position (x, y, z), where "jump to object" goes."""
        self._set(object_id, "position", _position(position), "Position")

    # -- undo/redo, notifications ------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].text if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].text if self._redo else ""

    @property
    def dirty(self) -> bool:
        """Changed since :meth:`mark_saved` (or since loading)."""
        return (self._undo[-1].serial if self._undo else self._base_serial) != self._saved_serial

    def mark_saved(self) -> None:
        self._saved_serial = self._undo[-1].serial if self._undo else self._base_serial

    def undo(self) -> SegmentChange | None:
        step = self._pop(self._undo, "undo")
        if step is None:
            return None
        for op in reversed(step.ops):
            op.revert(self)
        self._redo.append(step)
        return self._changed(step)

    def redo(self) -> SegmentChange | None:
        step = self._pop(self._redo, "redo")
        if step is None:
            return None
        for op in step.ops:
            op.apply(self)
        self._undo.append(step)
        return self._changed(step)

    def batch(self, text: str):
        """Several edits as one undo step; an exception reverts all of them."""
        return self._step(text)

    def subscribe(self, callback: Callable[[SegmentChange], None]) -> Callable[[], None]:
        """Call ``callback(SegmentChange)`` after every edit, undo and redo; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # -- internals: structure ------------------------------------------------------------------------
    def _insert(self, obj: MergedObject, index: int) -> None:
        """Inverse of :meth:`_remove_at`: put ``obj`` at ``index``, moving the object there to the end."""
        if index < len(self._order):
            moved = self._order[index]
            self._order.append(moved)
            self._pos[moved] = len(self._order) - 1
            self._order[index] = obj.id
        else:
            self._order.append(obj.id)
        self._pos[obj.id] = index
        self._objects[obj.id] = obj
        self._register(obj.id, obj.supervoxels)
        self.version += 1

    def _remove_at(self, index: int) -> None:
        object_id = self._order[index]
        last = self._order.pop()
        if last != object_id:
            self._order[index] = last
            self._pos[last] = index
        del self._pos[object_id]
        obj = self._objects.pop(object_id)
        self._unregister(object_id, obj.supervoxels)
        self.version += 1

    def _register(self, object_id: int, supervoxels) -> None:
        table = self._sv_objects
        for sv in supervoxels:
            owners = table.get(sv)
            if owners is None:
                table[sv] = [object_id]
            else:
                owners.append(object_id)
        self.version += 1

    def _unregister(self, object_id: int, supervoxels) -> None:
        table = self._sv_objects
        for sv in supervoxels:
            owners = table[sv]
            if len(owners) == 1:
                del table[sv]
            else:
                owners.remove(object_id)
        self.version += 1

    # -- internals: edits ------------------------------------------------------------------------------
    def _get(self, object_id: int) -> MergedObject:
        try:
            return self._objects[int(object_id)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"no segmentation object {object_id!r}") from None

    def _check_supervoxel(self, supervoxel) -> int:
        supervoxel = _as_id(supervoxel, "supervoxel id")
        if supervoxel == self.background_id:
            raise SegmentEditRefused(f"segment {supervoxel} is the background and belongs to no object")
        return supervoxel

    def _refuse_if_locked(self, obj: MergedObject, what: str) -> None:
        if obj.immutable and self.immutable_policy == "refuse":
            raise SegmentEditRefused(f"object {obj.id} is locked (immutable): unlock it to {what}")

    def _set(self, object_id: int, name: str, value, text: str) -> None:
        obj = self._get(object_id)
        if getattr(obj, name) == value:
            return
        with self._step(f"{text} of object {obj.id}"):
            self._do(_SetAttribute(obj, name, value))

    def _create(self, supervoxels: set[int], position, **attrs) -> MergedObject:
        obj = MergedObject(self.next_id(), set(supervoxels), position=position, **attrs)
        self._do(_AppendObject(obj))
        return obj

    def _single_object(self, supervoxel: int, position) -> MergedObject:
        """KNOSSOS ``objectFromSubobject``: the oldest object made of only ``supervoxel``, else a new one."""
        for object_id in self.objects_containing(supervoxel):
            if len(self._objects[object_id].supervoxels) == 1:
                return self._objects[object_id]
        return self._create({supervoxel}, position)

    def _merge(self, first: MergedObject, second: MergedObject) -> int:
        """KNOSSOS ``mergeSelectedObjects`` for the selection [first, second]: the four cases of (im)mutability."""
        self._refuse_if_locked(first, "merge into it")
        if first.immutable and second.immutable:  # a new object holding both
            self._set_in_step(second, "todo", False)
            return self._create(first.supervoxels | second.supervoxels, first.position).id
        if first.immutable:  # the mutable one grows, the locked one stays
            self._add(second, first.supervoxels)
            self._set_in_step(first, "todo", False)
            return second.id
        self._add(first, second.supervoxels)
        if second.immutable:
            self._set_in_step(second, "todo", False)
        else:
            self._do(_RemoveObject(self, second.id))
        return first.id

    def _unmerge(self, source: MergedObject, part: MergedObject, position) -> int | None:
        """KNOSSOS ``unmergeSelectedObjects`` for the selection [source, part]."""
        if part.id == source.id:
            self._refuse_if_locked(source, "delete it")
            self._do(_RemoveObject(self, source.id))
            return None
        rest = source.supervoxels - part.supervoxels
        result = source.id
        if rest:  # KNOSSOS unmergeObject: only if supervoxels remain
            shared = frozenset(source.supervoxels & part.supervoxels)
            if source.immutable:
                if shared:
                    self._refuse_if_locked(source, "unmerge from it")
                if self.immutable_policy == "knossos":  # the rest becomes a new object
                    result = self._create(rest, position).id
            elif shared:
                self._do(_Membership(source, shared, add=False))
        self._set_in_step(part, "todo", True)
        return result

    def _add(self, obj: MergedObject, supervoxels) -> None:
        new = frozenset(supervoxels) - obj.supervoxels
        if new:
            self._do(_Membership(obj, new, add=True))

    def _set_in_step(self, obj: MergedObject, name: str, value) -> None:
        if getattr(obj, name) != value:
            self._do(_SetAttribute(obj, name, value))

    # -- internals: steps -----------------------------------------------------------------------------
    @contextmanager
    def _step(self, text: str) -> Iterator[_Step]:
        outer = self._open
        if outer is not None:  # nested: join the outer step, revert only our part on error
            mark = len(outer.ops)
            try:
                yield outer
            except BaseException:
                for op in reversed(outer.ops[mark:]):
                    op.revert(self)
                del outer.ops[mark:]
                raise
            return
        step = self._open = _Step(text)
        try:
            yield step
        except BaseException:
            self._open = None
            for op in reversed(step.ops):
                op.revert(self)
            raise
        self._open = None
        if not step.ops:
            return
        self._redo.clear()
        self._serial += 1
        step.serial = self._serial
        self._undo.append(step)
        if len(self._undo) > self.max_undo > 0:
            self._base_serial = self._undo.pop(0).serial
        self._changed(step)

    def _do(self, op: _Op) -> None:
        op.apply(self)
        self._open.ops.append(op)

    def _pop(self, stack: list[_Step], what: str) -> _Step | None:
        if self._open is not None:
            raise RuntimeError(f"{what} inside an edit or batch")
        return stack.pop() if stack else None

    def _changed(self, step: _Step) -> SegmentChange:
        change = step.change()
        for callback in list(self._subscribers):
            callback(change)
        return change
