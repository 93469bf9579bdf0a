"""Volume-reading benchmarks, side by side with the reference libraries in one run.

    .venv/bin/python benchmarks/bench_volumes.py [--size 512] [--repeat 5] [--out benchmarks/results/volumes.json]

Writes a 512³ uint8 dataset three ways into benchmarks/_data/ (once), then times:
  * WKW (LZ4HC, 32³ blocks, 256³ files): 256³ cutout and random 32³ buckets, ours vs libwkw (`wkw`)
  * zarr3 (webKnossos layout: shard 128³, inner 32³, zstd 5): ours vs `tensorstore`
  * KNOSSOS raw cubes (128³): throughput of 256³ cutouts and a whole-volume read, ours alone
Our reader is timed with its decoded-chunk cache cleared before each repetition (cold
cache, warm OS page cache), the same situation as the reference libraries, which keep none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from napari_knossos.formats import open_dataset
from napari_knossos.formats.cache import CHUNK_CACHE

HERE = Path(__file__).resolve().parent
VOXEL = (11.24, 11.24, 28.0)


def volume_xyz(n: int) -> np.ndarray:
    """EM-like uint8 test volume indexed [x, y, z]: smooth structure plus small noise."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.int32),) * 3, indexing="ij", sparse=True)
    base = (96 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0) + 30 * np.sin(z / 11.0)).astype(np.int16)
    noise = rng.integers(-6, 7, size=(n, n, n), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def properties(name, fmt, n, mags_extra):
    return {
        "id": {"name": name, "team": ""},
        "scale": {"factor": list(VOXEL), "unit": "nanometer"},
        "dataLayers": [{
            "name": "color", "category": "color", "dataFormat": fmt, "elementClass": "uint8", "numChannels": 1,
            "boundingBox": {"topLeft": [0, 0, 0], "width": n, "height": n, "depth": n},
            "mags": [{"mag": [1, 1, 1], "path": "./color/1", **mags_extra}],
        }],
        "version": 1,
    }


def write_wkw(root: Path, vol: np.ndarray) -> Path:
    import wkw

    ds = root / "wkw"
    if (ds / "datasource-properties.json").exists():
        return ds
    mag = ds / "color" / "1"
    mag.mkdir(parents=True)
    with wkw.Dataset.create(str(mag), wkw.Header(np.uint8, block_len=32, file_len=8,
                                                  block_type=wkw.Header.BLOCK_TYPE_LZ4HC)) as d:
        d.write((0, 0, 0), vol)
    (ds / "datasource-properties.json").write_text(json.dumps(properties("wkw", "wkw", vol.shape[0],
                                                                          {"cubeLength": 256})))
    return ds


def write_zarr3(root: Path, vol: np.ndarray) -> Path:
    import tensorstore as ts

    ds = root / "zarr3"
    if (ds / "datasource-properties.json").exists():
        return ds
    n = vol.shape[0]
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(ds / "color" / "1")},
        "metadata": {
            "shape": [1, n, n, n], "data_type": "uint8", "dimension_names": ["c", "x", "y", "z"],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 128, 128, 128]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [1, 32, 32, 32],
                "codecs": [{"name": "transpose", "configuration": {"order": [3, 2, 1, 0]}},
                           {"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "zstd", "configuration": {"level": 5, "checksum": True}}],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            }}],
        },
        "create": True,
    }
    arr = ts.open(spec).result()
    arr[0].write(vol).result()
    (ds / "datasource-properties.json").write_text(json.dumps(properties("zarr3", "zarr3", n, {})))
    return ds


