"""Saving edited segmentation chunks in place: 100 touched 32³ uint64 chunks, WKW and zarr3.

    .venv/bin/python benchmarks/bench_inplace.py [--repeat 5] [--out benchmarks/results/inplace.json]

A 256³ uint64 segmentation (supervoxel-like cells with ragged borders) is written by the reference writers (libwkw,
tensorstore) in four layouts: WKW LZ4HC with 1024³ files (32³ blocks per file, the webKnossos
default) and with 128³ files, zarr3 sharded with 1024³ shards (webKnossos default) and 128³ shards
(inner chunks 32³, zstd 5). Then 100 chunks are rewritten, once as one 5×5×4 brick (a painted
region) and once scattered at random, by

* ours: ``formats.inplace.chunk_writer(layer, mag).write_chunks(chunks)`` (atomic per file),
* tensorstore: the same chunks written in one transaction (zarr3),
* libwkw: the touched files read whole, patched and written whole (compressed WKW files can only
  be written as a whole; not run for 1024³ files, which would hold 8 GiB each).

Reported: median seconds over ``--repeat`` saves (each save alternates the written ids).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_knossos.formats import open_dataset
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.inplace import chunk_writer

SIZE = 256
CHUNK = 32


def labels(seed: int = 0) -> np.ndarray:
    """(z, y, x) uint64 like a supervoxel segmentation: 8³ cells with ids 2^40 + 1..5000 (1/8 background)
    whose borders are ragged by ±2 voxels, so blocks compress about as badly as real data."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 5000, size=(SIZE // 8,) * 3).astype(np.uint64) + 2**40
    coarse[rng.random(coarse.shape) < 0.125] = 0
    grid = np.indices((SIZE,) * 3, dtype=np.int32)
    out = np.empty((SIZE,) * 3, np.uint64)
    for z0 in range(0, SIZE, 32):  # slabs bound the temporaries
        idx = [np.clip((g[z0 : z0 + 32] + rng.integers(-2, 3, size=g[z0 : z0 + 32].shape)) // 8, 0, SIZE // 8 - 1)
               for g in grid]  # fmt: skip
        out[z0 : z0 + 32] = coarse[idx[0], idx[1], idx[2]]
    return out


def properties(name: str, fmt: str) -> str:
    layer = {
        "name": name, "category": "segmentation", "dataFormat": fmt, "elementClass": "uint64", "numChannels": 1,
        "boundingBox": {"topLeft": [0, 0, 0], "width": SIZE, "height": SIZE, "depth": SIZE},
        "mags": [{"mag": [1, 1, 1], "path": f"./{name}/1"}], "largestSegmentId": 2**40 + 5000,
    }  # fmt: skip
    return json.dumps({"id": {"name": "bench", "team": ""}, "scale": {"factor": [10, 10, 10], "unit": "nanometer"},
                       "dataLayers": [layer], "version": 1})  # fmt: skip


def make_wkw(root: Path, data: np.ndarray, file_len: int) -> None:
    import wkw

    with wkw.Dataset.create(
        str(root / "seg" / "1"),
        wkw.Header(np.uint64, block_len=32, file_len=file_len, block_type=wkw.Header.BLOCK_TYPE_LZ4HC),
    ) as ds:
        edge = 32 * file_len
        padded = np.zeros((max(edge, SIZE),) * 3, np.uint64)
        padded[:SIZE, :SIZE, :SIZE] = data
        ds.write((0, 0, 0), np.asfortranarray(padded.transpose(2, 1, 0)))
    (root / "datasource-properties.json").write_text(properties("seg", "wkw"))


def make_zarr3(root: Path, data: np.ndarray, shard: int) -> None:
    import tensorstore as ts

    spec = {
        "driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / "seg" / "1")},
        "metadata": {
            "shape": [1, max(shard, SIZE), max(shard, SIZE), max(shard, SIZE)], "data_type": "uint64",
            "dimension_names": ["c", "x", "y", "z"], "fill_value": 0,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, shard, shard, shard]}},
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [1, 32, 32, 32],
                "codecs": [{"name": "transpose", "configuration": {"order": [3, 2, 1, 0]}},
                           {"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "zstd", "configuration": {"level": 5, "checksum": True}}],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]}}],
        },
        "create": True,
    }  # fmt: skip
    t = ts.open(spec).result()
    t[0, :SIZE, :SIZE, :SIZE].write(data.transpose(2, 1, 0)).result()
    (root / "datasource-properties.json").write_text(properties("seg", "zarr3"))


