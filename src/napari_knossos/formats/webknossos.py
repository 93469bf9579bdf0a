"""webKnossos datasets: ``datasource-properties.json`` with WKW, Zarr and Zarr v3 layers.

Opening parses the properties file, reads each mag's small array header (``header.wkw`` or
``zarr.json``/``.zarray``) and builds lazy arrays presenting each layer's bounding box;
no chunk is read. A bare WKW mag folder (``header.wkw`` without properties) opens as a
one-layer dataset whose extent comes from the names of its data files.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .mags import mag_name
from .mags import parse_mag as parse_mag_name
from .model import Dataset, Layer, Mag, mag_extent
from .store import LocalStore, RemoteAccessError, Store, is_url, open_store, split_parent
from .wkw import HEADER_FILE, MissingHeaderError, WkwMag

__all__ = ["PROPERTIES_FILE", "UNIT_TO_NM", "open_webknossos", "parse_mag", "sniff"]

PROPERTIES_FILE = "datasource-properties.json"
SUPPORTED_FORMATS = ("wkw", "zarr", "zarr3")
UNSUPPORTED_FORMATS = ("n5", "neuroglancerPrecomputed")
MAX_PROPERTIES_BYTES = 64 * 2**20

# the 26 length units of webknossos (dataset_properties/length_unit.py), with their symbols
_UNITS = [
    ("yoctometer", "ym", 1e-15),
    ("zeptometer", "zm", 1e-12),
    ("attometer", "am", 1e-9),
    ("femtometer", "fm", 1e-6),
    ("picometer", "pm", 1e-3),
    ("nanometer", "nm", 1.0),
    ("micrometer", "µm", 1e3),
    ("millimeter", "mm", 1e6),
    ("centimeter", "cm", 1e7),
    ("decimeter", "dm", 1e8),
    ("meter", "m", 1e9),
    ("hectometer", "hm", 1e11),
    ("kilometer", "km", 1e12),
    ("megameter", "Mm", 1e15),
    ("gigameter", "Gm", 1e18),
    ("terameter", "Tm", 1e21),
    ("petameter", "Pm", 1e24),
    ("exameter", "Em", 1e27),
    ("zettameter", "Zm", 1e30),
    ("yottameter", "Ym", 1e33),
    ("angstrom", "Å", 0.1),
    ("inch", "in", 2.54e7),
    ("foot", "ft", 3.048e8),
    ("yard", "yd", 9.144e8),
    ("mile", "mi", 1.609344e12),
    ("parsec", "pc", 3.085677581e25),
]
UNIT_TO_NM = {name: nm for name, _, nm in _UNITS}
_UNIT_NAMES = {**{name: name for name, _, _ in _UNITS}, **{sym: name for name, sym, _ in _UNITS}, "μm": "micrometer"}

_ELEMENT_CLASS = re.compile(r"^(uint|int)(8|16|24|32|64)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SEGMENTATION_WORDS = ("seg", "label")


# --------------------------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------------------------
def sniff(path) -> bool:
    """True for a webKnossos dataset (folder/URL with ``datasource-properties.json``, or that
    file itself) or a bare WKW mag folder (``header.wkw``). Reads at most two small files;
    never raises."""
    try:
        s = os.fspath(path)
        root, name = _split_properties_path(s)
        if name is not None:
            if is_url(s):
                try:
                    return open_store(root).exists(name)
                except RemoteAccessError:  # e.g. 401: the file name is decisive
                    return True
            return os.path.isfile(s)
        if not is_url(s) and not os.path.isdir(s):
            return False
        store = open_store(s)
        try:
            return store.exists(PROPERTIES_FILE) or store.exists(HEADER_FILE)
        except RemoteAccessError:
            return False
    except Exception:
        return False


def _split_properties_path(s: str) -> tuple[str, str | None]:
    """(dataset root, properties file name or None) of a path or URL."""
    bare = s.split("?", 1)[0].rstrip("/") if is_url(s) else s
    if bare.replace("\\", "/").rsplit("/", 1)[-1] == PROPERTIES_FILE:
        parent, name = split_parent(bare)
        return parent, name
    return s, None


# --------------------------------------------------------------------------------------------
# JSON helpers: every error names the file and the key path
# --------------------------------------------------------------------------------------------
class _Props:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str):
        raise ValueError(f"{self.source}: {where}: {message}" if self.source else f"{where}: {message}")

    def get(self, obj: dict, key: str, where: str, required: bool = True, default=None):
        if not isinstance(obj, dict):
            self.fail(where, f"expected an object, got {_kind(obj)}")
        if key not in obj or (obj[key] is None and required):
            if required:
                self.fail(_sub(where, key), "missing")
            return default
        return obj[key]

    def obj(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def lst(self, value, where: str) -> list:
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def string(self, value, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {_kind(value)}")
        return value

    def number(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"expected a number, got {value!r}")
        return float(value)

    def integer(self, value, where: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            self.fail(where, f"expected an integer, got {value!r}")
        value = int(value)
        if minimum is not None and value < minimum:
            self.fail(where, f"must be >= {minimum}, got {value}")
        return value

    def vec3(self, value, where: str, kind: str = "number", minimum: int | None = None) -> tuple:
        items = self.lst(value, where)
        if len(items) != 3:
            self.fail(where, f"expected 3 values [x, y, z], got {len(items)}")
        if kind == "int":
            return tuple(self.integer(v, f"{where}[{i}]", minimum) for i, v in enumerate(items))
        return tuple(self.number(v, f"{where}[{i}]") for i, v in enumerate(items))

    def boolean(self, value, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"expected true or false, got {value!r}")
        return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _sub(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _load_properties(store: Store, key: str) -> dict:
    source = store.location(key)
    raw = store.read(key)
    if raw is None:
        raise ValueError(f"{source}: not found")
    if len(raw) > MAX_PROPERTIES_BYTES:
        raise ValueError(f"{source}: {len(raw)} bytes is too large for a properties file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{source}: expected a JSON object at the top level, got {_kind(value)}")
    return value


# --------------------------------------------------------------------------------------------
# field parsers
# --------------------------------------------------------------------------------------------
def parse_mag(value, where: str = "mag", props: _Props | None = None) -> tuple[int, int, int]:
    """A mag given as ``[x, y, z]``, an int or a string ``"2"`` / ``"2-2-1"`` (:func:`.mags.parse_mag`)."""
    props = props or _Props("")  # messages start with ``where`` alone
    if isinstance(value, list):
        value = props.vec3(value, where, "int")
    elif not isinstance(value, str):
        value = props.integer(value, where)
    try:
        return parse_mag_name(value, where)
    except ValueError as err:
        if not props.source:
            raise
        raise ValueError(f"{props.source}: {err}") from None


def _scale(props: _Props, data: dict) -> tuple[tuple[float, float, float], str, tuple]:
    """(voxel size in nm, unit name, factor as written) of the root ``scale``."""
    scale = props.get(data, "scale", "")
    if isinstance(scale, list):  # legacy: [x, y, z] in nm
        factor = props.vec3(scale, "scale")
        unit = "nanometer"
    else:
        scale = props.obj(scale, "scale")
        factor = props.vec3(props.get(scale, "factor", "scale"), "scale.factor")
        unit_raw = props.get(scale, "unit", "scale", required=False, default="nanometer")
        unit_raw = props.string(unit_raw, "scale.unit")
        unit = _UNIT_NAMES.get(unit_raw) or _UNIT_NAMES.get(unit_raw.lower())
        if unit is None:
            props.fail("scale.unit", f"unknown length unit {unit_raw!r}; expected one of {', '.join(UNIT_TO_NM)}")
    if min(factor) <= 0:
        where = "scale" if isinstance(scale, list) else "scale.factor"
        props.fail(where, f"voxel size must be > 0, got {list(factor)}")
    nm = UNIT_TO_NM[unit]
    return tuple(f * nm for f in factor), unit, factor


def _dtype(props: _Props, layer: dict, where: str) -> tuple[np.dtype, int]:
    """(per-channel dtype, channel count) from ``elementClass`` and ``numChannels``."""
    ec = props.string(props.get(layer, "elementClass", where), _sub(where, "elementClass"))
    n_raw = props.get(layer, "numChannels", where, required=False)
    if n_raw is None:
        channels = 3 if ec == "uint24" else 1  # legacy uint24 = RGB
    else:
        channels = props.integer(n_raw, _sub(where, "numChannels"), minimum=1)
    if ec in ("float", "double"):
        kind, bits = "f", 32 if ec == "float" else 64
    elif m := _ELEMENT_CLASS.match(ec):
        kind, bits = ("u" if m.group(1) == "uint" else "i"), int(m.group(2))
    else:
        props.fail(
            _sub(where, "elementClass"),
            f"unknown element class {ec!r}; expected uint8/16/24/32/64, int8/16/32/64, float or double",
        )
    per_channel = bits / channels
    if per_channel not in (8, 16, 32, 64) or (kind == "f" and per_channel == 8):
        props.fail(
            _sub(where, "numChannels"),
            f"{channels} channels do not divide elementClass {ec!r} ({bits} bits) into a voxel type",
        )
    return np.dtype(f"<{kind}{int(per_channel) // 8}"), channels


def _largest_segment_id(props: _Props, value, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get("customJsonEncoding") != "bigint" or "value" not in value:
            props.fail(where, f"expected an integer or a bigint envelope, got {value!r}")
        text = value["value"]
        if isinstance(text, bool) or not isinstance(text, (str, int)) or not re.fullmatch(r"\d+", str(text).strip()):
            props.fail(f"{where}.value", f"expected a decimal integer string, got {text!r}")
        return int(str(text).strip())
    return props.integer(value, where, minimum=0)


def _hex_color(props: _Props, value, where: str) -> str | None:
    if value is None:
        return None
    rgb = props.lst(value, where)
    if len(rgb) not in (3, 4):
        props.fail(where, f"expected [r, g, b] with 0-255 values, got {value!r}")
    channels = [min(max(int(round(props.number(v, f"{where}[{i}]"))), 0), 255) for i, v in enumerate(rgb[:3])]
    return "#" + "".join(f"{c:02x}" for c in channels)


def _view_config(props: _Props, layer: Layer, config, where: str) -> None:
    """Apply a layer's ``defaultViewConfiguration`` (colour, contrast, visibility, ...)."""
    if config is None:
        return
    config = props.obj(config, where)
    if config.get("color") is not None:
        layer.color = _hex_color(props, config["color"], f"{where}.color")
    rng = config.get("intensityRange")
    if rng is not None:
        values = props.lst(rng, f"{where}.intensityRange")
        if len(values) != 2:
            props.fail(f"{where}.intensityRange", f"expected [min, max], got {rng!r}")
        lo, hi = (props.number(v, f"{where}.intensityRange[{i}]") for i, v in enumerate(values))
        layer.contrast_limits = (lo, hi) if hi > lo else (lo, lo + 1)
    if config.get("isDisabled") is not None:
        layer.visible = not props.boolean(config["isDisabled"], f"{where}.isDisabled")
    if config.get("alpha") is not None:
        layer.extra["opacity"] = min(max(props.number(config["alpha"], f"{where}.alpha") / 100.0, 0.0), 1.0)
    if config.get("isInverted") is not None:
        layer.extra["inverted"] = props.boolean(config["isInverted"], f"{where}.isInverted")
    layer.extra.setdefault("default_view_configuration", {}).update(config)


