"""Convert dataset layers to OME-Zarr 0.5, webKnossos (zarr3 or WKW) or KNOSSOS cubes, streaming.

Any layer our readers open is copied mag by mag in file-aligned blocks on dask (never the whole
volume in memory): each task reads one block from the source and writes the target files it
covers (:mod:`.volumes`). The new dataset is built in a temporary sibling folder and renamed into
place at the end, so a failed conversion leaves nothing half-written at the destination. Files are
not fsync'ed one by one (bulk data): the result is complete when the command returns, and the OS
flushes it to disk afterwards. A layer with a single mag gets its pyramid built afterwards
(:mod:`.downsample`).

Layouts written:

* ``ome-zarr`` (default): zarr v3 with ``attributes.ome`` version 0.5; the image group holds
  ``multiscales`` (axes ``(c,) z y x`` in nanometres, per level a ``scale`` and, for a bounding
  box not at the origin, a ``translation``) and arrays ``0, 1, ...``; segmentation layers are
  ``labels/<name>`` image-label groups. Several image layers become series ``0, 1, ...`` of a
  ``bioformats2raw.layout`` root (labels under series 0). Chunks 128³, ``bytes`` + ``zstd``;
  ``shard`` adds ``sharding_indexed``.
* ``wk-zarr3`` / ``wkw``: a webKnossos dataset with ``datasource-properties.json`` (bounding box,
  mags, ``largestSegmentId`` computed while copying), in the layout the ``webknossos`` library
  writes; chunks 32³ in shards (WKW files) of 256³ by default.
* ``knossos``: cube folders ``mag1, mag2, mag4, ...`` (one per level) and ``<name>.k.toml``;
  images as ``.raw`` (uint8/uint16, or 3 x uint8), segmentations as ``.seg.sz.zip`` (uint64).
  KNOSSOS has no bounding-box offset: data keeps its absolute position.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats.atomic import atomic_write_bytes
from ..formats.mags import parse_mag
from ..formats.model import Dataset, Layer, Mag, default_contrast_limits, mag_extent
from . import layouts
from .volumes import MagTarget, aligned_chunks, block_shape, mag_source, store_blocks

__all__ = ["DEFAULT_SHAPES", "FORMATS", "convert_dataset", "layer_geometry", "mag_grid_origin", "safe_name"]

FORMATS = ("ome-zarr", "wk-zarr3", "wkw", "knossos")
DEFAULT_SHAPES = {"ome-zarr": (128, None), "wk-zarr3": (32, 256), "wkw": (32, 256), "knossos": (128, None)}
BLOCK_BYTES = 16 * 2**20  # decoded bytes one convert task reads and writes (whole target files; measured best)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


# ---------------------------------------------------------------------------------------- geometry
def _int_factor(factor, what: str) -> tuple[int, int, int]:
    out = tuple(round(f) for f in factor)
    if any(abs(f - o) > 1e-6 or o < 1 for f, o in zip(factor, out)):
        raise ValueError(f"{what}: mag {tuple(factor)} is not a positive integer factor per axis")
    return out


def layer_geometry(layer: Layer) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(offset, size) of a layer's bounding box in mag-1 voxels, (x, y, z)."""
    offset = tuple(int(v) for v in layer.offset)
    if layer.size is not None:
        return offset, tuple(int(v) for v in layer.size)
    mag = layer.mags[0]
    shape = mag.array.shape_zyx if hasattr(mag.array, "shape_zyx") else mag.array.shape[-3:]
    return offset, tuple(math.ceil(n * f) for n, f in zip(shape[::-1], mag.factor))


def mag_grid_origin(layer: Layer, index: int) -> tuple[int, int, int]:
    """Grid voxel (z, y, x) of voxel 0 of ``layer.mags[index]``'s array: the level's own translation
    for OME-Zarr, else the mag-aligned bounding box corner (as webKnossos and KNOSSOS store it)."""
    mag = layer.mags[index]
    translations = layer.extra.get("mag_translate_nm_zyx")
    if translations and index < len(translations):
        voxel_zyx = [v * f for v, f in zip(layer.voxel_size[::-1], mag.factor[::-1])]
        return tuple(round(t / v) if v else 0 for t, v in zip(translations[index], voxel_zyx))
    offset, size = layer_geometry(layer)
    return mag_extent(size, offset, mag.factor)[0]


def _shape_zyx(mag: Mag) -> tuple[int, int, int]:
    arr = mag.array
    return tuple(arr.shape_zyx) if hasattr(arr, "shape_zyx") else tuple(arr.shape[-3:])


