"""Agglomerate files: zarr3 groups (written here with zarr-python and by webknossos), HDF5 when h5py is there."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.formats.agglomerate import AgglomerateMapping, agglomerate_files
from napari_knossos.formats.model import Layer
from napari_knossos.formats.webknossos import open_webknossos

from .reference import run_reference

VOXELYTICS = {"voxelytics": {"artifact_schema_version": 4, "artifact_class": "AgglomerateViewArtifact"}}


def make_agglomerates(n_segments: int, n_agglomerates: int, seed: int = 0):
    """Random truth: a label per segment (1..n_agglomerates, every one used) and a spanning path of
    edges inside each agglomerate; returns the spec's arrays built from it."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate(
        [np.arange(1, n_agglomerates + 1), rng.integers(1, n_agglomerates + 1, n_segments - n_agglomerates)]
    )
    labels = rng.permutation(labels).astype(np.uint64)
    seg_to_agg = np.concatenate([[0], labels]).astype(np.uint64)
    members = [np.flatnonzero(seg_to_agg == a).astype(np.uint64) for a in range(n_agglomerates + 1)]
    members[0] = members[0][1:]  # segment 0 (background) is in no agglomerate; agglomerate 0 is empty
    offsets = np.concatenate([[0], np.cumsum([m.size for m in members])]).astype(np.uint64)
    edges_local, affinities, edge_counts = [], [], []
    for m in members:
        pairs = [(i, i + 1) for i in range(m.size - 1)]
        edges_local += pairs
        affinities += [float(m[i] % 97) + 0.5 for i, _ in pairs]
        edge_counts.append(len(pairs))
    positions = np.stack([np.arange(n_segments), np.arange(n_segments) * 2, np.arange(n_segments) % 7], 1)
    segments = np.concatenate(members).astype(np.uint32)
    arrays = {
        "segment_to_agglomerate": seg_to_agg,
        "agglomerate_to_segments_offsets": offsets,
        "agglomerate_to_segments": segments,
        "agglomerate_to_positions": positions[segments.astype(np.int64) - 1].astype(np.int32),
        "agglomerate_to_edges_offsets": np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.uint64),
        "agglomerate_to_edges": np.array(edges_local, np.uint32).reshape(-1, 2),
        "agglomerate_to_affinities": np.array(affinities, np.float32),
    }
    return arrays, members


def write_zarr_group(path: Path, arrays: dict, chunk: int = 64, shard: int | None = 256) -> None:
    """The spec's layout with zarr-python: a group with the voxelytics attributes, zstd(5, checksum)
    inner chunks, sharded unless ``shard`` is None."""
    import zarr
    from zarr.codecs import ZstdCodec

    root = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=VOXELYTICS)
    for name, data in arrays.items():
        chunks = (chunk, *data.shape[1:])
        shards = None if shard is None else (shard, *data.shape[1:])
        arr = root.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            shards=shards,
            compressors=ZstdCodec(level=5, checksum=True),
            fill_value=0,
        )
        arr[...] = data


@pytest.fixture(scope="module")
def truth():
    return make_agglomerates(5000, 700)


@pytest.mark.parametrize("shard", [256, None], ids=["sharded", "unsharded"])
def test_zarr_group_maps_like_the_truth(tmp_path, truth, shard):
    arrays, members = truth
    write_zarr_group(tmp_path / "agglomerate_view_50", arrays, shard=shard)
    agg = AgglomerateMapping(tmp_path / "agglomerate_view_50")
    assert (agg.format, agg.name, agg.n_segments, agg.largest_agglomerate) == (
        "zarr3",
        "agglomerate_view_50",
        5000,
        700,
    )
    assert agg.schema_version == 4 and agg.segment_dtype == np.uint32
    ids = np.arange(0, 5001, dtype=np.uint32).reshape(-1, 1)
    mapped = agg.map(ids)
    assert mapped.shape == ids.shape and mapped.dtype == np.uint64
    np.testing.assert_array_equal(mapped.ravel(), arrays["segment_to_agglomerate"])
    for a in (0, 1, 350, 700):
        np.testing.assert_array_equal(agg.segments_of(a), members[a])
        seg = members[a].astype(np.int64)
        np.testing.assert_array_equal(agg.positions_of(a), np.stack([seg - 1, (seg - 1) * 2, (seg - 1) % 7], 1))
        edges, aff = agg.edges_of(a)
        np.testing.assert_array_equal(edges, np.stack([members[a][:-1], members[a][1:]], 1).reshape(-1, 2))
        np.testing.assert_array_equal(aff, (members[a][:-1] % 97).astype(np.float32) + 0.5)
    with pytest.raises(KeyError, match="no agglomerate 701"):
        agg.segments_of(701)


