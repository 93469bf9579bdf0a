"""The manifest napari loads and the sample data are found in wheel and editable installs."""

import zipfile
from importlib.resources import files
from pathlib import Path

import npe2

ROOT = Path(__file__).resolve().parents[1]


def test_root_manifest_is_the_package_manifest():
    root, pkg = ROOT / "napari.yaml", ROOT / "src" / "napari_knossos" / "napari.yaml"
    assert root.read_text() == pkg.read_text()
    assert (ROOT / "sample_data").resolve() == (ROOT / "src" / "napari_knossos" / "sample_data").resolve()


def test_installed_manifest_resolves_and_is_valid():
    manifest = npe2.PluginManifest.from_distribution("napari-knossos")
    assert manifest.name == "napari-knossos"
    ids = {c.id for c in manifest.contributions.commands}
    for reader in manifest.contributions.readers:
        assert reader.command in ids
    keys = {s.key for s in manifest.contributions.sample_data}
    assert {"neuropil_knossos", "neuropil_webknossos"} <= keys


def test_sample_data_found_through_the_installed_package():
    root = Path(str(files("napari_knossos") / "sample_data"))
    assert list((root / "knossos").glob("*.k.toml")), root
    assert (root / "webknossos" / "datasource-properties.json").is_file()


def test_wheel_contains_manifest_and_sample(tmp_path):
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_knossos/napari.yaml" in names
    assert any(n.startswith("napari_knossos/sample_data/knossos/") and n.endswith(".k.toml") for n in names)
    assert any(n.startswith("napari_knossos/sample_data/webknossos/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "napari_knossos:napari.yaml" in zipfile.ZipFile(wheel).read(entry).decode()
