"""Datasets over HTTP from a real server on 127.0.0.1: KNOSSOS, webKnossos, OME-Zarr."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_knossos._reader import get_reader
from napari_knossos.formats import open_dataset
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.store import RemoteAccessError

from .http_server import serve

DATA = Path(__file__).parent / "data"


def raw_value(x, y, z):  # tests/data/knossos/tiny_dataset formula (expected.json)
    return (x + 2 * y + 3 * z) % 256


@pytest.fixture
def tiny(tmp_path):
    dst = tmp_path / "tiny_dataset"
    shutil.copytree(DATA / "knossos" / "tiny_dataset", dst)
    return dst


def _check_tiny(ds):
    color = next(l for l in ds.layers if l.category == "color")
    arr = color.mags[0].array
    z, y, x = np.meshgrid(np.arange(40), np.arange(48), np.arange(64), indexing="ij")
    np.testing.assert_array_equal(arr[:], raw_value(x, y, z).astype(np.uint8))


@pytest.mark.parametrize("conf", ["knossos.conf", "tiny.k.toml", "mag1/knossos.conf"])
def test_knossos_over_http(tiny, conf):
    CHUNK_CACHE.clear()
    with serve(tiny.parent) as srv:
        url = f"{srv.url}/tiny_dataset/{conf}"
        reader = get_reader(url)
        assert reader is not None
        layers = reader(url)
        assert layers[0][1]["scale"] == (25.0, 10.0, 10.0)
        _check_tiny(open_dataset(url))


def test_knossos_http_basic_auth(tiny):
    CHUNK_CACHE.clear()
    with serve(tiny.parent, credentials="ann:pw") as srv:
        host = srv.url.removeprefix("http://")
        _check_tiny(open_dataset(f"http://ann:pw@{host}/tiny_dataset/tiny.k.toml"))
        with pytest.raises(RemoteAccessError, match="401"):
            open_dataset(f"{srv.url}/tiny_dataset/tiny.k.toml")
        # credentials in the conf itself (TOML URL with userinfo)
        toml = (tiny / "tiny.k.toml").read_text()
        (tiny / "auth.k.toml").write_text(
            toml.replace('Name = "tiny"', f'Name = "tiny"\nURL = "http://ann:pw@{host}/tiny_dataset/"')
        )
    with serve(tiny.parent, credentials="ann:pw") as srv2:  # new port: rewrite the URL
        host2 = srv2.url.removeprefix("http://")
        (tiny / "auth.k.toml").write_text((tiny / "auth.k.toml").read_text().replace(host, host2))
        CHUNK_CACHE.clear()
        _check_tiny(open_dataset(str(tiny / "auth.k.toml")))


def test_http_404_dataset_is_not_ours(tmp_path):
    with serve(tmp_path) as srv:
        assert get_reader(f"{srv.url}/nothing/knossos.conf") is None
        assert get_reader(f"{srv.url}/nothing.zarr") is None


def test_ome_zarr_over_http(tmp_path):
    import zarr

    root = tmp_path / "img.ome.zarr"
    g = zarr.open_group(str(root), mode="w", zarr_format=3)
    data = (np.arange(16 * 32 * 48, dtype=np.uint16).reshape(16, 32, 48) % 1000).astype(np.uint16)
    g.create_array("0", data=data, chunks=(8, 16, 16))
    g.create_array("1", data=data[::2, ::2, ::2], chunks=(8, 16, 16))
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    g.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{
            "axes": axes,
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [30.0, 8.0, 8.0]}]},
                {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [60.0, 16.0, 16.0]}]},
            ],
        }],
    }
    CHUNK_CACHE.clear()
    with serve(tmp_path) as srv:
        url = f"{srv.url}/img.ome.zarr"
        assert get_reader(url) is not None
        (d, kw, kind), = get_reader(url)(url)
        assert kind == "image" and kw["scale"] == (30.0, 8.0, 8.0)
        np.testing.assert_array_equal(np.asarray(d[0][5, 3:20, 7:40]), data[5, 3:20, 7:40])
        np.testing.assert_array_equal(np.asarray(d[1][:]), data[::2, ::2, ::2])


def test_webknossos_over_http(tmp_path):
    src = DATA / "webknossos" / "wkw_dataset"
    if not src.exists():
        pytest.skip("webknossos fixture not copied")
    shutil.copytree(src, tmp_path / "wkw_dataset")
    CHUNK_CACHE.clear()
    local = open_dataset(str(tmp_path / "wkw_dataset"))
    with serve(tmp_path) as srv:
        remote = open_dataset(f"{srv.url}/wkw_dataset")
        for name in ("color", "segmentation"):
            a = local.layer(name).mags[1].array
            b = remote.layer(name).mags[1].array
            np.testing.assert_array_equal(a[10:50, 5:90, 17:100], b[10:50, 5:90, 17:100])


def test_open_missing_url_names_404(tmp_path):
    with serve(tmp_path) as srv:
        with pytest.raises(ValueError, match="HTTP 404"):
            open_dataset(f"{srv.url}/nothing/knossos.conf")
    with serve(tmp_path, credentials="a:b") as srv:
        with pytest.raises((ValueError, RemoteAccessError), match="401"):
            open_dataset(f"{srv.url}/secret.zarr")