def test_map_reads_only_the_needed_chunks(tmp_path, truth):
    arrays, _ = truth
    write_zarr_group(tmp_path / "agg", arrays, chunk=64, shard=256)
    agg = AgglomerateMapping(tmp_path / "agg")
    ids = np.array([[5, 70, 63], [64, 4999, 5]], np.uint64)  # chunks 0, 1 and 78
    np.testing.assert_array_equal(agg.map(ids), arrays["segment_to_agglomerate"][ids.astype(np.int64)])
    assert agg.chunks_read == 3
    agg.map(ids[:, :2])
    assert agg.chunks_read == 3  # cached
    out = agg.map(np.array([-1, 0, 5000, 5001, 2**40], np.int64), out_of_range=7)
    assert out.tolist() == [7, 0, int(arrays["segment_to_agglomerate"][5000]), 7, 7]
    small = AgglomerateMapping(tmp_path / "agg", cache_bytes=64 * 8 * 2)  # two chunks
    for i in range(5):
        small.map(np.array([i * 64]))
    small.map(np.array([0]))
    assert small.chunks_read == 6  # chunk 0 was evicted and read again
    with pytest.raises(TypeError, match="integers"):
        agg.map(np.array([1.5]))


def test_mapping_a_large_view_is_fast(tmp_path):
    arrays, _ = make_agglomerates(200_000, 20_000, seed=3)
    write_zarr_group(tmp_path / "agg", arrays, chunk=32768, shard=32768 * 4)
    agg = AgglomerateMapping(tmp_path / "agg")
    rng = np.random.default_rng(0)
    view = rng.integers(0, 200_001, size=(1024, 1024), dtype=np.uint64)
    agg.map(view)  # reads the chunks
    t = time.perf_counter()
    out = agg.map(view)
    elapsed = time.perf_counter() - t
    np.testing.assert_array_equal(out, arrays["segment_to_agglomerate"][view.astype(np.int64)])
    assert elapsed < 2.0, f"mapping 1024² ids took {elapsed:.3f} s"  # ~35 ms idle


def test_bad_files_are_named(tmp_path, truth):
    arrays, _ = truth
    with pytest.raises(ValueError, match="no zarr.json"):
        AgglomerateMapping(tmp_path)
    write_zarr_group(tmp_path / "agg", {k: v for k, v in arrays.items() if k != "agglomerate_to_segments"})
    with pytest.raises(ValueError, match="no array 'agglomerate_to_segments'"):
        AgglomerateMapping(tmp_path / "agg")
    meta = json.loads((tmp_path / "agg" / "zarr.json").read_text())
    meta["attributes"]["voxelytics"]["artifact_class"] = "SegmentationArtifact"
    (tmp_path / "agg" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="artifact_class"):
        AgglomerateMapping(tmp_path / "agg")
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.hdf5: not an agglomerate file"):
        AgglomerateMapping(tmp_path / "junk.hdf5")


def test_hdf5_file(tmp_path, truth):
    h5py = pytest.importorskip("h5py")
    arrays, members = truth
    path = tmp_path / "agglomerate_view_50.hdf5"
    with h5py.File(path, "w") as f:
        for name, data in arrays.items():
            f.create_dataset(name, data=data, chunks=(128, *data.shape[1:]))
    with AgglomerateMapping(path) as agg:
        assert (agg.format, agg.name, agg.largest_agglomerate) == ("hdf5", "agglomerate_view_50", 700)
        np.testing.assert_array_equal(agg.map(np.arange(5001)), arrays["segment_to_agglomerate"])
        np.testing.assert_array_equal(agg.segments_of(9), members[9])


def test_hdf5_without_h5py_says_how_to_install(tmp_path):
    try:
        import h5py  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("h5py is installed")
    path = tmp_path / "a.hdf5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an HDF5 signature is enough to need h5py
    with pytest.raises(ImportError, match="pip install h5py"):
        AgglomerateMapping(path)


