"""The ``napari-knossos`` subcommands (info, convert, downsample): headless, no napari or Qt import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_knossos import cli
from napari_knossos.__main__ import main as console_main
from napari_knossos.formats import open_dataset

from .http_server import serve

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "napari_knossos" / "sample_data"
SRC = Path(__file__).resolve().parents[1] / "src"


def test_info_text_and_json(capsys):
    assert cli.main(["info", str(SAMPLE / "knossos")]) == 0
    text = capsys.readouterr().out
    assert "layer 'synthetic_neuropil': color, uint8, knossos" in text
    assert "layer 'segmentation': segmentation, uint64, knossos" in text
    assert "voxel size 10 x 10 x 25 nm" in text and "mag 4        64 x 64 x 32 voxels" in text

    assert cli.main(["info", "--json", str(SAMPLE / "webknossos")]) == 0
    info = json.loads(capsys.readouterr().out)
    dataset = open_dataset(SAMPLE / "webknossos")
    assert info["format"] == "webknossos" and [l["name"] for l in info["layers"]] == [l.name for l in dataset.layers]
    seg = info["layers"][1]
    assert seg["largest_segment_id"] == dataset.layers[1].largest_segment_id
    assert [m["mag"] for m in seg["mags"]] == ["1", "2", "4"]
    assert seg["mags"][1]["shape_xyz"] == [128, 128, 64] and seg["mags"][0]["chunk_xyz"] == [32, 32, 32]
    assert seg["size_xyz"] == [256, 256, 128] and seg["voxel_size_nm_xyz"] == [10.0, 10.0, 25.0]


def test_console_script_runs_subcommands_without_napari_or_qt(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from napari_knossos.__main__ import main
        assert main(['info', {str(SAMPLE / 'knossos')!r}]) == 0
        assert main(['convert', {str(SAMPLE / 'knossos')!r}, {str(tmp_path / 'out.ome.zarr')!r},
                     '--layer', 'segmentation', '--no-progress']) == 0
        bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'vispy'))
        assert not bad, bad
        print('headless ok')
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "headless ok" in proc.stdout and "layer 'synthetic_neuropil'" in proc.stdout
    assert [l.name for l in open_dataset(tmp_path / "out.ome.zarr").layers] == ["segmentation"]


def test_convert_and_downsample_commands(tmp_path, capsys):
    src = tmp_path / "knossos"
    shutil.copytree(SAMPLE / "knossos", src)
    dst = tmp_path / "wk"
    assert console_main(["convert", str(src), str(dst), "--to", "wk-zarr3", "--mags", "1", "--no-downsample",
                         "--chunk", "32", "--shard", "64", "--no-progress"]) == 0
    assert "layer 'synthetic_neuropil': color, uint8, zarr3" in capsys.readouterr().out
    assert [m.name for m in open_dataset(dst).layers[0].mags] == ["1"]

    assert cli.main(["downsample", str(dst), "--layer", "segmentation", "--anisotropic", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == "segmentation: built mags 2-2-1, 4-4-2"
    out = open_dataset(dst)
    assert [m.name for m in out.layer("segmentation").mags] == ["1", "2-2-1", "4-4-2"]
    assert [m.name for m in out.layer("synthetic_neuropil").mags] == ["1"]
    mag1 = np.asarray(out.layer("segmentation").mags[0].array)
    np.testing.assert_array_equal(mag1, np.asarray(open_dataset(src).layers[1].mags[0].array))
    # image layer: the ladder of the other layer is reused, mean of 2 x 2 x 1 blocks
    assert cli.main(["downsample", str(dst), "--mode", "mean", "--no-progress"]) == 0
    assert "synthetic_neuropil: built mags 2-2-1, 4-4-2" in capsys.readouterr().out
    image = open_dataset(dst).layer("synthetic_neuropil")
    m1 = np.asarray(image.mags[0].array).astype(np.int64)
    want = (m1.reshape(128, 128, 2, 128, 2).sum(axis=(2, 4)) + 2) // 4
    np.testing.assert_array_equal(np.asarray(image.mag("2-2-1").array), want)


def test_errors_exit_1_with_a_message(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path)]) == 1
    assert "not a KNOSSOS, webKnossos or Zarr dataset" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert cli.main(["convert", str(SAMPLE / "knossos"), str(tmp_path / "taken"), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli.main(["convert", str(SAMPLE / "knossos"), str(tmp_path / "x"), "--layer", "nope"]) == 1
    err = capsys.readouterr().err
    assert "napari-knossos convert: error:" in err and "no layer 'nope'" in err and "segmentation" in err
    with pytest.raises(SystemExit):
        cli.main(["convert", str(SAMPLE / "knossos"), str(tmp_path / "x"), "--to", "tiff"])


def test_scheduler_option_runs_on_a_local_cluster(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        assert cli.main(["convert", str(SAMPLE / "webknossos"), str(tmp_path / "k"), "--to", "knossos",
                         "--scheduler", lc.scheduler_address]) == 0
    capsys.readouterr()
    src, out = open_dataset(SAMPLE / "webknossos"), open_dataset(tmp_path / "k")
    for a, b in zip(src.layers, out.layers):
        for mag in a.mags:
            np.testing.assert_array_equal(np.asarray(b.mag(mag.name).array), np.asarray(mag.array).astype(b.dtype))


def test_commands_of_other_modules_plug_in(tmp_path, monkeypatch, capsys):
    (tmp_path / "extra_commands.py").write_text(textwrap.dedent("""
        def _run(args):
            print("hello", args.name)
            return 3

        def add_cli_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("name")
            p.set_defaults(run=_run)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("extra_commands", "napari_knossos.processing.no_such_module"))
    assert {"info", "convert", "downsample", "hello"} <= set(cli.command_names())
    assert console_main(["hello", "world"]) == 3
    assert capsys.readouterr().out == "hello world\n"


def test_info_and_convert_from_a_url(tmp_path, capsys):
    with serve(SAMPLE) as srv:
        url = f"{srv.url}/webknossos"
        assert cli.main(["info", url]) == 0
        assert f"webknossos  (webknossos)  {url}" in capsys.readouterr().out
        assert cli.main(["convert", url, str(tmp_path / "copy.ome.zarr"), "--layer", "color", "--no-progress"]) == 0
    capsys.readouterr()
    src, out = open_dataset(SAMPLE / "webknossos").layer("color"), open_dataset(tmp_path / "copy.ome.zarr").layers[0]
    for mag in src.mags:
        np.testing.assert_array_equal(np.asarray(out.mag(mag.name).array), np.asarray(mag.array))