def safe_name(name: str, fallback: str = "layer") -> str:
    """A file-name-safe version of a layer or dataset name."""
    out = _NAME_UNSAFE.sub("_", name).strip("._") or fallback
    return out


# ---------------------------------------------------------------------------------------- plans
@dataclass
class _Job:
    """Copy one source mag into one target array."""

    layer: Layer
    mag: Mag
    target: MagTarget
    place_zyx: tuple[int, int, int]  # target-array voxel of source voxel 0


@dataclass
class _Plan:
    """Files to write before and after the data, and the copies."""

    jobs: list[_Job] = field(default_factory=list)
    finish: list = field(default_factory=list)  # callables(largest ids by layer name)


def _select_layers(dataset: Dataset, names: Sequence[str] | None) -> list[Layer]:
    if not names:
        return list(dataset.layers)
    try:
        return [dataset.layer(n) for n in names]
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def _select_mags(layer: Layer, names: Sequence[str] | None) -> list[Mag]:
    mags = sorted(layer.mags, key=lambda m: (math.prod(m.factor), max(m.factor)))
    if not names:
        return mags
    wanted = []
    for n in names:
        factor = parse_mag(n, f"layer {layer.name!r}: mag {n!r}", integer=False, commas=True)
        found = [i for i, m in enumerate(mags) if tuple(float(f) for f in m.factor) == factor]
        if not found:
            raise ValueError(f"layer {layer.name!r} has no mag {n!r}; it has {[m.name for m in mags]}")
        wanted += found
    return [mags[i] for i in sorted(set(wanted))]


def _voxel_bytes(layer: Layer) -> int:
    return np.dtype(layer.dtype).itemsize * int(layer.num_channels)


