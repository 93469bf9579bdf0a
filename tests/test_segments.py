"""SegmentObjects: KNOSSOS merge/unmerge semantics, locks, ids, exact undo/redo, lookups, mergelist round trips."""

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.kzip import Annotation, read_kzip, write_kzip
from napari_knossos.annotation.mergelist import SegmentObject, read_mergelist
from napari_knossos.annotation.segments import SegmentEditRefused, SegmentObjects

DATA = Path(__file__).parent / "data" / "kzip"
SAMPLE = (
    Path(__file__).parents[1] / "src" / "napari_knossos" / "sample_data" / "annotation" / "synthetic_neuropil.k.zip"
)
MERGELISTS = [DATA / "synthetic.k.zip", SAMPLE]


def mergelist_of(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read("mergelist.txt").decode()


def make(*records, **kwargs) -> SegmentObjects:
    """Objects from (id, supervoxels[, immutable]) tuples."""
    objs = [
        SegmentObject(
            id=r[0], supervoxels=list(r[1]), immutable=bool(r[2]) if len(r) > 2 else False, position=(r[0], 0, 0)
        )
        for r in records
    ]
    return SegmentObjects(objs, **kwargs)


def members(segs: SegmentObjects) -> dict[int, set[int]]:
    return {oid: set(obj.supervoxels) for oid, obj in segs.objects.items()}


def expected_shown(records) -> dict[int, int]:
    """Supervoxel → object as KNOSSOS colours it, computed from the records: among the objects holding
    it, mutable before immutable, then most supervoxels, then the earliest listed."""
    best: dict[int, tuple] = {}
    for index, rec in enumerate(records):
        for sv in rec.supervoxels:
            key = (rec.immutable, -len(set(rec.supervoxels)), index)
            if sv not in best or key < best[sv][0]:
                best[sv] = (key, rec.id)
    return {sv: v[1] for sv, v in best.items()}


# -- round trips ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MERGELISTS, ids=lambda p: p.name)
def test_mergelist_round_trip_is_exact(path):
    text = mergelist_of(path)
    segs = SegmentObjects.from_mergelist(text)
    assert segs.to_mergelist() == text
    assert SegmentObjects.from_mergelist(text.encode()).to_mergelist() == text


@pytest.mark.parametrize("path", MERGELISTS, ids=lambda p: p.name)
def test_round_trip_through_kzip(tmp_path, path):
    text = mergelist_of(path)
    segs = SegmentObjects.from_mergelist(text)
    ann = read_kzip(path, cube_shape=(32, 32, 32))  # the fixture's cubes come from a 32³-cube dataset
    ann.objects = segs.to_objects()
    out = tmp_path / "out.k.zip"
    write_kzip(ann, out)
    assert mergelist_of(out) == text
    assert SegmentObjects(read_kzip(out, cube_shape=(32, 32, 32)).objects).to_mergelist() == text


@pytest.mark.parametrize("path", MERGELISTS, ids=lambda p: p.name)
def test_lookup_and_object_of_follow_knossos_colouring(path):
    records = read_mergelist(mergelist_of(path))
    segs = SegmentObjects(records)
    expected = expected_shown(records)
    keys, values = segs.lookup()
    assert keys.dtype == values.dtype == np.uint64
    assert keys.tolist() == sorted(expected)
    assert values.tolist() == [expected[k] for k in sorted(expected)]
    for sv, oid in expected.items():
        assert segs.object_of(sv) == oid
    assert segs.object_of(10**12) is None


def test_sample_has_overlap_shown_by_the_larger_object():
    records = read_mergelist(mergelist_of(SAMPLE))
    big = max(records, key=lambda r: len(r.supervoxels))
    segs = SegmentObjects(records)
    for sv in big.supervoxels:
        assert len(segs.objects_containing(sv)) == 2
        assert segs.object_of(sv) == big.id  # mutable and larger than the one-supervoxel object
        assert segs.object_under_cursor(sv) != big.id  # the click takes the smaller one


def test_map_ids_dense_and_sparse_paths_agree_with_a_dict():
    rng = np.random.default_rng(1)
    for high in (5000, 2**63):  # dense table, then searchsorted
        svs = rng.choice(np.arange(1, 5000, dtype=np.uint64), 600, replace=False) + np.uint64(high - 5000)
        groups = np.array_split(svs, 100)
        segs = SegmentObjects(
            [SegmentObject(id=7000 + i, supervoxels=[int(v) for v in g]) for i, g in enumerate(groups)]
        )
        truth = {int(v): 7000 + i for i, g in enumerate(groups) for v in g}
        ids = np.concatenate([svs, rng.integers(0, 2**20, 299, dtype=np.uint64), np.array([2**64 - 1], np.uint64)])
        ids = rng.permutation(ids).reshape(-1, 9)
        got = segs.map_ids(ids)
        assert got.shape == ids.shape and got.dtype == np.uint64
        assert got.ravel().tolist() == [truth.get(int(v), int(v)) for v in ids.ravel()]
        got0 = segs.map_ids(ids.astype(np.uint64), default=0)
        assert got0.ravel().tolist() == [truth.get(int(v), 0) for v in ids.ravel()]
        runs = np.repeat(ids, 4, axis=1)  # runs of equal ids, as in a segmentation
        for default in (None, 3):
            want = [truth.get(int(v), int(v) if default is None else default) for v in runs.ravel()]
            assert segs.map_ids(runs, default).ravel().tolist() == want
    assert SegmentObjects().map_ids(np.array([3, 4])).tolist() == [3, 4]


# -- merging ----------------------------------------------------------------------------------------
def test_merge_at_takes_the_object_under_the_cursor():
    segs = make((1, [10, 11]), (2, [20, 21, 22]), (3, [30]), (4, [40]))
    assert segs.merge_at(21, into=1) == 1
    assert members(segs) == {1: {10, 11, 20, 21, 22}, 4: {40}, 3: {30}}
    assert list(segs.objects) == [1, 4, 3]  # KNOSSOS removeObject: the last takes the removed one's place
    assert segs.to_mergelist().startswith("1 0 0 10 11 20 21 22\n")  # edited: written ascending
    assert segs.merge_at(10, into=1) == 1 and not segs.can_redo  # already in the object: nothing happens
    assert segs.undo_text == "Merge object of 21 into 1"


def test_merge_at_a_supervoxel_without_object_and_ctrl_merge_of_one_supervoxel():
    segs = make((1, [10]), (2, [20, 21]))
    segs.merge_at(99, into=1)  # KNOSSOS makes a one-supervoxel object and merges it
    assert members(segs) == {1: {10, 99}, 2: {20, 21}}
    segs.merge_at(20, into=1, only_supervoxel=True)  # Ctrl: only that supervoxel, it stays in object 2 too
    assert members(segs) == {1: {10, 20, 99}, 2: {20, 21}}
    assert segs.objects_containing(20) == [1, 2]
    assert segs.object_of(20) == 1  # the larger mutable object
    assert segs.map_ids([20, 21, 5]).tolist() == [1, 2, 5]


def test_merging_an_immutable_object_keeps_it_and_clears_its_todo():
    segs = SegmentObjects(
        [SegmentObject(1, supervoxels=[10]), SegmentObject(2, todo=True, immutable=True, supervoxels=[20, 21])]
    )
    assert segs.merge_at(20, into=1) == 1
    assert members(segs) == {1: {10, 20, 21}, 2: {20, 21}}
    assert segs.objects[2].todo is False and segs.objects[2].immutable
    assert segs.object_of(21) == 1 and segs.object_under_cursor(21) == 2


def test_locked_target_is_refused_by_default():
    segs = make((1, [10], True), (2, [20]))
    before = segs.to_mergelist()
    for edit in (
        lambda: segs.merge_at(20, into=1),
        lambda: segs.merge(2, into=1),
        lambda: segs.unmerge_at(10, 1),
        lambda: segs.delete_object(1),
        lambda: segs.add_supervoxels(1, [5]),
        lambda: segs.merge_at(77, into=1),
    ):
        with pytest.raises(SegmentEditRefused, match="object 1 is locked"):
            edit()
        assert segs.to_mergelist() == before and not segs.can_undo
    segs.set_category(1, "mito")  # annotation attributes stay editable, as in KNOSSOS
    segs.set_immutable(1, False)
    assert segs.merge_at(20, into=1) == 1


def test_knossos_policy_redirects_edits_of_a_locked_target():
    segs = make((1, [10, 11], True), (2, [20]), (3, [30], True), immutable_policy="knossos", largest_segment_id=50)
    assert segs.merge_at(20, into=1) == 2  # the mutable clicked object absorbs the locked one
    assert members(segs) == {1: {10, 11}, 2: {10, 11, 20}, 3: {30}}
    new = segs.merge(3, into=1)  # both locked: a new object with both, at the target's position
    assert new == 51
    assert segs.objects[new].supervoxels == {10, 11, 30} and not segs.objects[new].immutable
    assert segs.objects[new].position == segs.objects[1].position
    rest = segs.unmerge_at(10, 1, position=(5, 6, 7))  # unmerging from a locked object: a new object with the rest
    assert segs.objects[52].supervoxels == {10} and segs.objects[52].todo  # the supervoxel's own object, made first
    assert rest == 53 and segs.objects[rest].supervoxels == {11} and segs.objects[rest].position == (5, 6, 7)
    assert segs.objects[1].supervoxels == {10, 11}
    segs.delete_object(3)
    assert 3 not in segs.objects


def test_background_and_bad_ids_are_refused():
    segs = make((1, [10]))
    with pytest.raises(SegmentEditRefused, match="background"):
        segs.merge_at(0, into=1)
    with pytest.raises(KeyError, match="no segmentation object 9"):
        segs.merge_at(5, into=9)
    with pytest.raises(TypeError):
        segs.merge_at(1.5, into=1)
    with pytest.raises(ValueError, match="outside"):
        segs.new_object([2**64])


# -- unmerging --------------------------------------------------------------------------------------
def test_shift_unmerge_takes_the_object_under_the_cursor_out():
    segs = SegmentObjects(
        [SegmentObject(1, supervoxels=[1, 2, 3, 4]), SegmentObject(2, immutable=True, supervoxels=[3, 4])]
    )
    assert segs.unmerge_at(3, 1) == 1
    assert members(segs) == {1: {1, 2}, 2: {3, 4}}
    assert segs.objects[2].todo is True
    assert segs.unmerge_at(99, 1) == 1 and segs.undo_text == "Unmerge object of 3 from 1"  # not in it: nothing


def test_shift_unmerge_of_a_supervoxel_only_in_the_selected_object_splits_it_off():
    segs = make((1, [1, 2, 3]), largest_segment_id=10)
    assert segs.unmerge_at(2, 1) == 1
    assert members(segs) == {1: {1, 3}, 11: {2}}
    assert segs.objects[11].todo and segs.objects[11].position == segs.objects[1].position


def test_ctrl_shift_splits_off_only_the_supervoxel():
    segs = SegmentObjects(
        [
            SegmentObject(1, supervoxels=[1, 2, 3, 4]),
            SegmentObject(2, supervoxels=[3, 4]),
            SegmentObject(3, supervoxels=[4]),
        ]
    )
    assert segs.split_off(4, 1, position=(1, 2, 3)) == 1
    assert members(segs) == {1: {1, 2, 3}, 2: {3, 4}, 3: {4}}  # the existing one-supervoxel object is reused
    assert segs.objects[3].todo and not segs.objects[2].todo


def test_unmerging_the_last_supervoxel_deletes_the_object():
    segs = make((1, [5]), (2, [6]))
    assert segs.unmerge_at(5, 1) is None
    assert members(segs) == {2: {6}}
    segs.undo()
    assert members(segs) == {1: {5}, 2: {6}} and list(segs.objects) == [1, 2]


def test_object_level_unmerge_and_merge():
    segs = make((1, [1, 2]), (2, [2, 3]))
    assert segs.unmerge(2, 1) == 1
    assert members(segs) == {1: {1}, 2: {2, 3}} and segs.objects[2].todo
    assert segs.merge(2, into=1) == 1
    assert members(segs) == {1: {1, 2, 3}}
    assert segs.unmerge(1, 1) is None and len(segs) == 0


# -- ids, attributes ----------------------------------------------------------------------------------
def test_new_object_ids():
    segs = make((3, [7, 40]))
    assert segs.next_id() == 41  # supervoxel ids count too: painted ids must be new segments
    segs.largest_segment_id = 1000
    oid = segs.new_object(position=(1, 2, 3), category="neuron")
    assert oid == 1001 and segs.objects[oid].supervoxels == {1001}  # paint with the object's id
    assert segs.new_object([5, 6]) == 1002
    with pytest.raises(SegmentEditRefused, match="already exists"):
        segs.new_object([8], object_id=3)
    assert segs.new_object(object_id=5) == 5 and segs.objects[5].supervoxels == {1003}  # 5 is a supervoxel


def test_attributes_todo_categories_and_colour():
    segs = make((1, [1]), (2, [2]))
    segs.set_category(2, "my\nclass")
    segs.set_comment(1, "two\r\nlines")
    segs.set_color(1, (1, 2, 3))
    segs.set_todo(2)
    segs.set_position(1, (-4, 5, 6))
    assert segs.objects[2].category == "my class" and segs.objects[1].comment == "two lines"
    assert segs.todo_objects() == [2]
    assert "my class" in segs.categories and "mito" in segs.categories
    assert segs.to_mergelist() == "1 0 0 1\n-4 5 6 1 2 3\n\ntwo lines\n2 1 0 2\n2 0 0 \nmy class\n\n"
    with pytest.raises(ValueError, match="colour"):
        segs.set_color(1, (256, 0, 0))
    with pytest.raises(ValueError, match="int32"):
        segs.set_position(1, (2**31, 0, 0))
    segs.set_color(1, None)
    assert segs.objects[1].color is None


def test_supervoxel_edits_refuse_emptying_an_object():
    segs = make((1, [1, 2]))
    segs.add_supervoxels(1, [3, 1])
    segs.remove_supervoxels(1, [1, 9])
    assert segs.objects[1].supervoxels == {2, 3}
    with pytest.raises(SegmentEditRefused, match="no supervoxel left"):
        segs.remove_supervoxels(1, [2, 3])


def test_bad_mergelists():
    with pytest.raises(ValueError, match="object 4 lists supervoxel 7 twice"):
        SegmentObjects.from_mergelist("4 0 0 7 8 7\n0 0 0 \n\n\n")
    with pytest.warns(UserWarning, match="duplicate object ids renumbered"):
        segs = SegmentObjects.from_mergelist("4 0 0 1\n0 0 0 \n\n\n2 0 0 2\n0 0 0 \n\n\n4 0 0 3\n0 0 0 \n\n\n")
    assert list(segs.objects) == [4, 2, 5]  # KNOSSOS: ++highestId


# -- undo/redo -------------------------------------------------------------------------------------
def state(segs: SegmentObjects):
    keys, values = segs.lookup()
    registry = {sv: segs.objects_containing(sv) for sv in range(80)}
    return segs.to_mergelist(), keys.tolist(), values.tolist(), registry, segs.next_id()


def check_registry(segs: SegmentObjects) -> None:
    expected: dict[int, list[int]] = {}
    for oid, obj in segs.objects.items():
        for sv in obj.supervoxels:
            expected.setdefault(sv, []).append(oid)
    for sv, owners in expected.items():
        assert segs.objects_containing(sv) == owners
    assert set(segs._sv_objects) == set(expected)


@pytest.mark.parametrize("policy", ["refuse", "knossos"])
def test_random_edits_undo_and_redo_exactly(policy):
    rng = np.random.default_rng(5)
    records = [
        SegmentObject(
            i,
            supervoxels=[int(v) for v in rng.choice(np.arange(1, 60), rng.integers(1, 5), replace=False)],
            immutable=bool(rng.random() < 0.2),
            todo=bool(rng.random() < 0.3),
            position=(i, i, i),
        )
        for i in range(1, 25)
    ]
    segs = SegmentObjects(records, immutable_policy=policy, largest_segment_id=60)
    seen = []
    changes = []
    segs.subscribe(changes.append)
    history = [state(segs)]
    for _ in range(300):
        ids = list(segs.objects)
        if not ids:
            break
        target = int(rng.choice(ids))
        sv = int(rng.integers(1, 70))
        kind = rng.integers(0, 9)
        try:
            if kind == 0:
                segs.merge_at(sv, target, only_supervoxel=bool(rng.random() < 0.5))
            elif kind == 1:
                segs.unmerge_at(
                    int(rng.choice(sorted(segs.objects[target].supervoxels))),
                    target,
                    only_supervoxel=bool(rng.random() < 0.5),
                    position=(1, 2, 3),
                )
            elif kind == 2:
                segs.merge(int(rng.choice(ids)), target)
            elif kind == 3:
                segs.unmerge(int(rng.choice(ids)), target)
            elif kind == 4:
                segs.set_immutable(target, bool(rng.random() < 0.5))
            elif kind == 5:
                segs.new_object([sv] if rng.random() < 0.5 else [])
            elif kind == 6:
                segs.delete_object(target)
            elif kind == 7:
                segs.set_todo(target, bool(rng.random() < 0.5))
            else:
                with segs.batch("two edits"):
                    segs.set_comment(target, f"c{sv}")
                    segs.merge_at(sv, target)
        except SegmentEditRefused as e:
            seen.append(str(e))
            assert state(segs) == history[-1]  # a refused edit changes nothing
            continue
        check_registry(segs)
        now = state(segs)
        if now != history[-1]:
            history.append(now)
    assert len(history) > 100
    assert (policy == "refuse") == bool(seen)
    assert all(isinstance(c.object_ids, frozenset) for c in changes)
    n = len(history)
    for i in range(n - 2, -1, -1):
        segs.undo()
        assert state(segs) == history[i]
        check_registry(segs)
    assert not segs.can_undo and not segs.dirty
    for i in range(1, n):
        segs.redo()
        assert state(segs) == history[i]
    assert not segs.can_redo and segs.dirty


def test_batch_is_one_step_and_reverts_on_error():
    segs = make((1, [1]), (2, [2]), (3, [3], True))
    with segs.batch("several"):
        segs.merge(2, into=1)
        segs.set_comment(1, "x")
    assert segs.undo_text == "several"
    before = segs.to_mergelist()
    with pytest.raises(SegmentEditRefused), segs.batch("fails"):
        segs.set_comment(1, "y")
        segs.merge(1, into=3)
    assert segs.to_mergelist() == before and segs.undo_text == "several"
    segs.undo()
    assert members(segs) == {1: {1}, 2: {2}, 3: {3}} and segs.objects[1].comment == ""


def test_changes_are_announced_with_the_supervoxels_to_recolour():
    segs = make((1, [1]), (2, [2, 3]))
    got = []
    unsubscribe = segs.subscribe(got.append)
    segs.merge_at(2, into=1)
    assert got[-1].object_ids == {1, 2} and got[-1].supervoxels == {2, 3}
    segs.set_color(1, (1, 1, 1))
    assert got[-1].object_ids == {1} and got[-1].supervoxels == frozenset()
    segs.undo()
    assert got[-1].text == "Colour of object 1"
    unsubscribe()
    segs.undo()
    assert len(got) == 3
    assert segs.dirty is False
    segs.redo()
    segs.mark_saved()
    assert segs.dirty is False


# -- performance -----------------------------------------------------------------------------------
def test_performance_100k_supervoxels_in_10k_objects():
    rng = np.random.default_rng(0)
    svs = rng.permutation(np.arange(1, 100_001))
    records = [SegmentObject(i + 1, supervoxels=[int(v) for v in g]) for i, g in enumerate(np.array_split(svs, 10_000))]
    segs = SegmentObjects(records)
    merge_times, lookup_times = [], []
    for _ in range(50):
        a, b = (int(v) for v in rng.choice(list(segs.objects), 2, replace=False))
        t = time.perf_counter()
        segs.merge(b, into=a)
        merge_times.append(time.perf_counter() - t)
        sv = int(rng.integers(1, 100_001))
        t = time.perf_counter()
        segs.merge_at(sv, a)
        merge_times.append(time.perf_counter() - t)
    for _ in range(3):
        segs.set_todo(1, not segs.objects[1].todo) if 1 in segs.objects else segs.new_object([1])
        t = time.perf_counter()
        keys, _ = segs.lookup()
        lookup_times.append(time.perf_counter() - t)
    assert keys.size == 100_000
    assert np.median(merge_times) < 0.02, f"merge median {np.median(merge_times) * 1e3:.2f} ms"
    assert min(lookup_times) < 0.2, f"lookup rebuild {min(lookup_times) * 1e3:.1f} ms"


def test_annotation_objects_list_is_the_exchange_format():
    segs = make((1, [1, 2]))
    ann = Annotation(objects=segs.to_objects())
    assert isinstance(ann.objects[0], SegmentObject) and ann.objects[0].supervoxels == [1, 2]


def test_colour_is_undoable_editable_when_locked_and_round_trips_the_mergelist():
    segs = make((1, [1, 2]), (7, [7]))
    segs.set_immutable(1)
    segs.set_color(1, (255, 0, 255))  # a locked object's colour stays editable (KNOSSOS too)
    segs.set_color(1, (0, 200, 0))
    segs.undo()
    assert segs.objects[1].color == (255, 0, 255) and segs.undo_text == "Colour of object 1"
    segs.redo()
    assert segs.objects[1].color == (0, 200, 0)
    again = SegmentObjects.from_mergelist(segs.to_mergelist())
    assert again.objects[1].color == (0, 200, 0) and again.objects[7].color is None
    assert again.to_mergelist() == segs.to_mergelist()


def test_object_list_is_the_mergelist_order_and_follows_deletions():
    segs = make((5, [50]), (2, [20]), (9, [90]))
    assert [o.id for o in segs.object_list()] == [5, 2, 9] == list(segs.objects)
    segs.delete_object(5)  # KNOSSOS removeObject: the last object takes its place
    assert [o.id for o in segs.object_list()] == [9, 2] == list(segs.objects)
    segs.undo()
    assert [o.id for o in segs.object_list()] == [5, 2, 9]
    listed = segs.object_list()
    listed.clear()  # a new list each time: the model is untouched
    assert len(segs) == 3
