"""The bundled sample: the generator reproduces the stored files, the data look like neuropil
(dark membranes on segment borders, many segments), both copies agree, the size limit holds,
the sample annotation's meshes are closed surfaces oriented outwards."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import cramjam
import numpy as np
import pytest
import zarr
from PIL import Image

from napari_knossos.annotation.kzip import read_kzip
from napari_knossos.formats import open_dataset
from napari_knossos.sample_data import KNOSSOS_SAMPLE, SAMPLE_DIR, WEBKNOSSOS_SAMPLE, generate, generate_annotation

SIZE_LIMIT = 10_000_000
TEXT_SUFFIXES = (".conf", ".toml", ".json")


def _data_files(root: Path) -> dict[str, Path]:
    """Relative path -> file for everything generate.py writes (knossos/ and webknossos/)."""
    files = {}
    for sub in ("knossos", "webknossos"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path
    return files


def _decode(path: Path) -> np.ndarray:
    """Decoded voxels of one KNOSSOS cube or one zarr shard's array (independent of the readers)."""
    name = path.name
    if name.endswith(".png"):
        return np.asarray(Image.open(path))
    if name.endswith(".seg.sz.zip"):
        with zipfile.ZipFile(path) as zf:
            (info,) = zf.infolist()
            assert info.filename == name[: -len(".zip")]
            return np.frombuffer(bytes(cramjam.snappy.decompress_raw(zf.read(info))), "<u8")
    raise AssertionError(f"unexpected file {path}")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    facts = generate.write_sample(out)
    assert facts["seconds_total"] < 60
    return out


@pytest.fixture(scope="module")
def stored_volumes():
    ds = open_dataset(KNOSSOS_SAMPLE)
    image = next(l for l in ds.layers if not l.is_segmentation)
    seg = next(l for l in ds.layers if l.is_segmentation)
    return [np.asarray(m.array[:]) for m in image.mags], [np.asarray(m.array[:]) for m in seg.mags]


def test_generator_reproduces_the_stored_files(regenerated):
    stored, fresh = _data_files(SAMPLE_DIR), _data_files(regenerated)
    assert sorted(stored) == sorted(fresh)
    for rel, path in stored.items():
        if rel.endswith(TEXT_SUFFIXES):
            assert path.read_text() == fresh[rel].read_text(), rel
        elif rel.startswith("knossos/"):
            assert np.array_equal(_decode(path), _decode(fresh[rel])), rel
    # webKnossos shards: compare the decoded arrays of every mag
    for layer in ("color", "segmentation"):
        for mag in ("1", "2", "4"):
            a = zarr.open_array(str(WEBKNOSSOS_SAMPLE / layer / mag), mode="r")[:]
            b = zarr.open_array(str(regenerated / "webknossos" / layer / mag), mode="r")[:]
            assert a.dtype == b.dtype and np.array_equal(a, b), (layer, mag)


def test_knossos_and_webknossos_copies_hold_the_same_voxels(stored_volumes):
    images, segs = stored_volumes
    wk = open_dataset(WEBKNOSSOS_SAMPLE)
    assert [l.name for l in wk.layers] == ["color", "segmentation"]
    for layer, volumes in zip(wk.layers, (images, segs)):
        assert layer.voxel_size == pytest.approx(generate.VOXEL_SIZE_NM)
        assert [m.name for m in layer.mags] == ["1", "2", "4"]
        for mag, volume in zip(layer.mags, volumes):
            assert np.array_equal(np.asarray(mag.array[:]), volume), (layer.name, mag.name)


