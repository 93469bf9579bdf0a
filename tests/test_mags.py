"""Mag names (formats/mags.py): one parser and one formatter, and the callers that use them."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest

from napari_knossos.formats.mags import mag_name, parse_mag
from napari_knossos.formats.model import Mag


def test_mag_name():
    assert [mag_name(m) for m in (1, 2, (2, 2, 2), (2, 2, 1), np.array([4, 4, 2]), (2.0, 2.0, 2.0))] == [
        "1", "2", "2", "2-2-1", "4-4-2", "2"]  # fmt: skip
    assert mag_name((1.5, 1.5, 1)) == "1.5-1.5-1"
    assert Mag((2.0, 2.0, 1.0), None).name == "2-2-1"


def test_parse_mag_forms():
    assert parse_mag("2") == (2, 2, 2)
    assert parse_mag(" 2-2-1 ") == (2, 2, 1)
    assert parse_mag(4) == (4, 4, 4)
    assert parse_mag([2, 2, 1]) == (2, 2, 1)
    assert parse_mag("2,2,1", commas=True) == (2, 2, 1)
    assert parse_mag("1.5", integer=False) == (1.5, 1.5, 1.5)
    assert parse_mag("2-2-1", integer=False) == (2.0, 2.0, 1.0)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ("0", {}, "must be >= 1"),
        ("2,2,1", {}, "expected a mag like 2 or 2-2-1"),  # commas only where asked for
        ("1-2", {"commas": True}, "expected a mag like"),
        ("x", {}, "expected a mag like"),
        ([1, 2], {}, "expected a mag like"),
        (1.5, {}, "whole numbers"),
        ("0", {"integer": False}, "positive"),
        ("nan", {"integer": False}, "expected a mag like"),
    ],
)
def test_parse_mag_errors_name_the_source(value, kwargs, message):
    with pytest.raises(ValueError, match=rf"^ds/datasource-properties\.json: mags\[0\]: .*{message}"):
        parse_mag(value, "ds/datasource-properties.json: mags[0]", **kwargs)


def test_webknossos_parse_mag_names_file_and_key():
    from napari_knossos.formats.webknossos import _Props
    from napari_knossos.formats.webknossos import parse_mag as parse_json_mag

    assert parse_json_mag("2-2-1") == (2, 2, 1)
    assert parse_json_mag([4, 4, 2]) == (4, 4, 2)
    with pytest.raises(ValueError, match=r"^p\.json: dataLayers\[0\]\.mags\[1\]\.mag: .*got '2-x'"):
        parse_json_mag("2-x", "dataLayers[0].mags[1].mag", _Props("p.json"))
    with pytest.raises(ValueError, match=r"^p\.json: m\[1\]: expected an integer"):
        parse_json_mag([1, "a", 1], "m", _Props("p.json"))
    # without a file the message starts with the key once (it was "mag: mag: ...")
    for value, pattern in (("2-x", r"^mag: expected a mag like"), ("0", r"^mag: mag factors must be >= 1"),
                           ([1, "a", 1], r"^mag\[1\]: expected an integer"), (1.5, r"^mag: expected an integer")):
        with pytest.raises(ValueError, match=pattern):
            parse_json_mag(value)
    with pytest.raises(ValueError, match=r"^mags\[0\]\.mag: mag factors must be >= 1, got \(0, 1, 1\)"):
        parse_json_mag([0, 1, 1], "mags[0].mag")


def test_cli_coarsest_option():
    from napari_knossos.cli import _parse_coarsest

    assert _parse_coarsest("16") == 16
    assert _parse_coarsest("16-16-8") == (16, 16, 8)
    assert _parse_coarsest("16,16,8") == (16, 16, 8)
    with pytest.raises(argparse.ArgumentTypeError, match="--coarsest: expected a mag like"):
        _parse_coarsest("16-8")


def test_mesh_parse_mag_accepts_floats_and_commas():
    from napari_knossos.processing.mesh import parse_mag as mesh_parse_mag

    assert mesh_parse_mag("2,2,1") == (2.0, 2.0, 1.0)
    assert mesh_parse_mag((1, 1, 0.5)) == (1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="--mag: expected a mag like"):
        mesh_parse_mag("a-b-c", "--mag")


def test_volume_zip_member_with_a_bad_mag_names_the_member(tmp_path):
    import zipfile

    from napari_knossos.formats.volume_zip import read_volume_zip

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("0/header.wkw", b"WKW")
    path = tmp_path / "annotation.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("annotation.nml", '<things><volume id="1" location="data_1.zip" format="wkw"/></things>')
        zf.writestr("data_1.zip", data.getvalue())
    with pytest.raises(ValueError, match=r"annotation\.zip/data_1\.zip.*0/header\.wkw: mag factors must be >= 1"):
        read_volume_zip(path)
