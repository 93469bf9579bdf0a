import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def copy_data(tmp_path):
    """Copy ``tests/data/<name>`` into a fresh tmp folder and return its path."""

    def _copy(name: str) -> Path:
        src = DATA / name
        dst = tmp_path / Path(name).name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    return _copy


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch) -> Path:
    """No test reads or writes the user's real napari-knossos settings: they live here."""
    monkeypatch.setenv("NAPARI_KNOSSOS_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"
