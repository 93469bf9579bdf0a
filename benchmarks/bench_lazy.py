"""Laziness at scale: open a 2^20-voxel-per-axis dataset and read a 1024² plane deep inside.

    .venv/bin/python benchmarks/bench_lazy.py [--out benchmarks/results/lazy.json]

For KNOSSOS (.k.toml, 8×8 cubes present at the centre), webKnossos WKW and zarr3 (metadata
only, every chunk missing), times opening through the npe2 reader (layer data included), the
dask graph size of each level, and a 1024² plane at mag 1 from the centre of the volume.
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

from napari_knossos._reader import get_reader
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.layer_data import lazy_dask

BIG = 2**20
HERE = Path(__file__).resolve().parent


def make_knossos(root: Path) -> Path:
    mags = [[9 * 2**i, 9 * 2**i, 20 * 2**i] for i in range(11)]
    conf = root / "huge.k.toml"
    conf.write_text('[[Layer]]\nName = "huge"\nDescription = "bench"\nFileExtension = [".raw"]\n'
                    f'Extent_px = [{BIG}, {BIG}, {BIG}]\nCubeShape_px = [128, 128, 128]\nServerFormat = "knossos"\n'
                    f"VoxelSize_nm = {mags}\n")
    c = BIG // 2 // 128
    rng = np.random.default_rng(0)
    for dx in range(8):
        for dy in range(8):
            folder = root / "mag1" / f"x{c + dx:04d}" / f"y{c + dy:04d}" / f"z{c:04d}"
            folder.mkdir(parents=True)
            (folder / f"huge_mag1_x{c + dx:04d}_y{c + dy:04d}_z{c:04d}.raw").write_bytes(
                rng.integers(0, 255, 128**3, dtype=np.uint8).tobytes())
    return conf


def make_webknossos(root: Path, fmt: str) -> Path:
    ds = root / f"wk_{fmt}"
    mags = [[2**i] * 3 for i in range(11)]
    layer = {"name": "color", "category": "color", "dataFormat": fmt, "elementClass": "uint8", "numChannels": 1,
             "boundingBox": {"topLeft": [0, 0, 0], "width": BIG, "height": BIG, "depth": BIG},
             "mags": [{"mag": m, "path": f"./color/{m[0]}"} for m in mags]}
    ds.mkdir()
    (ds / "datasource-properties.json").write_text(json.dumps(
        {"id": {"name": "huge", "team": ""}, "scale": {"factor": [9, 9, 20], "unit": "nanometer"},
         "dataLayers": [layer], "version": 1}))
    for m in mags:
        mag = ds / "color" / str(m[0])
        mag.mkdir(parents=True)
        n = -(-BIG // m[0])
        if fmt == "wkw":
            # header.wkw: magic, version 1, 32³ blocks × 32³ blocks per file, LZ4HC, uint8, 1 byte, offset 0
            (mag / "header.wkw").write_bytes(b"WKW" + bytes([1, 0x55, 3, 1, 1]) + (0).to_bytes(8, "little"))
        else:
            (mag / "zarr.json").write_text(json.dumps({
                "zarr_format": 3, "node_type": "array", "shape": [1, n, n, n], "data_type": "uint8",
                "dimension_names": ["c", "x", "y", "z"], "fill_value": 0,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 128, 128, 128]}},
                "chunk_key_encoding": {"name": "default"},
                "codecs": [{"name": "sharding_indexed", "configuration": {
                    "chunk_shape": [1, 32, 32, 32],
                    "codecs": [{"name": "transpose", "configuration": {"order": [3, 2, 1, 0]}},
                               {"name": "bytes", "configuration": {"endian": "little"}},
                               {"name": "zstd", "configuration": {"level": 5, "checksum": True}}],
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]}}]}))
    return ds


def measure(path: Path, repeat: int) -> dict:
    opens = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        layers = get_reader(str(path))(str(path))
        opens.append(time.perf_counter() - t0)
    data = layers[0][0]
    graph = [len(lazy_dask(level.base, f"bench{i}").__dask_graph__()) for i, level in enumerate(data)]
    c = BIG // 2
    planes = []
    for _ in range(repeat):
        CHUNK_CACHE.clear()
        t0 = time.perf_counter()
        np.asarray(data[0][c, c:c + 1024, c:c + 1024])
        planes.append(time.perf_counter() - t0)
    return {"levels": len(data), "open_s": statistics.median(opens), "dask_graph_tasks_per_level": max(graph),
            "plane_1024_s": statistics.median(planes)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "lazy.json"))
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, path in [("knossos", make_knossos(root)), ("wkw", make_webknossos(root, "wkw")),
                           ("zarr3", make_webknossos(root, "zarr3"))]:
            results[name] = r = measure(path, args.repeat)
            print(f"{name}: {r['levels']} mags of up to {BIG}³ voxels; open {r['open_s'] * 1e3:.1f} ms; "
                  f"dask graph {r['dask_graph_tasks_per_level']} task per level; "
                  f"1024² plane at the centre {r['plane_1024_s'] * 1e3:.1f} ms", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
