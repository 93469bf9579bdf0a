"""Segmentation editing (issue 5): brush, 3-D fill, moving the editable window, saving.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_segmentation.py \
        [--repeat 20 --out benchmarks/results/segmentation.json]

A 512³ uint32 webKnossos zarr3 segmentation (shards 128³, chunks 32³, mags 1, 2, 4; 16³ blocks
of ids) is written first. Measured:

- one brush stab of radius 10 (2-D, mag 1) through ``EditableVolume.brush`` (goal < 5 ms), and
  through the napari session including the editable-window refresh;
- a 3-D fill of a 256³ region (one id filling it, so 16.7 M voxels change; goal < 0.5 s),
  warm (the region's chunks decoded once before);
- moving the editable window by one field of view in napari (goal < 300 ms);
- saving 100 touched 32³ chunks in place (goal < 1 s), side by side with tensorstore writing the
  same 100 chunks (one transaction) into a copy of the dataset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def ms(samples) -> dict:
    s = [1e3 * x for x in samples]
    return {"median": statistics.median(s), "min": min(s), "max": max(s), "n": len(s)}


def dataset(root: Path) -> Path:
    from napari_knossos.formats.knossos_writer import pyramid
    from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

    n, block = 512, 16
    coarse = np.arange(1, (n // block) ** 3 + 1, dtype=np.uint32).reshape((n // block,) * 3)
    seg = coarse
    for axis in range(3):
        seg = np.repeat(seg, block, axis=axis)
    seg[:256, :256, :256] = 7  # one big segment: the 3-D fill region
    mags = pyramid(seg, 3, segmentation=True)
    return write_webknossos_dataset(root / "ds", (10.0, 10.0, 10.0), [
        WkLayerSpec("segmentation", "segmentation", {2**i: m for i, m in enumerate(mags)})])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "segmentation.json"))
    args = ap.parse_args()
    from napari_knossos.annotation.volume import EditableVolume
    from napari_knossos.formats import open_dataset
    from napari_knossos.formats.cache import CHUNK_CACHE

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset(Path(tmp))
        layer = open_dataset(root).layer("segmentation")
        vol = EditableVolume(layer)
        rng = np.random.default_rng(0)
        stabs = []
        for i in range(args.repeat):
            center = (300 + i % 50, int(rng.integers(40, 470)), int(rng.integers(40, 470)))
            t = time.perf_counter()
            vol.brush((1, 1, 1), center, 10, 100_000 + i, dims=2)
            stabs.append(time.perf_counter() - t)
        results["brush_stab_r10_ms"] = ms(stabs)

        vol.read((1, 1, 1), (0, 0, 0), (256, 256, 256))  # decode the fill region once (warm)
        fills = []
        for i in range(3):
            t = time.perf_counter()
            rec = vol.fill((1, 1, 1), (128, 128, 128), 200_000 + i, dims=3, bounds=((0, 0, 0), (256, 256, 256)))
            fills.append(time.perf_counter() - t)
        results["fill_3d_256_ms"] = ms(fills)
        results["fill_voxels_changed"] = int(rec.voxels_changed)

        # saving 100 touched 32³ chunks: a fresh volume, 100 chunks of a 5x5x4 brick painted
        vol2 = EditableVolume(open_dataset(root).layer("segmentation"))
        for cz in range(4):
            for cy in range(5):
                for cx in range(5):
                    vol2.write((1, 1, 1), (32 * cz + 288, 32 * cy, 32 * cx), np.full((32, 32, 32), 9, np.uint32))
        touched = vol2.touched_chunks((1, 1, 1), (32, 32, 32))
        t = time.perf_counter()
        n = vol2.save_in_place()
        results["save_100_chunks_ms"] = 1e3 * (time.perf_counter() - t)
        results["save_chunks_written_all_mags"] = n
        results["save_mag1_chunks"] = len(touched)
        CHUNK_CACHE.clear()

        # tensorstore: the same 100 mag-1 chunks into a copy of the original dataset
        import tensorstore as ts

        copy = Path(tmp) / "copy"
        shutil.copytree(root, copy)
        store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(copy / "segmentation" / "1")}}).result()
        block = np.full((1, 32 * 5, 32 * 5, 32 * 4), 9, np.uint32)  # (c, x, y, z)
        t = time.perf_counter()
        with ts.Transaction() as txn:
            store.with_transaction(txn)[0:1, 0:160, 0:160, 288:416].write(block).result()
        results["tensorstore_100_chunks_ms"] = 1e3 * (time.perf_counter() - t)

        # moving the editable window by one field of view, in napari
        import napari
        from qtpy.QtWidgets import QApplication

        from napari_knossos.widgets.segmentation import SegmentationWidget

        viewer = napari.Viewer(show=True)
        viewer.open(str(root), plugin="napari-knossos")
        widget = SegmentationWidget(viewer)
        viewer.window.add_dock_widget(widget)
        session = widget.session
        viewer.dims.set_point(0, 300 * 10.0)
        viewer.scene.camera.zoom = 2.0
        viewer.scene.camera.center = (3000.0, 2560.0, 1000.0)
        QApplication.processEvents()
        session.relocate()
        moves = []
        width = viewer.canvas.size[1] / viewer.scene.camera.zoom
        for i in range(1, 8):
            t = time.perf_counter()
            viewer.scene.camera.center = (3000.0, 2560.0, 1000.0 + i * width)
            session.relocate()
            QApplication.processEvents()
            moves.append(time.perf_counter() - t)
        results["move_window_one_view_ms"] = ms(moves)
        results["window_shape"] = list(session.window.data.shape)
        stabs = []
        for i in range(args.repeat):
            world = np.array([3000.0, 2560.0 + 20 * (i % 10), 1000.0 + 7 * width])
            t = time.perf_counter()
            session.paint_at(world)
            stabs.append(time.perf_counter() - t)
        results["session_brush_stab_with_window_ms"] = ms(stabs)
        viewer.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key:36s} median {value['median']:9.2f} ms (min {value['min']:.2f}, max {value['max']:.2f}, n {value['n']})")
        else:
            print(f"{key:36s} {value}")


if __name__ == "__main__":
    sys.exit(main())