# --------------------------------------------------------------------------------------------
# mags
# --------------------------------------------------------------------------------------------
@dataclass
class _MagSpec:
    factor: tuple[int, int, int]
    path: str | None
    axis_order: dict[str, int] | None
    channel_index: int | None
    cube_length: int | None
    where: str


def _mag_specs(props: _Props, layer: dict, where: str, data_format: str) -> list[_MagSpec]:
    if "mags" in layer and layer["mags"] is not None:
        key, entries = "mags", props.lst(layer["mags"], _sub(where, "mags"))
    elif "wkwResolutions" in layer and layer["wkwResolutions"] is not None:
        key, entries = "wkwResolutions", props.lst(layer["wkwResolutions"], _sub(where, "wkwResolutions"))
    else:
        props.fail(_sub(where, "mags"), "missing (neither mags nor wkwResolutions)")
    if not entries:
        props.fail(_sub(where, key), "no mags listed")
    specs, seen = [], set()
    for j, entry in enumerate(entries):
        w = f"{where}.{key}[{j}]"
        entry = props.obj(entry, w)
        mag_key = "mag" if key == "mags" else "resolution"
        factor = parse_mag(props.get(entry, mag_key, w), f"{w}.{mag_key}", props)
        if factor in seen:
            props.fail(f"{w}.{mag_key}", f"mag {list(factor)} is listed twice")
        seen.add(factor)
        path = entry.get("path")
        if path is not None:
            path = props.string(path, f"{w}.path").strip() or None
        axis_order = entry.get("axisOrder")
        if axis_order is not None:
            axis_order = props.obj(axis_order, f"{w}.axisOrder")
            axis_order = {
                str(a): props.integer(d, f"{w}.axisOrder.{a}", minimum=0) for a, d in axis_order.items()
            }
            for a in "xy":
                if a not in axis_order:
                    props.fail(f"{w}.axisOrder.{a}", "missing")
            dims = list(axis_order.values())
            if len(set(dims)) != len(dims):
                props.fail(f"{w}.axisOrder", f"two axes share an array dimension: {axis_order}")
        channel_index = entry.get("channelIndex")
        if channel_index is not None:
            channel_index = props.integer(channel_index, f"{w}.channelIndex", minimum=0)
        cube_length = entry.get("cubeLength")
        if cube_length is not None:
            cube_length = props.integer(cube_length, f"{w}.cubeLength", minimum=1)
        specs.append(_MagSpec(factor, path, axis_order, channel_index, cube_length, w))
    return sorted(specs, key=lambda s: (max(s.factor), sum(s.factor)))


