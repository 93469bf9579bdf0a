"""Annotation files through the npe2 reader and writers: NML, .k.zip, SWC, PLY, and the sample."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Points, Surface, Vectors

from napari_knossos._reader import get_reader, read_annotations
from napari_knossos._sample_data import annotation_path
from napari_knossos._writer import write_kzip, write_nml, write_ply, write_swc
from napari_knossos.annotation.kzip import read_kzip
from napari_knossos.annotation.nml import read_nml
from napari_knossos.annotation.ply import read_ply

DATA = Path(__file__).parent / "data"


@pytest.fixture
def knossos_nml(tmp_path) -> Path:
    """The KNOSSOS-dialect annotation.xml of the synthetic .k.zip fixture, as a .nml file."""
    import zipfile

    out = tmp_path / "synthetic.nml"
    out.write_bytes(zipfile.ZipFile(DATA / "kzip" / "synthetic.k.zip").read("annotation.xml"))
    return out


def _layers(layer_data):
    made = []
    for data, kwargs, kind in layer_data:
        cls = {"points": Points, "vectors": Vectors, "surface": Surface}[kind]
        made.append(cls(data, **kwargs))
    return made


def _writer_input(layers):
    """What napari hands a multi-layer writer: [(data, meta, type)]."""
    return [(l.data, l._get_state(), l._type_string) for l in layers]


def test_reader_opens_knossos_nml_with_expected_positions(knossos_nml):
    path = str(knossos_nml)
    reader = get_reader(path)
    assert reader is not None
    (pts, pkw, pt), (vec, vkw, vt) = reader(path)
    assert (pt, vt) == ("points", "vectors")
    ids = pkw["features"]["node_id"].tolist()
    pos = {i: tuple(p[::-1]) for i, p in zip(ids, pts)}
    assert pos[1] == (10, 10, 5) and pos[3] == (30, 12, 6) and pos[7] == (45, 30, 10)  # 0-based
    assert pkw["scale"] == (25.0, 10.0, 10.0) and len(vec) == 4


def test_several_nml_files_merge(tmp_path, knossos_nml):
    a = tmp_path / "a.nml"
    b = tmp_path / "b.nml"
    shutil.copy(knossos_nml, a)
    shutil.copy(knossos_nml, b)
    layers = read_annotations([str(a), str(b)])
    skel = layers[0][1]["metadata"]["napari_knossos_skeleton"]
    assert skel.num_nodes == 14 and len(skel.trees) == 6 and len(skel.synapses()) == 2


def test_nml_write_reflects_points_edits(tmp_path, knossos_nml):
    points, vectors = _layers(read_annotations(str(knossos_nml)))
    row = points.features["node_id"].tolist().index(3)
    points.data[row] = [9, 19, 39]  # moved with napari's tools (data edited in place)
    points.remove([points.features["node_id"].tolist().index(6)])  # deleted
    points.add([[4, 4, 4]])  # added with napari's add tool
    out = tmp_path / "edited.nml"
    assert write_nml(str(out), _writer_input([points, vectors])) == [str(out)]
    skel = read_nml(out)
    assert skel.dialect == "knossos"  # came from KNOSSOS, saved as KNOSSOS
    np.testing.assert_array_equal(skel.position(3), [39, 19, 9])
    assert not skel.has_node(6) and skel.num_nodes == 7
    assert any((skel.positions() == [4, 4, 4]).all(axis=1))
    assert "<nodes_0_based" not in out.read_text()


def test_plain_points_layer_writes_a_tree(tmp_path):
    points = Points(np.array([[1, 2, 3], [4, 5, 6]]), scale=(25, 10, 10))
    out = tmp_path / "plain.nml"
    write_nml(str(out), _writer_input([points]))
    skel = read_nml(out)
    assert skel.num_nodes == 2 and skel.parameters.scale == (10.0, 10.0, 25.0)
    np.testing.assert_array_equal(skel.positions(), [[3, 2, 1], [6, 5, 4]])


def test_sample_annotation_opens_with_mesh_and_round_trips(tmp_path):
    layers = read_annotations(str(annotation_path()))
    kinds = [k for _, _, k in layers]
    assert kinds[:2] == ["points", "vectors"] and "surface" in kinds
    ann = read_kzip(annotation_path())
    skel = ann.skeleton
    neurites = [t for t in skel.trees.values() if not t.is_synapse]
    assert len(neurites) >= 10 and len(skel.synapses()) >= 3
    assert all(s["pre_node"] and s["post_node"] for s in skel.synapses())
    assert len(skel.branchpoints) >= 3 and len(skel.comments) >= 10 and len(ann.objects) >= 10
    assert ann.meshes and all(len(m.faces) > 100 for m in ann.meshes.values())
    made = _layers(layers)
    out = tmp_path / "again.k.zip"
    write_kzip(str(out), _writer_input(made))
    back = read_kzip(out)
    assert back.skeleton.num_nodes == skel.num_nodes and back.skeleton.num_edges == skel.num_edges
    np.testing.assert_array_equal(back.skeleton.positions(), skel.positions())
    assert [o.supervoxels for o in back.objects] == [o.supervoxels for o in ann.objects]
    assert set(back.meshes) == set(ann.meshes)
    np.testing.assert_allclose(next(iter(back.meshes.values())).vertices, next(iter(ann.meshes.values())).vertices, atol=1e-3)


def test_sample_annotation_nodes_lie_on_their_neurites():
    from napari_knossos._sample_data import sample_path
    from napari_knossos.formats import open_dataset

    seg = next(l for l in open_dataset(str(sample_path("knossos"))).layers if l.is_segmentation).mags[0].array
    skel = read_kzip(annotation_path()).skeleton
    for tree in skel.trees.values():
        if tree.is_synapse:
            continue
        ids = {int(seg[int(z), int(y), int(x)]) for x, y, z in skel.positions()[skel.nodes["tree"] == tree.id]}
        assert len(ids - {0}) <= 2, (tree.name, ids)  # one neurite (a branch may touch a neighbour)


def test_generator_reproduces_the_sample_annotation(tmp_path):
    from napari_knossos.sample_data import generate_annotation

    out = tmp_path / "gen.k.zip"
    generate_annotation.main([str(out)])
    a, b = read_kzip(out), read_kzip(annotation_path())
    for col in a.skeleton.nodes:
        np.testing.assert_array_equal(a.skeleton.nodes[col], b.skeleton.nodes[col])
    np.testing.assert_array_equal(a.skeleton.edges, b.skeleton.edges)
    assert a.skeleton.comments == b.skeleton.comments and a.objects == b.objects


def test_swc_and_ply_writers(tmp_path):
    layers = _layers(read_annotations(str(annotation_path())))
    points, vectors, surface = layers[0], layers[1], layers[2]
    paths = write_swc(str(tmp_path / "s.swc"), _writer_input([points, vectors]))
    assert len(paths) >= 10 and all(Path(p).read_text().strip() for p in paths)
    assert get_reader(paths[0]) is not None
    ply = tmp_path / "m.ply"
    write_ply(str(ply), surface.data, surface._get_state())
    mesh = read_ply(ply)
    ann = read_kzip(annotation_path())
    np.testing.assert_allclose(mesh.vertices, next(iter(ann.meshes.values())).vertices, atol=1e-3)
    assert get_reader(str(ply)) is not None