def chunk_sets(seed: int = 1) -> dict[str, list[tuple[int, int, int]]]:
    brick = [(z, y, x) for z in range(2, 6) for y in range(1, 6) for x in range(1, 6)]
    n = SIZE // CHUNK
    rng = np.random.default_rng(seed)
    flat = rng.choice(n**3, size=100, replace=False)
    scattered = [tuple(int(v) for v in np.unravel_index(i, (n, n, n))) for i in flat]
    return {"brick": brick, "scattered": scattered}


def chunk_data(data: np.ndarray, idxs, value: int) -> dict:
    out = {}
    for z, y, x in idxs:
        c = data[z * CHUNK : (z + 1) * CHUNK, y * CHUNK : (y + 1) * CHUNK, x * CHUNK : (x + 1) * CHUNK].copy()
        c[4:28, 4:28, 4:28] = value  # a painted blob inside the chunk
        out[(z, y, x)] = c
    return out


def time_ours(root: Path, data, idxs, repeat: int) -> list[float]:
    CHUNK_CACHE.clear()
    writer = chunk_writer(open_dataset(root).layer("seg"), (1, 1, 1))
    times = []
    for r in range(repeat):
        chunks = chunk_data(data, idxs, 2**40 + 7000 + r)
        t0 = time.perf_counter()
        writer.write_chunks(chunks)
        times.append(time.perf_counter() - t0)
    return times


def time_tensorstore(root: Path, data, idxs, repeat: int) -> list[float]:
    import tensorstore as ts

    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / "seg" / "1")}}).result()
    times = []
    for r in range(repeat):
        chunks = chunk_data(data, idxs, 2**40 + 8000 + r)
        t0 = time.perf_counter()
        with ts.Transaction() as txn:
            tt = t.with_transaction(txn)
            futures = [
                tt[0, x * CHUNK : (x + 1) * CHUNK, y * CHUNK : (y + 1) * CHUNK, z * CHUNK : (z + 1) * CHUNK].write(
                    c.transpose(2, 1, 0)
                )
                for (z, y, x), c in chunks.items()
            ]
            for f in futures:
                f.result()
        times.append(time.perf_counter() - t0)
    return times


def time_libwkw(root: Path, data, idxs, repeat: int, file_len: int) -> list[float]:
    import wkw

    edge = 32 * file_len
    times = []
    with wkw.Dataset.open(str(root / "seg" / "1")) as ds:
        for r in range(repeat):
            chunks = chunk_data(data, idxs, 2**40 + 9000 + r)
            t0 = time.perf_counter()
            files: dict = {}
            for (z, y, x), c in chunks.items():
                files.setdefault((z * CHUNK // edge, y * CHUNK // edge, x * CHUNK // edge), []).append(((z, y, x), c))
            for (fz, fy, fx), members in files.items():
                off = (fx * edge, fy * edge, fz * edge)
                cube = ds.read(off, (edge, edge, edge))[0]  # (x, y, z)
                for (z, y, x), c in members:
                    lz, ly, lx = z * CHUNK - fz * edge, y * CHUNK - fy * edge, x * CHUNK - fx * edge
                    cube[lx : lx + CHUNK, ly : ly + CHUNK, lz : lz + CHUNK] = c.transpose(2, 1, 0)
                ds.write(off, np.asfortranarray(cube))
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = labels()
    sets = chunk_sets()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layouts = {
            "wkw 1024³ files": lambda p: make_wkw(p, data, 32),
            "wkw 128³ files": lambda p: make_wkw(p, data, 4),
            "zarr3 1024³ shards": lambda p: make_zarr3(p, data, 1024),
            "zarr3 128³ shards": lambda p: make_zarr3(p, data, 128),
        }
        for name, make in layouts.items():
            for kind, idxs in sets.items():
                root = tmp / f"{name.replace(' ', '_').replace('³', '')}_{kind}"
                make(root)
                size = sum(f.stat().st_size for f in (root / "seg" / "1").rglob("*") if f.is_file())
                row = {
                    "files_MiB": round(size / 2**20, 1),
                    "ours_s": statistics.median(time_ours(root, data, idxs, args.repeat)),
                }
                if name.startswith("zarr3"):
                    row["tensorstore_s"] = statistics.median(time_tensorstore(root, data, idxs, args.repeat))
                elif name == "wkw 128³ files":
                    row["libwkw_s"] = statistics.median(time_libwkw(root, data, idxs, args.repeat, 4))
                results[f"{name}, {kind}"] = row
                print(f"{name:20s} {kind:9s} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