def _mag_locations(root: Store, layer_name: str, spec: _MagSpec, username, password) -> list[tuple[Store, str]]:
    """Candidate (store, key) places of one mag's array, most likely first."""
    path = spec.path
    if path is None:
        short, long = mag_name(spec.factor), "-".join(str(f) for f in spec.factor)
        return [(root, f"{layer_name}/{short}")] + ([(root, f"{layer_name}/{long}")] if long != short else [])
    if _SCHEME.match(path):
        scheme = path.split("://", 1)[0].lower()
        if scheme not in ("http", "https", "file"):
            raise _SkipMag(f"{scheme}:// paths are not supported (only http, https and file)")
        return [(open_store(path, username, password), "")]
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        if not isinstance(root, LocalStore):
            raise _SkipMag(f"absolute local path {path!r} in a remote dataset")
        return [(open_store(path), "")]
    rel = path.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    rel = rel.strip("/")
    if rel.startswith("../") and not isinstance(root, LocalStore):
        rel = urllib.parse.urljoin(root.root + "/", rel)
        return [(open_store(rel, username, password), "")]
    if rel.startswith("../"):
        return [(open_store(os.path.normpath(os.path.join(root.root, rel))), "")]
    return [(root, rel), (root, f"{layer_name}/{rel}")]