def test_sample_geometry_and_mags(stored_volumes):
    images, segs = stored_volumes
    nx, ny, nz = generate.SHAPE_XYZ
    assert (nx, ny, nz) == (256, 256, 128)
    assert [a.shape for a in images] == [(nz, ny, nx), (nz // 2, ny // 2, nx // 2), (nz // 4, ny // 4, nx // 4)]
    assert images[0].dtype == np.uint8 and segs[0].dtype == np.uint64
    # mags 2 and 4 are the 2x2x2 mean / mode of the level below
    from napari_knossos.formats.knossos_writer import downsample_mean, downsample_mode

    assert np.array_equal(images[1], downsample_mean(images[0]))
    assert np.array_equal(segs[2], downsample_mode(segs[1]))


def test_sample_looks_like_neuropil(stored_volumes):
    images, segs = stored_volumes
    image, seg = images[0], segs[0]
    ids = np.unique(seg)
    assert ids[0] == 0 and len(ids) - 1 >= 50
    # every slice cuts many neurites
    assert min(len(np.unique(seg[z])) - 1 for z in range(0, seg.shape[0], 8)) >= 50
    membrane = seg == 0
    assert 0.05 < membrane.mean() < 0.3
    # membranes are dark, cytoplasm light
    assert image[membrane].mean() < 80
    assert image[~membrane].mean() > 140
    # image and segmentation are aligned: shifting the membrane mask makes it lighter
    aligned = image[membrane].mean()
    for axis in (1, 2):
        for shift in (-2, 2):
            assert image[np.roll(membrane, shift, axis=axis)].mean() > aligned + 30
    # neurites run mostly along z: most voxels keep their id in the next slice
    assert (seg[1:] == seg[:-1]).mean() > 0.8
    # the image has texture (not flat per segment) and uses a good part of the gray range
    assert np.percentile(image, 1) < 40 and np.percentile(image, 99) > 190
    profile = image[64][seg[64] == seg[64, 128, 128]]
    assert profile.std() > 1.5


def test_sample_size_limit():
    files = [
        Path(dirpath) / name
        for dirpath, dirnames, names in os.walk(SAMPLE_DIR)
        if "__pycache__" not in Path(dirpath).parts
        for name in names
        if not name.endswith(".pyc")
    ]
    total = sum(p.stat().st_size for p in files)
    assert total <= SIZE_LIMIT, f"sample_data holds {total} bytes"
    assert (SAMPLE_DIR / "README.md").is_file() and (SAMPLE_DIR / "generate.py").is_file()


def _directed_edges(faces: np.ndarray) -> np.ndarray:
    """Every face's three edges (a, b) in winding order."""
    return faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def test_sample_annotation_meshes_are_closed_and_point_outwards():
    meshes = read_kzip(generate_annotation.OUT).meshes
    assert meshes
    for tree_id, mesh in meshes.items():
        vertices, faces = mesh.vertices.astype(np.float64), mesh.faces
        # closed and consistently wound: each directed edge once, and its reverse in a neighbouring face
        edges = _directed_edges(faces)
        keys = edges[:, 0] * len(vertices) + edges[:, 1]
        reverse = edges[:, 1] * len(vertices) + edges[:, 0]
        assert len(np.unique(keys)) == len(keys), tree_id
        assert np.isin(reverse, keys).all(), tree_id
        a, b, c = (vertices[faces[:, k]] for k in range(3))
        signed_volume = np.einsum("ij,ij->", a, np.cross(b, c)) / 6
        assert signed_volume > 0, (tree_id, signed_volume)
        if mesh.normals is not None:
            outward = ((vertices - vertices.mean(axis=0)) * mesh.normals).sum(axis=1)
            assert outward.mean() > 0 and (outward > 0).mean() > 0.5, tree_id


def test_annotation_generator_reproduces_the_stored_meshes(tmp_path):
    out = tmp_path / "again.k.zip"
    assert generate_annotation.main([str(out)]) == 0
    stored, fresh = read_kzip(generate_annotation.OUT).meshes, read_kzip(out).meshes
    assert sorted(stored) == sorted(fresh)
    assert all(stored[t].equals(fresh[t]) for t in stored)


def test_generator_rejects_wrong_usage(capsys):
    assert generate.main([]) == 2
    assert "usage" in capsys.readouterr().out
