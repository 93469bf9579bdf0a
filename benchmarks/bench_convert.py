"""Converting a 1 GiB uint8 KNOSSOS dataset to OME-Zarr: throughput and LocalCluster scaling.

    .venv/bin/python benchmarks/bench_convert.py [--size 1024] [--repeat 3] [--out benchmarks/results/convert.json]

A ``size``³ uint8 volume (EM-like: smooth structures plus noise; zstd compresses it about 1.6x)
is written with ``formats.knossos_writer`` as ``.raw`` cubes of 128³ (a ``.k.toml`` dataset)
in a temporary folder. Then it is written as a zarr v3 array of 128³ chunks, ``bytes`` +
``zstd(level 3)`` (identical ``zarr.json``), by

* baseline: ``dask.array.to_zarr`` of the volume held in memory (``da.from_array(volume,
  chunks=128)``), local threaded scheduler;
* ours: ``processing.convert.convert_dataset(knossos, out, to="ome-zarr", downsample=False)``
  on the local threaded scheduler: reads the cubes from disk, writes the OME-Zarr 0.5 dataset;
* ours on a ``dask.distributed.LocalCluster`` (processes, default configuration) of 1 and of 2
  workers with one thread each, passing the scheduler address.

Runs alternate (baseline / ours, 1 worker / 2 workers), ``--repeat`` pairs each. Before each run
(untimed) the previous output is removed, ``os.sync()`` flushes its writes (no run pays for the
last one's write-back) and the source cubes are read once, so they are in the page cache as the
baseline's volume is in memory. Reported: median seconds, MB/s of uncompressed voxels, the median
per-pair ours / baseline throughput ratio (goal >= 0.8) and 1 → 2 worker speed-up (goal >= 1.6),
and the machine's load average at the end (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_knossos.formats.knossos_writer import KnossosLayerSpec, write_knossos_dataset
from napari_knossos.processing.convert import convert_dataset
from napari_knossos.processing.layouts import zarr3_array_meta

CHUNK = 128


def volume(size: int, seed: int = 0) -> np.ndarray:
    """(z, y, x) uint8: smooth blobs plus noise, slab by slab."""
    rng = np.random.default_rng(seed)
    out = np.empty((size,) * 3, np.uint8)
    y, x = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    base = 40 * np.sin(x / 23.0) * np.cos(y / 31.0)
    for z in range(size):
        plane = 128 + base * np.cos(z / 17.0) + 30 * np.sin((x + y + 2 * z) / 45.0)
        out[z] = np.clip(plane + rng.normal(0, 6, size=plane.shape), 0, 255).astype(np.uint8)
    return out


def read_all(folder: Path) -> None:
    """Read every file below ``folder`` once. This VM pages out page cache left unread for about a
    minute (a DAMON ``pageout`` scheme), so without this a run's reads come from the disk or from
    memory by chance."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb", buffering=0) as f:
                while f.read(16 * 2**20):
                    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/convert.json")
    args = ap.parse_args()

    import dask.array as da
    import zarr

    size = args.size
    nbytes = size**3
    tmp = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        t0 = time.perf_counter()
        data = volume(size)
        src = tmp / "knossos"
        write_knossos_dataset(src, "bench", (10, 10, 25), [KnossosLayerSpec(".raw", [data])], cube_shape_xyz=CHUNK)
        print(f"generated {nbytes / 2**20:.0f} MiB KNOSSOS .raw dataset in {time.perf_counter() - t0:.1f} s")

        def baseline() -> float:
            """Seconds for dask.array.to_zarr (removing the previous output is not timed)."""
            path = tmp / "baseline.zarr"
            shutil.rmtree(path, ignore_errors=True)
            os.sync()  # the previous run's writes reach the disk before the clock starts
            t0 = time.perf_counter()
            path.mkdir()
            meta = zarr3_array_meta(data.shape, data.dtype, (CHUNK,) * 3, None, ["z", "y", "x"])
            (path / "zarr.json").write_text(json.dumps(meta))
            target = zarr.open_array(str(path), mode="r+")
            da.to_zarr(da.from_array(data, chunks=CHUNK), target, scheduler="threads")
            return time.perf_counter() - t0

        def ours(scheduler=None) -> float:
            """Seconds for one conversion (removing the previous run's output is not timed)."""
            out = tmp / "out.ome.zarr"
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            read_all(src)  # the cubes in the page cache, as the baseline's volume is in memory
            t0 = time.perf_counter()
            convert_dataset(src, out, to="ome-zarr", downsample=False, progress=False, scheduler=scheduler)
            return time.perf_counter() - t0

        results = {"size": size, "bytes": nbytes, "cpus": os.cpu_count(), "repeat": args.repeat}
        # runs alternate (baseline, ours, baseline, ...) so load from elsewhere hits both alike;
        # ratios are medians of the per-pair ratios
        pairs = [(baseline(), ours()) for _ in range(args.repeat)]
        a = zarr.open_array(str(tmp / "baseline.zarr"), mode="r")
        b = zarr.open_array(str(tmp / "out.ome.zarr" / "0"), mode="r")
        assert np.array_equal(a[:64], b[:64]) and np.array_equal(b[-64:], data[-64:]), "outputs differ"
        results["baseline_dask_to_zarr_s"] = statistics.median(p[0] for p in pairs)
        results["ours_threads_s"] = statistics.median(p[1] for p in pairs)
        results["throughput_ratio_ours_vs_baseline"] = statistics.median(p[0] / p[1] for p in pairs)

        from distributed import LocalCluster

        kw = {"threads_per_worker": 1, "processes": True, "dashboard_address": None}
        from distributed import Client

        # one client per cluster for the whole run, as a long-lived session would hold it (a CLI run
        # connects anew: connection_s below)
        with LocalCluster(n_workers=1, **kw) as one, LocalCluster(n_workers=2, **kw) as two, \
                Client(one, set_as_default=False) as c1, Client(two, set_as_default=False) as c2:
            ours(c1)  # warm-up: workers import and open the dataset once
            ours(c2)
            pairs = [(ours(c1), ours(c2)) for _ in range(args.repeat)]
            t0 = time.perf_counter()
            ours(two.scheduler_address)
            results["ours_cluster_2_workers_by_address_s"] = time.perf_counter() - t0
        results["runs_1_worker_2_workers_s"] = [[round(a, 3), round(b, 3)] for a, b in pairs]
        results["ours_cluster_1_worker_s"] = statistics.median(p[0] for p in pairs)
        results["ours_cluster_2_workers_s"] = statistics.median(p[1] for p in pairs)
        results["speedup_1_to_2_workers"] = statistics.median(p[0] / p[1] for p in pairs)
        mb = nbytes / 1e6
        results["baseline_MB_s"] = mb / results["baseline_dask_to_zarr_s"]
        results["ours_threads_MB_s"] = mb / results["ours_threads_s"]
        results["ours_cluster_2_workers_MB_s"] = mb / results["ours_cluster_2_workers_s"]
        with open("/proc/loadavg") as f:  # other processes on the machine while it ran
            results["load_average_1_5_15_min"] = f.read().split()[:3]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in results.items():
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
