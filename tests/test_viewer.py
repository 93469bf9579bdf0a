"""napari under xvfb: the samples open from the plugin, sit at their voxel size, and show."""

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_knossos._sample_data import sample_path

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("key", ["neuropil_knossos", "neuropil_webknossos"])
def test_open_sample_shows_neuropil(make_napari_viewer, key):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-knossos", key)
    kinds = [type(l).__name__ for l in viewer.layers]
    assert kinds == ["Image", "Labels"], kinds
    image, labels = viewer.layers
    assert image.multiscale and len(image.data) == 3
    assert labels.multiscale and len(labels.data) == 3
    assert tuple(image.scale) == tuple(labels.scale)
    assert [str(u) for u in image.units] == ["nanometer"] * 3
    assert tuple(image.axis_labels) == ("z", "y", "x")

    viewer.reset_view()
    mid = viewer.dims.nsteps[0] // 2
    viewer.dims.current_step = (mid, *viewer.dims.current_step[1:])
    labels.visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    gray = shot[..., :3].mean(axis=-1)
    assert gray.std() > 10, "image looks flat"
    labels.visible = True
    labels.opacity = 1.0
    shot_l = viewer.screenshot(canvas_only=True, flash=False)
    colourful = np.ptp(shot_l[..., :3].astype(int), axis=-1) > 40
    assert colourful.mean() > 0.2, "labels are not shown in colour"
    ids = np.unique(np.asarray(labels.data[0][mid * 1]))
    assert len(ids) > 20


def test_open_dataset_path_with_plugin(make_napari_viewer):
    viewer = make_napari_viewer()
    path = sample_path("knossos")
    layers = viewer.open(str(path.parent), plugin="napari-knossos")
    assert [l.name for l in layers] == [l.name for l in viewer.layers] and len(layers) == 2


def test_console_script_screenshot(tmp_path):
    out = tmp_path / "shot.png"
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_knossos", "--screenshot", str(out)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image

    img = np.asarray(Image.open(out))
    assert img.shape[0] > 200 and img[..., :3].std() > 10


def test_napari_reads_only_visible_cubes_of_a_huge_pyramid(make_napari_viewer):
    """Zoomed into level 0 of a 2^16-per-axis pyramid, napari reads a handful of cubes."""
    import threading

    from napari_knossos.formats.chunked import ChunkedArray
    from napari_knossos.layer_data import LazyLevel

    n = 2**16
    reads, lock = [], threading.Lock()

    def read_chunk(idx):
        with lock:
            reads.append(idx)
        return np.full((1, 128, 128, 128), 100, np.uint8)

    levels = [LazyLevel(ChunkedArray((n // f,) * 3, (128,) * 3, np.uint8, read_chunk, ("huge-gui", f)))
              for f in (1, 2, 4, 8, 16, 32, 64, 128)]
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(levels, multiscale=True, contrast_limits=[0, 255])
    viewer.dims.current_step = (n // 2, 0, 0)
    viewer.scene.camera.center = (n / 2, n / 2)
    viewer.scene.camera.zoom = 1.0
    reads.clear()
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data_level == 0
    assert 0 < len(reads) < 100, len(reads)
    assert {r[0] for r in reads} == {n // 2 // 128}