class _SkipMag(Exception):
    """A mag this reader cannot open (reason in the message); other mags may still work."""


class _NotHere(Exception):
    """No array at this candidate location."""


def _open_wkw(store: Store, key: str) -> WkwMag:
    try:
        return WkwMag(store, key)
    except MissingHeaderError:
        raise _NotHere(store.location(key)) from None


def _open_zarr(store: Store, key: str):
    from .zarr_io import ZarrArray

    try:
        return ZarrArray(store, key)
    except ValueError:
        if not any(store.exists(f"{key}/{m}" if key else m) for m in ("zarr.json", ".zarray")):
            raise _NotHere(store.location(key)) from None
        raise


def _zarr_dims(za, spec: _MagSpec, props: _Props) -> tuple[dict[str, int], dict[int, int]]:
    """(dims for zarr_chunked, pinned dims) from axisOrder, dimension_names or the wK default."""
    order = spec.axis_order
    if order is None and za.dimension_names and {"x", "y"} <= set(za.dimension_names):
        order = {str(n): i for i, n in enumerate(za.dimension_names) if n is not None}
    if order is None:
        order = {4: {"c": 0, "x": 1, "y": 2, "z": 3}, 3: {"x": 0, "y": 1, "z": 2}, 2: {"x": 0, "y": 1}}.get(za.ndim)
        if order is None:
            props.fail(_sub(spec.where, "axisOrder"), f"missing for a {za.ndim}-d array {za.location}")
    bad = [a for a, d in order.items() if d >= za.ndim]
    if bad:
        props.fail(
            _sub(spec.where, "axisOrder"),
            f"axis {bad[0]!r} -> dimension {order[bad[0]]} but {za.location} has {za.ndim}",
        )
    dims = {a: order[a] for a in ("x", "y", "z", "c") if a in order}
    fixed: dict[int, int] = {}
    if spec.channel_index is not None and "c" in dims:
        fixed[dims.pop("c")] = spec.channel_index
    return dims, fixed


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
def _layer(props: _Props, root: Store, raw: dict, where: str, voxel_size, username, password) -> Layer | None:
    name = props.string(props.get(raw, "name", where), _sub(where, "name"))
    if not name.strip():
        props.fail(_sub(where, "name"), "empty layer name")
    category = props.string(props.get(raw, "category", where), _sub(where, "category"))
    if category not in ("color", "segmentation"):
        props.fail(_sub(where, "category"), f"expected 'color' or 'segmentation', got {category!r}")
    fmt = raw.get("dataFormat")
    if fmt is None and raw.get("wkwResolutions") is not None:
        fmt = "wkw"  # the oldest files say nothing: wkwResolutions means WKW
    fmt = props.string(props.get(raw, "dataFormat", where) if fmt is None else fmt, _sub(where, "dataFormat"))
    if fmt in UNSUPPORTED_FORMATS:
        warnings.warn(
            f"{props.source}: layer {name!r}: dataFormat {fmt!r} is not supported yet; the layer is skipped",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if fmt not in SUPPORTED_FORMATS:
        props.fail(
            _sub(where, "dataFormat"),
            f"unknown format {fmt!r}; expected one of {', '.join(SUPPORTED_FORMATS + UNSUPPORTED_FORMATS)}",
        )
    bbox_where = _sub(where, "boundingBox")
    bbox = props.obj(props.get(raw, "boundingBox", where), bbox_where)
    offset = props.vec3(props.get(bbox, "topLeft", bbox_where), f"{bbox_where}.topLeft", "int")
    size = tuple(
        props.integer(props.get(bbox, k, bbox_where), f"{bbox_where}.{k}", minimum=0)
        for k in ("width", "height", "depth")
    )
    dtype, channels = _dtype(props, raw, where)
    rgb = category == "color" and dtype == np.uint8 and channels in (3, 4)
    largest = None
    if category == "segmentation":
        largest = _largest_segment_id(props, raw.get("largestSegmentId"), _sub(where, "largestSegmentId"))
    specs = _mag_specs(props, raw, where, fmt)

    layer_dir = root.location(name)
    mags: list[Mag] = []
    for spec in specs:
        mag = _open_mag(props, root, name, spec, fmt, size, offset, dtype, channels, rgb, username, password)
        if mag is not None:
            mags.append(mag)
    if not mags:
        warnings.warn(
            f"{props.source}: layer {name!r} has no readable mag; the layer is skipped", RuntimeWarning, stacklevel=3
        )
        return None
    first = mags[0].array
    file_dtype, file_channels = first.dtype, first.channels
    if (file_dtype, file_channels) != (dtype, channels):
        warnings.warn(
            f"{props.source}: layer {name!r}: elementClass/numChannels say {channels} x {dtype.name} but the "
            f"data holds {file_channels} x {file_dtype.name}; using the data's type",
            RuntimeWarning,
            stacklevel=3,
        )
        dtype, channels = file_dtype, file_channels
        rgb = category == "color" and dtype == np.uint8 and channels in (3, 4)
    extra: dict[str, Any] = {"data_format": fmt, "element_class": raw.get("elementClass")}
    for key, out in (
        ("coordinateTransformations", "coordinate_transformations"),
        ("additionalAxes", "additional_axes"),
        ("mappings", "mappings"),
        ("attachments", "attachments"),
    ):
        if raw.get(key) is not None:
            extra[out] = raw[key]
    layer = Layer(
        name=name,
        category=category,
        dtype=dtype,
        voxel_size=voxel_size,
        mags=mags,
        offset=offset,
        size=size,
        num_channels=channels,
        rgb=rgb,
        format=fmt,
        source=layer_dir,
        largest_segment_id=largest,
        extra=extra,
    )
    _view_config(props, layer, raw.get("defaultViewConfiguration"), _sub(where, "defaultViewConfiguration"))
    return layer


def _open_mag(props, root, layer_name, spec, fmt, size, offset, dtype, channels, rgb, username, password) -> Mag | None:
    try:
        candidates = _mag_locations(root, layer_name, spec, username, password)
    except _SkipMag as e:
        warnings.warn(f"{props.source}: {spec.where}: {e}; the mag is skipped", RuntimeWarning, stacklevel=4)
        return None
    opener = _open_wkw if fmt == "wkw" else _open_zarr
    array_source = None
    for store, key in candidates:
        try:
            array_source = opener(store, key)
            break
        except _NotHere:
            continue
    if array_source is None:
        where = " or ".join(store.location(key) for store, key in candidates)
        warnings.warn(
            f"{props.source}: {spec.where}: no {fmt} array at {where}; the mag is skipped", RuntimeWarning, stacklevel=4
        )
        return None
    if fmt == "wkw":
        wkw = array_source
        if spec.cube_length is not None and spec.cube_length != wkw.file_edge:
            warnings.warn(
                f"{props.source}: {spec.where}.cubeLength is {spec.cube_length} but {wkw.location}/header.wkw "
                f"says files of {wkw.file_edge} voxels; using the header",
                RuntimeWarning,
                stacklevel=4,
            )
        if spec.channel_index is not None and wkw.channels > 1:
            warnings.warn(
                f"{props.source}: {spec.where}.channelIndex is ignored for WKW; all {wkw.channels} channels are shown",
                RuntimeWarning,
                stacklevel=4,
            )
        array = wkw.chunked(size, offset, spec.factor, rgb=rgb and wkw.channels in (3, 4))
        return Mag(factor=spec.factor, array=array, path=wkw.location)
    from .zarr_io import zarr_chunked

    za = array_source
    dims, fixed = _zarr_dims(za, spec, props)
    origin, shape = mag_extent(size, offset, spec.factor)
    n_channels = za.shape[dims["c"]] if "c" in dims else 1
    array = zarr_chunked(
        za,
        dims,
        fixed=fixed,
        offset_zyx=origin,
        shape_zyx=shape,
        rgb=rgb and n_channels in (3, 4),
    )
    return Mag(factor=spec.factor, array=array, path=za.location)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def open_webknossos(path, username: str | None = None, password: str | None = None) -> Dataset:
    """Open a webKnossos dataset (folder, URL or its ``datasource-properties.json``) lazily."""
    s = os.fspath(path)
    root_path, name = _split_properties_path(s)
    root = open_store(root_path, username, password)
    props_key = name or PROPERTIES_FILE
    if name is None and not root.exists(PROPERTIES_FILE):
        if root.exists(HEADER_FILE):
            return _open_bare_mag(root, s)
        raise ValueError(f"{root.location()}: neither {PROPERTIES_FILE} nor a WKW header.wkw here")
    data = _load_properties(root, props_key)
    props = _Props(root.location(props_key))
    voxel_size, unit, factor = _scale(props, data)
    layers_raw = props.lst(props.get(data, "dataLayers", ""), "dataLayers")
    if not layers_raw:
        props.fail("dataLayers", "no layers")
    layers, skipped, names = [], [], set()
    for i, raw in enumerate(layers_raw):
        where = f"dataLayers[{i}]"
        raw = props.obj(raw, where)
        layer = _layer(props, root, raw, where, voxel_size, username, password)
        if layer is None:
            skipped.append(raw.get("name"))
            continue
        if layer.name in names:
            props.fail(_sub(where, "name"), f"layer name {layer.name!r} is used twice")
        names.add(layer.name)
        layers.append(layer)
    if not layers:
        raise ValueError(f"{props.source}: none of the layers can be read (skipped: {skipped})")
    view = data.get("defaultViewConfiguration")
    if view is not None:
        view = props.obj(view, "defaultViewConfiguration")
        per_layer = view.get("layers")
        if per_layer is not None:
            per_layer = props.obj(per_layer, "defaultViewConfiguration.layers")
            for layer in layers:
                if layer.name in per_layer:
                    _view_config(props, layer, per_layer[layer.name], f"defaultViewConfiguration.layers.{layer.name}")
    ds_id = data.get("id") if isinstance(data.get("id"), dict) else {}
    folder = _folder_name(root_path)
    extra: dict[str, Any] = {
        "voxel_size_unit": unit,
        "voxel_size_factor": factor,
        "version": data.get("version", 1),
        "properties_file": props.source,
    }
    if view is not None:
        extra["default_view_configuration"] = view
    if skipped:
        extra["skipped_layers"] = skipped
    if ds_id:
        extra["id"] = ds_id
    return Dataset(
        name=folder or str(ds_id.get("name") or "webknossos"),
        format="webknossos",
        source=root.location(),
        layers=layers,
        extra=extra,
    )


def _folder_name(path: str) -> str:
    s = path.split("?", 1)[0] if is_url(path) else path
    return s.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _open_bare_mag(store: Store, path: str) -> Dataset:
    """A WKW mag folder without properties: one layer, extent from the data file names."""
    wkw = WkwMag(store, "")
    folder = _folder_name(path)
    try:
        factor = parse_mag_name(folder, path)
        layer_name = _folder_name(split_parent(path.rstrip("/"))[0]) or "layer"
    except ValueError:  # not a mag name: the folder is the layer
        factor, layer_name = (1, 1, 1), folder or "layer"
    extent = wkw.file_extent_xyz()  # ValueError over HTTP
    size = tuple(e * f for e, f in zip(extent, factor))
    channels = wkw.channels
    rgb = wkw.dtype == np.uint8 and channels in (3, 4)
    segmentation = channels == 1 and (
        any(w in layer_name.lower() for w in _SEGMENTATION_WORDS) or (wkw.dtype.kind == "u" and wkw.dtype.itemsize >= 4)
    )
    layer = Layer(
        name=layer_name,
        category="segmentation" if segmentation else "color",
        dtype=wkw.dtype,
        voxel_size=(1.0, 1.0, 1.0),
        mags=[Mag(factor=factor, array=wkw.chunked(size, (0, 0, 0), factor, rgb=rgb), path=wkw.location)],
        offset=(0, 0, 0),
        size=size,
        num_channels=channels,
        rgb=rgb,
        format="wkw",
        source=wkw.location,
        extra={
            "data_format": "wkw",
            "note": "bare WKW mag folder: voxel size unknown (shown as 1 x 1 x 1), "
            "extent taken from the data file names (whole files)",
        },
    )
    return Dataset(
        name=layer_name,
        format="webknossos",
        source=store.location(),
        layers=[layer],
        extra={"voxel_size_unknown": True, "note": layer.extra["note"]},
    )