def write_knossos(root: Path, vol: np.ndarray) -> Path:
    ds = root / "knossos"
    conf = ds / "bench.k.toml"
    if conf.exists():
        return conf
    n = vol.shape[0]
    for cx in range(n // 128):
        for cy in range(n // 128):
            for cz in range(n // 128):
                folder = ds / "mag1" / f"x{cx:04d}" / f"y{cy:04d}" / f"z{cz:04d}"
                folder.mkdir(parents=True)
                cube = vol[cx * 128:(cx + 1) * 128, cy * 128:(cy + 1) * 128, cz * 128:(cz + 1) * 128]
                (folder / f"bench_mag1_x{cx:04d}_y{cy:04d}_z{cz:04d}.raw").write_bytes(
                    np.ascontiguousarray(cube.transpose(2, 1, 0)).tobytes())
    conf.write_text(f'[[Layer]]\nName = "bench"\nDescription = "benchmark"\nFileExtension = [".raw"]\n'
                    f"Extent_px = [{n}, {n}, {n}]\nCubeShape_px = [128, 128, 128]\nVoxelSize_nm = [[1, 1, 1]]\n")
    return conf


def timed(fn, repeat: int, before=None) -> list[float]:
    out = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=200)
    ap.add_argument("--data", default=str(HERE / "_data"))
    ap.add_argument("--out", default=str(HERE / "results" / "volumes.json"))
    args = ap.parse_args(argv)
    n = args.size
    root = Path(args.data) / f"n{n}"
    root.mkdir(parents=True, exist_ok=True)
    print(f"preparing {n}³ uint8 datasets in {root} ...", flush=True)
    vol = volume_xyz(n)
    wkw_ds, zarr_ds, knossos_conf = write_wkw(root, vol), write_zarr3(root, vol), write_knossos(root, vol)

    rng = np.random.default_rng(1)
    cut = n // 2
    o = n // 4  # 256³ cutout at (128,128,128) of a 512³ volume: not file-aligned
    buckets = [tuple(int(v) * 32 for v in rng.integers(0, n // 32, 3)) for _ in range(args.buckets)]
    expect_cut = np.ascontiguousarray(vol[o:o + cut, o:o + cut, o:o + cut].transpose(2, 1, 0))
    results = {"size": n, "cutout": cut, "python": sys.version.split()[0]}
    clear = CHUNK_CACHE.clear

    def ours(ds_path):
        arr = open_dataset(str(ds_path)).layers[0].mags[0].array
        got = arr[o:o + cut, o:o + cut, o:o + cut]
        assert np.array_equal(got, expect_cut), "our read differs from the written volume"
        cut_t = timed(lambda: arr[o:o + cut, o:o + cut, o:o + cut], args.repeat, clear)
        bucket_t = []
        for b in buckets:
            clear()
            t0 = time.perf_counter()
            arr[b[2]:b[2] + 32, b[1]:b[1] + 32, b[0]:b[0] + 32]
            bucket_t.append(time.perf_counter() - t0)
        return cut_t, bucket_t

    def report(name, ours_t, ref_t, ref_name):
        (oc, ob), (rc, rb) = ours_t, ref_t
        mb = cut**3 / 1e6
        entry = {
            "ours_cutout": summary(oc), f"{ref_name}_cutout": summary(rc),
            "ours_cutout_MBps": mb / statistics.median(oc), f"{ref_name}_cutout_MBps": mb / statistics.median(rc),
            "cutout_throughput_ratio": statistics.median(rc) / statistics.median(oc),
            "ours_bucket_median_ms": 1e3 * statistics.median(ob), f"{ref_name}_bucket_median_ms": 1e3 * statistics.median(rb),
            "bucket_latency_ratio": statistics.median(ob) / statistics.median(rb),
        }
        results[name] = entry
        print(f"{name}: 256³ cutout ours {entry['ours_cutout_MBps']:.0f} MB/s vs {ref_name} "
              f"{entry[f'{ref_name}_cutout_MBps']:.0f} MB/s (throughput ratio {entry['cutout_throughput_ratio']:.2f}x); "
              f"32³ bucket ours {entry['ours_bucket_median_ms']:.2f} ms vs {entry[f'{ref_name}_bucket_median_ms']:.2f} ms "
              f"(latency ratio {entry['bucket_latency_ratio']:.2f}x)", flush=True)

    # --- WKW vs libwkw
    import wkw

    with wkw.Dataset.open(str(wkw_ds / "color" / "1")) as d:
        assert np.array_equal(d.read((o, o, o), (cut,) * 3)[0], vol[o:o + cut, o:o + cut, o:o + cut])
        ref_cut = timed(lambda: d.read((o, o, o), (cut,) * 3), args.repeat)
        ref_b = []
        for b in buckets:
            t0 = time.perf_counter()
            d.read(b, (32, 32, 32))
            ref_b.append(time.perf_counter() - t0)
    report("wkw", ours(wkw_ds), (ref_cut, ref_b), "libwkw")

    # --- zarr3 vs tensorstore
    import tensorstore as ts

    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(zarr_ds / "color" / "1")}}).result()
    ref_cut = timed(lambda: t[0, o:o + cut, o:o + cut, o:o + cut].read().result(), args.repeat)
    ref_b = []
    for b in buckets:
        t0 = time.perf_counter()
        t[0, b[0]:b[0] + 32, b[1]:b[1] + 32, b[2]:b[2] + 32].read().result()
        ref_b.append(time.perf_counter() - t0)
    report("zarr3", ours(zarr_ds), (ref_cut, ref_b), "tensorstore")

    # --- KNOSSOS raw cubes
    arr = open_dataset(str(knossos_conf)).layers[0].mags[0].array
    assert np.array_equal(arr[o:o + cut, o:o + cut, o:o + cut], expect_cut)
    kc = timed(lambda: arr[o:o + cut, o:o + cut, o:o + cut], args.repeat, clear)
    kf = timed(lambda: arr[:, :, :], args.repeat, clear)
    results["knossos_raw"] = {
        "cutout": summary(kc), "full": summary(kf),
        "cutout_GBps": cut**3 / 1e9 / statistics.median(kc), "full_GBps": n**3 / 1e9 / statistics.median(kf),
    }
    print(f"knossos raw cubes: 256³ cutout {results['knossos_raw']['cutout_GBps']:.2f} GB/s, "
          f"whole {n}³ volume {results['knossos_raw']['full_GBps']:.2f} GB/s (page cache, decoded-chunk cache cold)")

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
