"""Meshes of 100 segments (issue 6): time per segment on the local threaded scheduler.

    .venv/bin/python benchmarks/bench_mesh.py [--repeat 3 --out benchmarks/results/mesh.json]

Two segmentations:

- the bundled sample (KNOSSOS, 256 × 256 × 128, 10 × 10 × 25 nm, mags 1, 2, 4): the 100
  largest segments, at mag 1 and mag 2;
- a generated webKnossos zarr3 dataset (384³, 10 nm, shards 128³, chunks 32³, mags 1, 2, 4)
  with 100 random ellipsoids (radii 10–40 voxels, 3 k–270 k voxels each), at mag 1.

Each run goes through :func:`meshes_for_segments` (one scan of the coarsest mag for all
boxes, then one task per segment; Taubin smoothing 10 iterations, no decimation) and again with
decimation to 2000 faces (quadric when fast-simplification is installed; vertex clustering
too on the generated data). Reported: wall time per segment (median of ``--repeat`` runs, the
decoded-chunk cache cleared and the dataset reopened before each) and triangles per mesh;
the generated set also on the ``sync`` scheduler (one thread) and on dask's local process pool,
for the speed-up from threads (marching cubes and smoothing hold the GIL much of the time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def generated(root: Path) -> tuple[Path, list[int]]:
    from napari_knossos.formats.knossos_writer import pyramid
    from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

    n = 384
    rng = np.random.default_rng(6)
    seg = np.zeros((n, n, n), np.uint32)
    z, y, x = np.ogrid[:n, :n, :n]
    ids = []
    for k in range(100):
        r = rng.uniform(10, 40, 3)
        c = rng.uniform(r + 1, n - r - 1)
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, n)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        inside = (((z[sl[0]] - c[0]) / r[0]) ** 2 + ((y[:, sl[1]] - c[1]) / r[1]) ** 2
                  + ((x[..., sl[2]] - c[2]) / r[2]) ** 2) <= 1
        seg[sl][inside] = k + 1  # later ellipsoids cut into earlier ones
        ids.append(k + 1)
    mags = pyramid(seg, 3, segmentation=True)
    path = write_webknossos_dataset(root / "blobs", (10.0, 10.0, 10.0), [
        WkLayerSpec("segmentation", "segmentation", {2**i: m for i, m in enumerate(mags)})])
    present = set(np.unique(seg).tolist())
    return path, [i for i in ids if i in present]


def run(path, ids, mag, repeat: int, target_faces=None, scheduler=None, decimation="auto") -> dict:
    from napari_knossos.formats.cache import CHUNK_CACHE
    from napari_knossos.processing.mesh import _open_path, meshes_for_segments

    walls, meshes = [], {}
    for _ in range(repeat):
        CHUNK_CACHE.clear()
        _open_path.cache_clear()
        t = time.perf_counter()
        meshes = meshes_for_segments(str(path), ids, mag, target_faces=target_faces, decimation=decimation,
                                     scheduler=scheduler, progress=False)
        walls.append(time.perf_counter() - t)
    faces = [len(m.faces) for m in meshes.values()]
    wall = statistics.median(walls)
    return {"segments": len(meshes), "mag": mag, "scheduler": scheduler or "threads", "target_faces": target_faces,
            "decimation": decimation if target_faces else None, "wall_s": round(wall, 3),
            "ms_per_segment": round(1e3 * wall / len(meshes), 2), "runs_s": [round(w, 3) for w in walls],
            "faces_median": int(statistics.median(faces)), "faces_max": max(faces)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "mesh.json"))
    args = ap.parse_args()
    from napari_knossos.processing.mesh import segmentation_source
    from napari_knossos.sample_data import KNOSSOS_SAMPLE

    src = segmentation_source(KNOSSOS_SAMPLE)
    ids, counts = np.unique(src.read(0, (0, 0, 0), src.extents[0][1]), return_counts=True)
    largest = [int(i) for i in ids[1:][np.argsort(-counts[1:], kind="stable")][:100]]
    results = {"sample": {}, "generated": {}}
    for mag in (1, 2):
        results["sample"][f"mag{mag}"] = run(KNOSSOS_SAMPLE, largest, mag, args.repeat)
        print("sample", results["sample"][f"mag{mag}"], flush=True)
    results["sample"]["mag1_2000_faces"] = run(KNOSSOS_SAMPLE, largest, 1, args.repeat, target_faces=2000)
    print("sample decimated", results["sample"]["mag1_2000_faces"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path, blob_ids = generated(Path(tmp))
        results["generated"]["mag1"] = run(path, blob_ids, 1, args.repeat)
        print("generated", results["generated"]["mag1"], flush=True)
        results["generated"]["mag1_2000_faces"] = run(path, blob_ids, 1, args.repeat, target_faces=2000)
        print("generated decimated", results["generated"]["mag1_2000_faces"], flush=True)
        results["generated"]["mag1_2000_faces_cluster"] = run(path, blob_ids, 1, args.repeat, target_faces=2000,
                                                              decimation="cluster")
        print("generated decimated (clustering)", results["generated"]["mag1_2000_faces_cluster"], flush=True)
        results["generated"]["mag1_sync"] = run(path, blob_ids, 1, args.repeat, scheduler="sync")
        print("generated, one thread", results["generated"]["mag1_sync"], flush=True)
        results["generated"]["mag1_processes"] = run(path, blob_ids, 1, args.repeat, scheduler="processes")
        print("generated, local processes", results["generated"]["mag1_processes"], flush=True)
    try:
        import fast_simplification  # noqa: F401

        results["decimation"] = "quadric (fast-simplification)"
    except ImportError:
        results["decimation"] = "vertex clustering (fast-simplification not installed)"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