# -- OME-Zarr -------------------------------------------------------------------------------------
def _plan_ome(root: Path, layers: list[Layer], mags: dict, chunk: int, shard: int | None, token: str) -> _Plan:
    plan = _Plan()
    colors = [l for l in layers if not l.is_segmentation]
    segs = [l for l in layers if l.is_segmentation]
    groups: list[tuple[str, Layer, bool]] = []  # (group key, layer, is a label image)
    if len(colors) > 1:
        layouts.write_json(root / "zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": {
            "ome": {"version": layouts.OME_VERSION, "bioformats2raw.layout": 3}}})  # fmt: skip
        groups += [(str(i), layer, False) for i, layer in enumerate(colors)]
        label_parent = "0"
    elif colors:
        groups.append(("", colors[0], False))
        label_parent = ""
    else:
        groups.append(("", segs[0], True))
        segs = segs[1:]
        label_parent = ""
    taken: set[str] = set()
    label_names = []
    for layer in segs:
        name = safe_name(layer.name, "labels")
        while name in taken:
            name += "_"
        taken.add(name)
        label_names.append(name)
        groups.append(("/".join(p for p in (label_parent, "labels", name) if p), layer, True))
    if label_names:
        labels_key = "/".join(p for p in (label_parent, "labels") if p)
        layouts.write_json(root / labels_key / "zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": {
            "ome": {"version": layouts.OME_VERSION, "labels": label_names}}})  # fmt: skip

    for key, layer, is_label in groups:
        folder = root / key if key else root
        channels = int(layer.num_channels)
        with_c = channels > 1
        dims = (("c", 0), ("z", 1), ("y", 2), ("x", 3)) if with_c else (("z", 0), ("y", 1), ("x", 2))
        names = ["c", "z", "y", "x"] if with_c else ["z", "y", "x"]
        voxel_zyx = [float(v) for v in layer.voxel_size[::-1]]
        datasets = []
        for level, mag in enumerate(mags[layer.name]):
            shape_zyx = _shape_zyx(mag)
            index = layer.mags.index(mag)
            origin = mag_grid_origin(layer, index)
            scale_zyx = [v * f for v, f in zip(voxel_zyx, mag.factor[::-1])]
            translation = [o * s for o, s in zip(origin, scale_zyx)]
            prefix = [1.0] if with_c else []
            prefix_t = [0.0] if with_c else []
            datasets.append(layouts.ome_dataset(str(level), prefix + scale_zyx, prefix_t + translation))
            full_shape = ([channels] if with_c else []) + list(shape_zyx)
            chunk_shape = ([channels] if with_c else []) + [min(chunk, max(n, 1)) for n in shape_zyx]
            shard_shape = None
            unit = tuple(chunk_shape[-3:])
            if shard:
                shard_zyx = [math.ceil(min(shard, max(n, 1)) / c) * c for n, c in zip(shape_zyx, chunk_shape[-3:])]
                shard_shape = ([channels] if with_c else []) + shard_zyx
                unit = tuple(shard_zyx)
            meta = layouts.zarr3_array_meta(full_shape, layer.dtype, chunk_shape, shard_shape, names)
            layouts.write_json(folder / str(level) / "zarr.json", meta)
            target = MagTarget("zarr", str(root), "/".join(p for p in (key, str(level)) if p), np.dtype(layer.dtype),
                               channels, tuple(shape_zyx), unit, dims=dims, token=token)
            plan.jobs.append(_Job(layer, mag, target, (0, 0, 0)))
        multiscale = {"name": layer.name, "axes": layouts.ome_axes(with_c), "datasets": datasets,
                      "type": "mode" if layer.is_segmentation else "mean"}
        ome: dict = {"version": layouts.OME_VERSION, "multiscales": [multiscale]}
        if is_label:
            ome["image-label"] = {"source": {"image": "../../"}} if key else {}
        elif channels == 1 or layer.rgb:
            lo, hi = layer.contrast_limits or default_contrast_limits(layer.dtype)
            colors_hex = ["FF0000", "00FF00", "0000FF"] if layer.rgb else ["FFFFFF"]
            ome["omero"] = {
                "channels": [
                    {"label": layer.name if channels == 1 else f"{layer.name} {c}", "color": colors_hex[i],
                     "active": bool(layer.visible), "window": {"start": lo, "end": hi, "min": lo, "max": hi}}
                    for i, c in enumerate("rgb"[:channels] if layer.rgb else [""])
                ],
                "rdefs": {"model": "color" if layer.rgb else "greyscale"},
            }
        layouts.write_json(folder / "zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}})
    return plan


# -- webKnossos ---------------------------------------------------------------------------------
def _plan_webknossos(
    root: Path, dataset_name: str, layers: list[Layer], mags: dict, chunk: int, shard: int, data_format: str, token: str
) -> _Plan:
    from ..formats import wk_writer

    if shard % chunk:
        raise ValueError(f"shard {shard} is not a multiple of the chunk {chunk}")
    plan = _Plan()
    voxel = layers[0].voxel_size
    for layer in layers:
        if any(abs(a - b) > 1e-9 * max(1.0, abs(a)) for a, b in zip(layer.voxel_size, voxel)):
            raise ValueError(
                f"layer {layer.name!r} has voxel size {layer.voxel_size} nm, layer {layers[0].name!r} "
                f"{voxel} nm: a webKnossos dataset has one voxel size (convert them separately)"
            )
    if data_format == "zarr3":
        layouts.write_json(root / "zarr.json", {"zarr_format": 3, "node_type": "group"})
    names: dict[str, str] = {}
    entries: list = []
    for layer in layers:
        name = safe_name(layer.name)
        while name in names.values():
            name += "_"
        names[layer.name] = name
        channels = int(layer.num_channels)
        wk_writer.element_class(layer.dtype, channels)  # fails early for unsupported voxel types
        factors = []
        for mag in mags[layer.name]:
            factor = _int_factor(mag.factor, f"layer {layer.name!r}")
            factors.append(factor)
            origin = mag_grid_origin(layer, layer.mags.index(mag))
            shape = _shape_zyx(mag)
            end_zyx = tuple(o + n for o, n in zip(origin, shape))
            folder = root / name / wk_writer.mag_name(factor)
            if data_format == "zarr3":
                meta = wk_writer.array_metadata(layer.dtype, (channels, *end_zyx[::-1]), shard, chunk)
                layouts.write_json(folder / "zarr.json", meta, indent=None)
                target = MagTarget("zarr", str(root), f"{name}/{wk_writer.mag_name(factor)}", np.dtype(layer.dtype),
                                   channels, end_zyx, (shard,) * 3, dims=(("c", 0), ("x", 1), ("y", 2), ("z", 3)),
                                   token=token)
            else:
                header = layouts.wkw_header_bytes(layer.dtype, channels, chunk, shard // chunk)
                atomic_write_bytes(folder / "header.wkw", header, durable=False)
                target = MagTarget("wkw", str(root), f"{name}/{wk_writer.mag_name(factor)}", np.dtype(layer.dtype),
                                   channels, end_zyx, (shard,) * 3, token=token)
            plan.jobs.append(_Job(layer, mag, target, origin))
        if data_format == "zarr3":
            text = wk_writer.layer_group_text(factors, voxel)
            atomic_write_bytes(root / name / "zarr.json", text.encode(), durable=False)
        entries.append((layer, name, factors))

    def finish(largest: dict) -> None:
        layer_dicts = []
        for layer, name, factors in entries:
            offset, size = layer_geometry(layer)
            largest_id = None
            if layer.is_segmentation:
                known = layer.largest_segment_id
                largest_id = int(known) if known is not None else int(largest.get(layer.name, 0))
            layer_dicts.append(wk_writer.layer_properties(
                name, layer.category, layer.dtype, layer.num_channels, offset, size, factors,
                data_format=data_format, largest_segment_id=largest_id, cube_length=shard,
            ))  # fmt: skip
        text = wk_writer.properties_json(dataset_name, voxel, layer_dicts)
        atomic_write_bytes(root / "datasource-properties.json", text.encode(), durable=False)

    plan.finish.append(finish)
    return plan


# -- KNOSSOS --------------------------------------------------------------------------------------
def _knossos_cube_type(layer: Layer) -> tuple[str, np.dtype, dict]:
    """(extension, stored dtype, extra TOML keys) for a layer, or ValueError."""
    dtype = np.dtype(layer.dtype)
    if layer.is_segmentation:
        if dtype.kind not in "ui" or layer.num_channels != 1:
            raise ValueError(f"layer {layer.name!r}: KNOSSOS segmentation cubes hold uint64 ids, not "
                             f"{layer.num_channels} x {dtype.name}")
        return ".seg.sz.zip", np.dtype(np.uint64), {}
    if layer.num_channels == 3 and dtype == np.uint8:
        return ".raw", dtype, {"NumChannels": "3"}
    if layer.num_channels != 1 or dtype.name not in ("uint8", "uint16", "uint64"):
        raise ValueError(f"layer {layer.name!r}: KNOSSOS image cubes hold uint8, uint16 or uint64 (or 3 x uint8), "
                         f"not {layer.num_channels} x {dtype.name}")
    extra = {} if dtype == np.uint8 else {"DataType": f'"{dtype.name}"'}
    return ".raw", dtype, extra


def _plan_knossos(root: Path, dataset_name: str, layers: list[Layer], mags: dict, cube: int, token: str) -> _Plan:
    from ..formats.knossos_writer import k_toml_layer_table

    plan = _Plan()
    base = safe_name(dataset_name, "dataset").replace("_mag", "-mag")
    used: set[tuple[str, str]] = set()
    tables = []
    for layer in layers:
        ext, dtype, extra_toml = _knossos_cube_type(layer)
        experiment = base  # cube files are {experiment}_mag{N}_x…{ext}: two layers need another name or type
        if (experiment, ext) in used:
            experiment = f"{base}-{safe_name(layer.name)}".replace("_mag", "-mag")
        while (experiment, ext) in used:
            experiment += "_"
        used.add((experiment, ext))
        levels = mags[layer.name]
        first = levels[0]
        voxel_sizes = [tuple(v * f for v, f in zip(layer.voxel_size, m.factor)) for m in levels]
        extent_xyz = None
        for i, mag in enumerate(levels):
            origin = mag_grid_origin(layer, layer.mags.index(mag))
            shape = _shape_zyx(mag)
            end_zyx = tuple(o + n for o, n in zip(origin, shape))
            if mag is first:
                extent_xyz = end_zyx[::-1]
            target = MagTarget("knossos", str(root), f"mag{2**i}", dtype, int(layer.num_channels), end_zyx,
                               (cube,) * 3, experiment=experiment, ext=ext, token=token)
            plan.jobs.append(_Job(layer, mag, target, origin))
        tables.append(k_toml_layer_table(experiment, ext, extent_xyz, (cube,) * 3, voxel_sizes,
                                         description=layer.name, color=layer.color, extra_toml=extra_toml))

    def finish(largest: dict) -> None:
        atomic_write_bytes(root / f"{base}.k.toml", "\n".join(tables).encode(), durable=False)

    plan.finish.append(finish)
    return plan


# ---------------------------------------------------------------------------------------- entry
def _run_jobs(jobs: list[_Job], source: str, scheduler, progress: bool) -> dict[str, int]:
    """Copy every job's mag; the largest value of each segmentation layer."""
    from .scheduler import compute

    stats = []
    for job in jobs:
        src = mag_source(source, job.layer, job.mag, job.target.token)
        shape_zyx = src.shape[1:]
        block = block_shape(job.target.unit_zyx, shape_zyx, _voxel_bytes(job.layer), BLOCK_BYTES)
        chunks = [aligned_chunks(n, b, p) for n, b, p in zip(shape_zyx, block, job.place_zyx)]
        # the chunk writers convert dtypes (KNOSSOS ids are uint64)
        stats.append(store_blocks(src, chunks, job.target, job.place_zyx, segmentation=job.layer.is_segmentation))
    results = compute(stats, scheduler=scheduler, progress=progress)
    largest: dict[str, int] = {}
    for job, value in zip(jobs, results):
        if job.layer.is_segmentation:
            largest[job.layer.name] = max(largest.get(job.layer.name, 0), int(value))
    return largest


def convert_dataset(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    to: str = "ome-zarr",
    layers: Sequence[str] | None = None,
    mags: Sequence[str] | None = None,
    chunk: int | None = None,
    shard: int | None = None,
    downsample: bool | None = None,
    anisotropic: bool = False,
    scheduler=None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Convert ``layers`` (default all) of the dataset at ``source`` into a new dataset ``destination``.

    ``to`` is one of :data:`FORMATS`; ``chunk``/``shard`` are the (inner) chunk and shard (WKW
    file, zarr shard) edges in voxels, ``chunk`` the cube edge for KNOSSOS (defaults in
    :data:`DEFAULT_SHAPES`). ``mags`` selects source mags by name (``"2"``, ``"2-2-1"``; default
    all). ``downsample``: build the missing mags (None: only for layers converted with a single
    mag), isotropically or ``anisotropic`` as in :func:`.downsample.downsample_dataset`.
    ``scheduler``: see :mod:`.scheduler`. Returns the destination path.
    """
    from ..formats import open_dataset

    if to not in FORMATS:
        raise ValueError(f"unknown target format {to!r}; choose one of {', '.join(FORMATS)}")
    source = os.fspath(source)
    dst = Path(destination).absolute()
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists (pass overwrite=True / --overwrite to replace it)")
    dataset = open_dataset(source)
    chosen = _select_layers(dataset, layers)
    default_chunk, default_shard = DEFAULT_SHAPES[to]
    chunk = int(chunk or default_chunk)
    shard = int(shard) if shard else default_shard
    if chunk < 1 or (shard is not None and (shard < chunk or shard % chunk)):
        raise ValueError(f"chunk {chunk} / shard {shard}: the shard must be a positive multiple of the chunk")
    if to == "wkw" and (chunk & (chunk - 1) or (shard // chunk) & (shard // chunk - 1)):
        raise ValueError(f"WKW needs power-of-two blocks and files, got chunk {chunk}, shard {shard}")
    selected = {layer.name: _select_mags(layer, mags) for layer in chosen}
    token = uuid.uuid4().hex[:12]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp"))
    try:
        name = re.sub(r"(\.ome)?\.zarr$", "", dst.name) or dataset.name
        if to == "ome-zarr":
            plan = _plan_ome(tmp, chosen, selected, chunk, shard, token)
        elif to in ("wk-zarr3", "wkw"):
            plan = _plan_webknossos(tmp, name, chosen, selected, chunk, shard, "zarr3" if to == "wk-zarr3" else "wkw",
                                    token)
        else:
            plan = _plan_knossos(tmp, name, chosen, selected, chunk, token)
        largest = _run_jobs(plan.jobs, source, scheduler, progress)
        for finish in plan.finish:
            finish(largest)
        build = [l.name for l in chosen if (downsample is None and len(selected[l.name]) == 1) or downsample]
        if build:
            from .downsample import downsample_dataset

            converted = open_dataset(tmp)
            targets = [_converted_name(converted, layer, to) for layer in chosen if layer.name in build]
            missing = [layer for layer, name in zip(build, targets) if name is None]
            if missing:
                raise RuntimeError(f"{tmp}: cannot find the converted layers {missing} to build their mags")
            downsample_dataset(tmp, layers=targets, anisotropic=anisotropic, scheduler=scheduler, progress=progress)
        from ..formats.wk_writer import replace_folder

        if replace_folder(tmp, dst):
            from ..formats.cache import CHUNK_CACHE

            CHUNK_CACHE.clear()  # chunks and shard indexes of the replaced dataset, cached under its path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _converted_name(converted: Dataset, layer: Layer, to: str) -> str | None:
    """The name our reader gives the converted copy of ``layer``."""
    names = [l.name for l in converted.layers]
    if layer.name in names:
        return layer.name
    safe = safe_name(layer.name)
    if safe in names:
        return safe
    if to == "knossos":  # KNOSSOS names layers by experiment; find it by description
        for l in converted.layers:
            if l.extra.get("description") == layer.name:
                return l.name
    if to == "ome-zarr" and len(converted.layers) == 1:
        return names[0]
    return None