REFERENCE_WRITER = """
import json, sys
import numpy as np
import webknossos as wk
from webknossos.dataset.layer.segmentation_layer.attachments.agglomerate_attachment import (
    AgglomerateAttachment, AgglomerateGraph)
root, edges_file = sys.argv[1], sys.argv[2]
spec = json.load(open(edges_file))
graph = AgglomerateGraph()
for s in range(1, spec["n"] + 1):
    graph.add_segment(s, position=wk.Vec3Int(s, 2 * s, s % 5))
for (u, v), a in zip(spec["edges"], spec["affinities"]):
    graph.add_affinity_edge(u, v, affinity=a)
ds = wk.Dataset(root + "/ds", voxel_size=(11, 11, 25))
layer = ds.add_layer("segmentation", wk.SEGMENTATION_CATEGORY, dtype_per_channel="uint32",
                     largest_segment_id=spec["n"], bounding_box=wk.BoundingBox((0, 0, 0), (8, 8, 8)))
layer.add_mag(1)  # no voxels needed: only the attachment is read
AgglomerateAttachment.create_and_add_to(layer, "agglomerate_view_42", graph)
print(json.dumps({"ok": True}))
"""


@pytest.mark.reference
def test_reference_written_attachment(tmp_path):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(7)
    n = 3000
    u = rng.integers(1, n + 1, 2500)
    v = rng.integers(1, n + 1, 2500)
    keep = u != v
    pairs = {(int(min(a, b)), int(max(a, b))) for a, b in zip(u[keep], v[keep])}
    edges = sorted(pairs)
    affinities = [float(i % 13) for i in range(len(edges))]
    (tmp_path / "edges.json").write_text(json.dumps({"n": n, "edges": edges, "affinities": affinities}))
    run_reference(REFERENCE_WRITER, str(tmp_path), str(tmp_path / "edges.json"))

    # the truth, independently: connected components numbered by their smallest segment
    e = np.array(edges) - 1
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first_seen = {}
    for seg, c in enumerate(comp, start=1):
        first_seen.setdefault(c, len(first_seen) + 1)
    expected = np.array([0] + [first_seen[c] for c in comp], np.uint64)

    layer = open_webknossos(tmp_path / "ds").layer("segmentation")
    files = agglomerate_files(layer)
    assert list(files) == ["agglomerate_view_42"] and files["agglomerate_view_42"][1] == "zarr3"
    agg = AgglomerateMapping(files["agglomerate_view_42"][0])
    assert agg.largest_agglomerate == len(first_seen) and agg.n_segments == n
    np.testing.assert_array_equal(agg.map(np.arange(n + 1, dtype=np.uint32)), expected)
    affinity_of = dict(zip(edges, affinities))
    for a in (1, expected[1], expected[n], len(first_seen)):
        segs = agg.segments_of(int(a))
        np.testing.assert_array_equal(segs, np.flatnonzero(expected == a))
        np.testing.assert_array_equal(agg.positions_of(int(a)), np.stack([segs, 2 * segs, segs % 5], 1))
        got_edges, got_aff = agg.edges_of(int(a))
        want = sorted(p for p in edges if expected[p[0]] == a)
        assert sorted(map(tuple, got_edges.tolist())) == want
        assert [affinity_of[tuple(p)] for p in got_edges.tolist()] == got_aff.tolist()


def test_agglomerate_files_finds_the_datastore_folder(tmp_path, truth):
    arrays, _ = truth
    write_zarr_group(tmp_path / "ds" / "segmentation" / "agglomerates" / "view_7", arrays)
    (tmp_path / "ds" / "segmentation" / "agglomerates" / "old.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n")

    layer = Layer(
        "segmentation",
        "segmentation",
        np.dtype("uint32"),
        (1, 1, 1),
        [],
        source=str(tmp_path / "ds" / "segmentation"),
        extra={"attachments": {"agglomerates": [{"name": "ext", "path": "../other/agg", "dataFormat": "zarr3"}]}},
    )
    found = agglomerate_files(layer)
    assert found == {
        "ext": (str(tmp_path / "ds" / "../other/agg"), "zarr3"),
        "old": (str(tmp_path / "ds" / "segmentation" / "agglomerates" / "old.hdf5"), "hdf5"),
        "view_7": (str(tmp_path / "ds" / "segmentation" / "agglomerates" / "view_7"), "zarr3"),
    }
