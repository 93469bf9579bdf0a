"""KNOSSOS cube datasets: legacy ``knossos.conf``, PyKNOSSOS ``[Dataset]`` confs and ``.k.toml``.

A config describes one or more layers; each layer is a grid of cubes stored as
``{base}/mag{M}/x{X:04}/y{Y:04}/z{Z:04}/{EXP}_mag{M}_x{X:04}_y{Y:04}_z{Z:04}{EXT}``.
Opening parses the config and, for legacy confs only, probes the ``mag{N}/knossos.conf``
markers; cubes are read on demand through a :class:`~.store.Store`, so local folders and
HTTP(S) servers behave the same. Where KNOSSOS and knossos_utils disagree we follow KNOSSOS.
"""

from __future__ import annotations

import io
import os
import re
import tomllib
import urllib.parse
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .chunked import CorruptChunkError
from .model import Dataset, Layer, Mag, chunked
from .store import HTTP_TIMEOUT_S, HttpStore, LocalStore, RemoteAccessError, Store, is_url

__all__ = ["sniff", "open_knossos", "cube_key", "CUBE_EXTENSIONS"]

SEGMENTATION_EXTENSIONS = (".seg.sz.zip", ".seg")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
JPEG2000_EXTENSIONS = (".j2k", ".6.jp2")
CUBE_EXTENSIONS = (".raw", *IMAGE_EXTENSIONS, *JPEG2000_EXTENSIONS, *SEGMENTATION_EXTENSIONS)
PYKNOSSOS_SUFFIXES = ("ariadne.conf", ".pyknossos.conf", ".pyk.conf", ".pyk.auth.conf")
LEGACY_MAGS = tuple(2**i for i in range(17))  # mag1 … mag65536, as KNOSSOS probes them
DEFAULT_CUBE_SHAPE = (128, 128, 128)
MAX_CONFIG_BYTES = 4 * 2**20
HTTP_PROBE_CONNECTIONS = 4  # parallel mag-marker probes; polite to small servers
MAX_PLAIN_CONFS = 4  # plain *.conf files of a folder whose content sniffing may read
SNIFF_HTTP_TIMEOUT_S = min(HTTP_TIMEOUT_S, 10.0)

_MAG_DIR = re.compile(r"^mag(\d+)$")
_TOML_LAYER = re.compile(r"^[ \t]*\[\[[ \t]*Layer[ \t]*\]\]", re.M)
_LEGACY_STATEMENT = re.compile(
    r"^[ \t]*(?:experiment[ \t]+name\b|(?:boundary|scale)[ \t]+[xyz][ \t]+[^;\s]+[ \t]*;)", re.M
)
_PYK_FILE_TYPES = {0: ".raw", 1: ".png", 2: ".png", 3: ".jpg"}
_TOML_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint64": np.uint64}


def cube_key(experiment: str, mag_folder: int, cube_xyz, ext: str) -> str:
    """Store key of one cube: ``mag{M}/x{X:04}/y…/z…/{EXP}_mag{M}_x…_y…_z…{ext}``.

    ``EXP`` is the experiment name cut before its first ``_mag``; indices are zero-padded to
    width 4 and never truncated.
    """
    x, y, z = (int(c) for c in cube_xyz)
    exp = experiment.partition("_mag")[0]
    return (
        f"mag{mag_folder}/x{x:04d}/y{y:04d}/z{z:04d}/"
        f"{exp}_mag{mag_folder}_x{x:04d}_y{y:04d}_z{z:04d}{ext}"
    )


# --------------------------------------------------------------------------------------------
# locating the config
# --------------------------------------------------------------------------------------------
@dataclass
class _Config:
    """One config file: the store of its folder, its name, its text and its dialect."""

    folder: Store
    name: str
    text: str
    dialect: str  # "legacy" | "pyknossos" | "toml"

    @property
    def location(self) -> str:
        return self.folder.location(self.name)


def _is_config_name(name: str) -> bool:
    """Names that are KNOSSOS configs by name alone (content still decides the dialect)."""
    n = name.lower()
    return n.endswith((".k.toml", ".k.conf", *PYKNOSSOS_SUFFIXES)) or n == "knossos.conf"


def _dialect(name: str, text: str) -> str | None:
    """Dialect by name, confirmed by content; None for anything that is not a KNOSSOS config."""
    n = name.lower()
    if n.endswith(".k.toml"):
        return "toml" if _TOML_LAYER.search(text) else None
    if not n.endswith(".conf"):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("[Dataset"):
        return "pyknossos"
    if n.endswith(PYKNOSSOS_SUFFIXES):  # PyKNOSSOS by name: a header further down is fine
        return "pyknossos" if any(line.startswith("[Dataset") for line in lines) else None
    return "legacy" if _LEGACY_STATEMENT.search(text) else None


def _store_name(store: Store) -> str:
    if isinstance(store, HttpStore):
        return urllib.parse.urlsplit(store.root).path.rstrip("/").rpartition("/")[2]
    return Path(store.root).name


def _parent_store(store: Store) -> Store:
    if isinstance(store, HttpStore):
        parts = urllib.parse.urlsplit(store.root)
        parent = parts.path.rstrip("/").rpartition("/")[0]
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parent, "", ""))
        return HttpStore(url, store.username, store.password, store.query, store.timeout, store.retries)
    return LocalStore(Path(store.root).parent)


def _read_text(store: Store, name: str) -> str | None:
    if isinstance(store, LocalStore):
        try:
            if os.path.getsize(store.location(name)) > MAX_CONFIG_BYTES:
                return None
        except OSError:
            return None
    data = store.read(name)
    if data is None or len(data) > MAX_CONFIG_BYTES:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _dialect_by_name(name: str) -> str:
    n = name.lower()
    return "toml" if n.endswith(".k.toml") else "pyknossos" if n.endswith(PYKNOSSOS_SUFFIXES) else "legacy"


def _config_file(folder: Store, name: str, follow_parent: bool = True, by_name: bool = False) -> _Config | None:
    """The config ``name`` in ``folder`` if its content confirms a dialect. ``by_name``: a file
    the user named explicitly is parsed by its name even unconfirmed, so errors are specific."""
    text = _read_text(folder, name)
    if text is None:
        return None
    dialect = _dialect(name, text)
    if dialect is not None:
        return _Config(folder, name, text, dialect)
    if follow_parent and name == "knossos.conf" and _MAG_DIR.match(_store_name(folder)):
        # an empty mag-folder marker (knossos_utils writes these): the dataset config is one up
        cfg = _config_in_folder(_parent_store(folder), look_into_mags=False)
        if cfg is not None:
            return cfg
    if by_name and _is_config_name(name):
        return _Config(folder, name, text, _dialect_by_name(name))
    return None


def _config_in_folder(folder: Store, look_into_mags: bool = True) -> _Config | None:
    """The config of a dataset folder: ``*.k.toml`` first (the current format), then PyKNOSSOS
    confs, ``*.k.conf``, ``knossos.conf``, plain ``*.conf``, finally the lowest ``mag{N}/knossos.conf``.
    A folder that cannot be listed (HTTP) is probed for the legacy marker files only."""
    names = folder.list_dir()
    if names is None:
        cfg = _config_file(folder, "knossos.conf")
        if cfg is None and look_into_mags:
            cfg = _config_file(folder.child("mag1"), "knossos.conf", follow_parent=False)
        return cfg
    lower = {n: n.lower() for n in names}
    named = (
        sorted(n for n in names if lower[n].endswith(".k.toml"))
        + sorted(n for n in names if lower[n].endswith(PYKNOSSOS_SUFFIXES))
        + sorted(n for n in names if lower[n].endswith(".k.conf"))
        + [n for n in names if n == "knossos.conf"]
    )
    # PyKNOSSOS ships its configs as plain <name>.conf; look at a few, by content
    plain = sorted(n for n in names if lower[n].endswith(".conf") and n not in named)[:MAX_PLAIN_CONFS]
    ordered = named + plain
    for name in ordered:
        cfg = _config_file(folder, name)
        if cfg is not None:
            return cfg
    if look_into_mags:
        mag_dirs = sorted((int(m.group(1)), n) for n in names if (m := _MAG_DIR.match(n)))
        for _, n in mag_dirs[:1]:
            cfg = _config_file(folder.child(n), "knossos.conf", follow_parent=False)
            if cfg is not None:
                return cfg
    return None


def _find_config(path, username=None, password=None, quick=False, by_name=False) -> _Config | None:
    """The config a path or URL (file or folder) designates, or None if it is not KNOSSOS.
    ``by_name``: accept a file with a KNOSSOS config name even if its content does not confirm."""
    s = os.fspath(path)
    if s.lower().startswith("file://"):
        s = urllib.parse.unquote(urllib.parse.urlsplit(s).path)
    if not s:
        return None
    if is_url(s):
        timeout = SNIFF_HTTP_TIMEOUT_S if quick else HTTP_TIMEOUT_S
        kw = {"timeout": timeout, "retries": 1} if quick else {}
        parts = urllib.parse.urlsplit(s)
        head, _, name = parts.path.rstrip("/").rpartition("/")
        if name.lower().endswith((".conf", ".k.toml")):
            folder_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, head, parts.query, ""))
            return _config_file(HttpStore(folder_url, username, password, **kw), name, by_name=by_name)
        return _config_in_folder(HttpStore(s, username, password, **kw))
    p = Path(s).absolute()
    if p.is_file():
        return _config_file(LocalStore(p.parent), p.name, by_name=by_name)
    if p.is_dir():
        return _config_in_folder(LocalStore(p))
    return None


def sniff(path) -> bool:
    """True for a KNOSSOS config (legacy, PyKNOSSOS, ``.k.toml``) or a folder holding one.

    Reads at most a few small config files (never a cube); never raises.
    """
    try:
        return _find_config(path, quick=True) is not None
    except RemoteAccessError:
        # e.g. 401 without credentials: a config name is decisive, opening will say why it failed
        try:
            return _is_config_name(urllib.parse.urlsplit(os.fspath(path)).path.rstrip("/").rpartition("/")[2])
        except Exception:
            return False
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------
@dataclass
class _LayerSpec:
    """Everything needed to build one layer, format-independent."""

    experiment: str
    ext: str
    extent: tuple[int, int, int]  # mag-1 voxels (x, y, z)
    cube: tuple[int, int, int]  # (x, y, z)
    voxel_size: tuple[float, float, float]  # mag-1 nm (x, y, z)
    levels: list[tuple[int, tuple[float, float, float]]]  # (mag folder number, factor xyz)
    store: Store
    where: str  # config location and line/key, for messages
    dtype: np.dtype = np.dtype(np.uint8)
    channels: int = 1
    color: str | None = None
    visible: bool | None = None  # None: the KNOSSOS default
    description: str = ""

    def __post_init__(self):
        if self.is_segmentation:
            self.dtype = np.dtype(np.uint64)

    @property
    def is_segmentation(self) -> bool:
        return self.ext in SEGMENTATION_EXTENSIONS


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str]:
    return parts.scheme.lower(), (parts.hostname or "") + (f":{parts.port}" if parts.port else "")


def _join_query(*queries: str) -> str:
    return "&".join(q.lstrip("?&") for q in queries if q and q.lstrip("?&"))


class _Credentials:
    """Builds the store of each layer's base. Credentials: explicit arguments win over the base
    URL's userinfo, then config keys (``_UserName``/``_Password``, ``ftp_mode``), then those of
    the URL the config was read from (for the same server only)."""

    def __init__(self, cfg: _Config, username, password):
        self.cfg = cfg
        self.explicit = (username, password) if username is not None else None

    def store(self, base: str | None, user=None, password=None, query: str = "") -> Store:
        """Store of a layer's base URL or path; absent or relative means the config's folder."""
        folder = self.cfg.folder
        base = (base or "").strip()
        if base.lower().startswith("file://"):
            return LocalStore(urllib.parse.unquote(urllib.parse.urlsplit(base).path))
        if is_url(base):
            return self._http(base, user, password, query)
        if isinstance(folder, HttpStore):
            url = urllib.parse.urljoin(folder.root + "/", base) if base else folder.root
            return self._http(url, user, password, _join_query(folder.query, query))
        return LocalStore(Path(folder.root) / base) if base else folder

    def _http(self, url: str, user, password, query: str) -> HttpStore:
        parts = urllib.parse.urlsplit(url)
        creds = self.explicit
        if creds is None and parts.username is not None:
            creds = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        if creds is None and user is not None:
            creds = (user, password)
        folder = self.cfg.folder
        if creds is None and isinstance(folder, HttpStore) and folder.username is not None:
            if _origin(urllib.parse.urlsplit(folder.root)) == _origin(parts):
                creds = (folder.username, folder.password)
        scheme, netloc = _origin(parts)
        bare = urllib.parse.urlunsplit((scheme, netloc, parts.path, "", ""))
        user, password = creds if creds else (None, None)
        return HttpStore(bare, user, password, query=_join_query(parts.query, query))


def _err(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _number(text: str, where: str, what: str, kind=float, positive=True):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise _err(where, f"{what}: {text!r} is not a number") from None
    if kind is int:
        if not value.is_integer():
            raise _err(where, f"{what}: {text!r} is not an integer")
        value = int(value)
    if positive and not value > 0:
        raise _err(where, f"{what}: {text!r} must be positive")
    return value


def _levels(voxel_sizes, power_of_two: bool):
    """(mag folder, factor) per level; factor per axis = voxel size / mag-1 voxel size."""
    v0 = voxel_sizes[0]
    out = []
    for i, v in enumerate(voxel_sizes):
        factor = []
        for a in range(3):
            f = v[a] / v0[a]
            factor.append(float(round(f)) if abs(f - round(f)) < 1e-9 * max(1.0, f) else f)
        out.append((2**i if power_of_two else i + 1, tuple(factor)))
    return out


def _parse_legacy(cfg: _Config, creds: _Credentials) -> list[_LayerSpec]:
    """``knossos.conf`` / ``*.k.conf``: one ``statement;`` per line (KNOSSOS ``fromLegacyConf``)."""
    loc = cfg.location
    name = None
    values: dict[tuple[str, str], float] = {}
    magnification = None
    cube_edge = DEFAULT_CUBE_SHAPE[0]
    compression = 0
    png = False
    ftp: list[str] | None = None
    for lineno, raw in enumerate(cfg.text.splitlines(), 1):
        line = raw.strip()
        tokens = [t for t in re.split(r"[\s;]+", line) if t]
        if not tokens:
            continue
        where = f"{loc}: line {lineno}"
        head = tokens[0]
        if head == "experiment":
            m = re.match(r"experiment\s+name\b\s*(.*)$", line)
            rest = (m.group(1) if m else "").strip().rstrip(";").strip()
            if '"' in rest:
                pieces = rest.split('"')
                if len(pieces) < 3:
                    raise ValueError(f"{where}: unbalanced quote in experiment name")
                rest = pieces[1]
            if not rest:
                raise ValueError(f'{where}: expected experiment name "NAME";')
            name = rest
        elif head in ("boundary", "scale"):
            if len(tokens) < 3 or tokens[1] not in ("x", "y", "z"):
                raise ValueError(f"{where}: expected '{head} x|y|z VALUE;'")
            value = _number(tokens[2], where, f"{head} {tokens[1]}")
            values[(head, tokens[1])] = int(value) if head == "boundary" else value  # KNOSSOS truncates
        elif head == "magnification":
            magnification = _number(tokens[1] if len(tokens) > 1 else "", where, "magnification", int)
        elif head == "cube_edge_length":
            cube_edge = _number(tokens[1] if len(tokens) > 1 else "", where, "cube_edge_length", int)
        elif head == "compression_ratio":
            compression = _number(tokens[1] if len(tokens) > 1 else "", where, "compression_ratio", int, positive=False)
        elif head == "png":
            png = True
        elif head == "ftp_mode":
            if len(tokens) < 2:
                raise ValueError(f"{where}: expected 'ftp_mode HOST [PATH USER PASS TIMEOUT];'")
            ftp = tokens[1:]
    if name is None:
        raise ValueError(f'{loc}: missing statement \'experiment name "NAME";\'')
    for head in ("boundary", "scale"):
        for axis in "xyz":
            if (head, axis) not in values:
                raise ValueError(f"{loc}: missing statement '{head} {axis} VALUE;'")
    if values[("boundary", "x")] <= 0 or values[("boundary", "y")] <= 0 or values[("boundary", "z")] <= 0:
        raise ValueError(f"{loc}: boundary must be positive")

    conf_dir = _MAG_DIR.match(_store_name(cfg.folder))
    if magnification is None:  # KNOSSOS assumes 1; a conf inside magN describes mag N
        magnification = int(conf_dir.group(1)) if conf_dir else 1
    extent = tuple(values[("boundary", a)] * magnification for a in "xyz")
    voxel = tuple(values[("scale", a)] / magnification for a in "xyz")

    if ftp is not None:  # ftp_mode HOST [PATH [USER PASS [TIMEOUT]]] or ftp_mode URL
        args = ftp
        url = args[0] if "://" in args[0] else "http://" + args[0]
        parts = urllib.parse.urlsplit(url)
        if len(args) >= 2:
            parts = parts._replace(path=args[1] if args[1].startswith("/") else "/" + args[1])
        user, password = (args[2], args[3]) if len(args) >= 4 else (None, None)
        root = creds.store(urllib.parse.urlunsplit(parts), user, password)
    else:
        root = _parent_store(cfg.folder) if conf_dir else cfg.folder

    mags = _probe_legacy_mags(root) or [magnification]
    mags = [m for m in LEGACY_MAGS if mags[0] <= m <= mags[-1]]

    compressed = {0: None, 1000: ".jpg", 6: ".6.jp2"}.get(compression, ".j2k")
    companion = ".png" if png else ".raw"
    kinds = [(companion, True), (".seg.sz.zip", True)]
    if compressed is not None:
        kinds = [(compressed, True), (companion, False), (".seg.sz.zip", True)]
    levels = [(m, (float(m),) * 3) for m in mags]
    return [
        _LayerSpec(name, ext, extent, (cube_edge,) * 3, voxel, levels, root, loc, visible=visible)
        for ext, visible in kinds
    ]


def _probe_legacy_mags(root: Store) -> list[int]:
    """Power-of-two mags whose ``mag{N}/knossos.conf`` exists (KNOSSOS ``checkOnlineMags``);
    a listable folder without markers falls back to its ``mag{N}`` folders."""
    keys = [f"mag{m}/knossos.conf" for m in LEGACY_MAGS]
    if isinstance(root, LocalStore):
        found = [m for m, k in zip(LEGACY_MAGS, keys) if root.exists(k)]
    else:
        errors: list[Exception] = []

        def probe(key):
            try:
                return root.exists(key)
            except RemoteAccessError as e:  # S3-like servers answer 403 for absent keys
                errors.append(e)
                return False

        with ThreadPoolExecutor(max_workers=HTTP_PROBE_CONNECTIONS) as pool:
            found = [m for m, ok in zip(LEGACY_MAGS, pool.map(probe, keys)) if ok]
        if not found and errors:
            raise errors[0]
    if not found:
        names = root.list_dir() or []
        found = sorted(int(m.group(1)) for n in names if (m := _MAG_DIR.match(n)) and int(m.group(1)) in LEGACY_MAGS)
    return found


def _split_list(value: str, where: str, what: str, kind=float, positive=True) -> list:
    items = [v.strip() for v in value.split(",")]
    while items and not items[-1]:  # a trailing comma is allowed
        items.pop()
    return [_number(v, where, what, kind, positive) for v in items]


def _as_bool(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _parse_pyknossos(cfg: _Config, creds: _Credentials) -> list[_LayerSpec]:
    """PyKNOSSOS ``[Dataset]`` sections of ``KEY = VALUE`` lines (KNOSSOS ``parsePyKnossosConf``)."""
    loc = cfg.location
    sections: list[tuple[int, dict[str, tuple[str, int]]]] = []
    unspaced: list[int] = []
    for lineno, raw in enumerate(cfg.text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[Dataset"):
            sections.append((lineno, {}))
            continue
        if not sections or not line or line.startswith(("#", ";")) or "=" not in line:
            continue  # lines before the first header, comments, unknown lines: KNOSSOS skips them
        key, _, value = line.partition("=")
        if " = " not in line:
            unspaced.append(lineno)
        sections[-1][1][key.strip()] = (value.strip().replace('"', ""), lineno)
    if unspaced:
        warnings.warn(
            f"{loc}: line(s) {', '.join(map(str, unspaced))} lack spaces around '=' "
            "(KNOSSOS and knossos_utils skip such lines); napari-knossos reads them",
            UserWarning,
            stacklevel=4,
        )
    if not sections:
        raise ValueError(f"{loc}: no [Dataset] section")

    specs = []
    for header_line, entries in sections:
        section = f"{loc}: [Dataset] at line {header_line}"

        def value(key, default=None, required=False):
            if key in entries:
                return entries[key][0]
            if required:
                raise ValueError(f"{section}: missing key {key}")
            return default

        def at(key):
            return f"{loc}: line {entries[key][1]}"

        name = value("_BaseName", required=True)
        if not name:
            raise ValueError(f"{at('_BaseName')}: _BaseName is empty")
        scales = _split_list(value("_DataScale", required=True), at("_DataScale"), "_DataScale")
        if not scales or len(scales) % 3:
            raise ValueError(f"{at('_DataScale')}: _DataScale needs x,y,z triplets (one per mag), got {len(scales)} values")
        voxel_sizes = [tuple(scales[i : i + 3]) for i in range(0, len(scales), 3)]
        extent = _split_list(value("_Extent", required=True), at("_Extent"), "_Extent", int)
        if len(extent) != 3:
            raise ValueError(f"{at('_Extent')}: _Extent needs 3 values x,y,z, got {len(extent)}")
        cube = DEFAULT_CUBE_SHAPE
        if "_CubeSize" in entries:
            cube = _split_list(value("_CubeSize"), at("_CubeSize"), "_CubeSize", int)
            if len(cube) != 3:
                raise ValueError(f"{at('_CubeSize')}: _CubeSize needs 3 values x,y,z, got {len(cube)}")
        server = value("_ServerFormat", "")
        if server == "1":
            raise ValueError(f"{at('_ServerFormat')}: _ServerFormat = 1 (NeuroData/OpenConnectome) is not supported")

        ext = ".raw"
        if "_BaseExt" in entries:
            ext = value("_BaseExt")
            if ext not in CUBE_EXTENSIONS:
                raise ValueError(f"{at('_BaseExt')}: unknown cube extension {ext!r}; expected one of {', '.join(CUBE_EXTENSIONS)}")
        if "_FileType" in entries and entries["_FileType"][1] > entries.get("_BaseExt", ("", 0))[1]:
            file_type = _number(value("_FileType"), at("_FileType"), "_FileType", int, positive=False)  # later line wins
            if file_type not in _PYK_FILE_TYPES:
                raise ValueError(f"{at('_FileType')}: unknown _FileType {file_type} (0 raw, 1/2 PNG, 3 JPG)")
            if file_type == 1:
                warnings.warn(f"{at('_FileType')}: _FileType = 1 (rotated PNG) is read as plain PNG", UserWarning, stacklevel=4)
            ext = _PYK_FILE_TYPES[file_type]

        store = creds.store(value("_BaseURL", ""), value("_UserName"), value("_Password"))
        visible = _as_bool(value("_Visible")) if "_Visible" in entries else None
        levels = _levels(voxel_sizes, server == "knossos")
        specs.append(
            _LayerSpec(name, ext, tuple(extent), tuple(cube), voxel_sizes[0], levels, store, section,
                       color=value("_Color"), visible=visible, description=value("_Description", ""))
        )
    return specs


def _parse_toml(cfg: _Config, creds: _Credentials) -> list[_LayerSpec]:
    """``.k.toml``: an array of ``[[Layer]]`` tables, one layer per FileExtension (KNOSSOS ``parseToml``)."""
    loc = cfg.location
    try:
        doc = tomllib.loads(cfg.text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{loc}: TOML syntax error: {e}") from None
    tables = doc.get("Layer")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{loc}: key Layer: expected one or more [[Layer]] tables")

    specs = []
    for i, table in enumerate(tables):

        def key(k):
            return f"{loc}: key Layer[{i}].{k}"

        def need(k, types, what):
            if k not in table:
                raise ValueError(f"{key(k)}: missing (required)")
            v = table[k]
            if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):
                raise ValueError(f"{key(k)}: expected {what}, got {v!r}")
            return v

        def opt(k, types, what, default):
            return need(k, types, what) if k in table else default

        def triple(k, kind, v=None):
            v = need(k, list, "[x, y, z]") if v is None else v
            ok = len(v) == 3 and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in v)
            if ok and kind is int:
                ok = all(float(n).is_integer() for n in v)
            if not ok or not all(n > 0 for n in v):
                raise ValueError(f"{key(k)}: expected 3 positive {'integers' if kind is int else 'numbers'} [x, y, z], got {v!r}")
            return tuple(kind(n) for n in v)

        name = need("Name", str, "a string")
        if not name:
            raise ValueError(f"{key('Name')}: empty")
        extent = triple("Extent_px", int)
        cube = triple("CubeShape_px", int)
        sizes = need("VoxelSize_nm", list, "a list of [x, y, z], one per mag")
        if not sizes or not all(isinstance(s, list) for s in sizes):
            raise ValueError(f"{key('VoxelSize_nm')}: expected a list of [x, y, z] (one per mag), got {sizes!r}")
        voxel_sizes = [triple("VoxelSize_nm", float, s) for s in sizes]
        exts = need("FileExtension", (list, str), "a list of strings")
        exts = [exts] if isinstance(exts, str) else exts
        if not exts:
            raise ValueError(f"{key('FileExtension')}: empty")
        for ext in exts:
            if ext not in CUBE_EXTENSIONS:
                raise ValueError(f"{key('FileExtension')}: unknown cube extension {ext!r}; expected one of {', '.join(CUBE_EXTENSIONS)}")
        server = opt("ServerFormat", str, "a string", "")
        if server in ("1", "precomputed"):
            raise ValueError(f"{key('ServerFormat')}: ServerFormat {server!r} is not supported (KNOSSOS cube folders only)")
        dtype_name = opt("DataType", str, "a string", None)
        if dtype_name is not None and dtype_name not in _TOML_DTYPES:
            raise ValueError(f"{key('DataType')}: expected one of {', '.join(_TOML_DTYPES)}, got {dtype_name!r}")
        channels = opt("NumChannels", int, "1 or 3", 1)
        if channels not in (1, 3):
            raise ValueError(f"{key('NumChannels')}: expected 1 or 3, got {channels!r}")
        url = opt("URL", str, "a string", "")
        store = creds.store(url, query=opt("AdditionalQuery", str, "a string", ""))
        visible = opt("Visible", bool, "true or false", None)
        color = opt("Color", str, "a string", None)
        description = opt("Description", str, "a string", "")
        levels = _levels(voxel_sizes, server == "knossos")
        for ext in exts:
            spec = _LayerSpec(name, ext, extent, cube, voxel_sizes[0], levels, store, key("FileExtension"),
                              color=color, visible=visible, description=description)
            if not spec.is_segmentation:
                spec.dtype = np.dtype(_TOML_DTYPES[dtype_name or "uint8"])
                spec.channels = channels
                if ext != ".raw" and (spec.dtype != np.uint8 and not (ext == ".png" and spec.dtype == np.uint16)):
                    raise ValueError(f"{key('DataType')}: {dtype_name} cubes cannot be stored as {ext}")
            specs.append(spec)
    return specs


# --------------------------------------------------------------------------------------------
# cube decoding
# --------------------------------------------------------------------------------------------
def _check_jpeg2000(spec: _LayerSpec, name: str):
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{spec.where}: layer {name!r} stores JPEG 2000 cubes ({spec.ext}); reading them needs the "
            "package imagecodecs: pip install napari-knossos[jpeg2000]"
        ) from None


def _decoder(spec: _LayerSpec) -> Callable[[bytes], np.ndarray]:
    """bytes of one cube file → array (channels, cz, cy, cx); ValueError when undecodable."""
    cx, cy, cz = spec.cube
    voxels = cx * cy * cz
    channels = spec.channels
    dtype = spec.dtype.newbyteorder("<")

    def shaped(flat: np.ndarray) -> np.ndarray:
        if channels == 1:
            return flat.reshape(1, cz, cy, cx)
        return np.moveaxis(flat.reshape(cz, cy, cx, channels), -1, 0)  # channels interleaved

    if spec.ext in (".raw", ".seg"):
        if spec.ext == ".seg":
            dtype = np.dtype("<u8")
        want = voxels * channels * dtype.itemsize

        def decode_raw(data: bytes) -> np.ndarray:
            if len(data) != want:
                raise ValueError(f"{len(data)} bytes, a {cx}x{cy}x{cz} cube of {dtype.name} needs {want}")
            return shaped(np.frombuffer(data, dtype))

        return decode_raw

    if spec.ext == ".seg.sz.zip":
        import zipfile

        import cramjam

        want = voxels * 8
        max_payload = want + want // 6 + 64  # snappy's worst-case expansion

        def decode_seg_zip(data: bytes) -> np.ndarray:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = zf.namelist()
                if not members:
                    raise ValueError("empty zip archive")
                declared = zf.getinfo(members[0]).file_size
                if declared > max_payload:  # zipfile never inflates past the declared size
                    raise ValueError(f"member {members[0]!r} declares {declared} bytes, more than a "
                                     f"snappy stream of a {cx}x{cy}x{cz} uint64 cube can hold")
                payload = zf.read(members[0])
            n = cramjam.snappy.decompress_raw_len(payload)
            if n != want:
                raise ValueError(f"snappy payload holds {n} bytes, a {cx}x{cy}x{cz} uint64 cube needs {want}")
            out = np.empty(voxels, "<u8")
            cramjam.snappy.decompress_raw_into(payload, out)
            return out.reshape(1, cz, cy, cx)

        return decode_seg_zip

    def check(arr: np.ndarray) -> np.ndarray:
        if arr.size != voxels * channels:
            raise ValueError(f"image has {arr.size // channels} pixels, a {cx}x{cy}x{cz} cube needs {voxels}")
        return shaped(arr.reshape(-1))

    if spec.ext in IMAGE_EXTENSIONS:
        from PIL import Image

        if Image.MAX_IMAGE_PIXELS and voxels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = voxels  # a cube image is as large as its cube, never a bomb
        mode = "RGB" if channels == 3 else ("I;16" if dtype.itemsize == 2 else "L")

        def decode_image(data: bytes) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as img:
                if img.mode != mode:
                    img = img.convert("I" if mode == "I;16" else mode)
                arr = np.asarray(img)
            return check(arr.astype(spec.dtype, copy=False))

        return decode_image

    import imagecodecs  # presence checked at open time

    def decode_jpeg2000(data: bytes) -> np.ndarray:
        arr = imagecodecs.jpeg2k_decode(data)
        if channels == 1 and arr.ndim == 3:
            arr = arr[..., 0]
        if arr.dtype != spec.dtype:
            shift = 8 * (arr.dtype.itemsize - spec.dtype.itemsize)
            arr = (arr >> shift if shift > 0 else arr).astype(spec.dtype)
        return check(arr)

    return decode_jpeg2000


def _cube_reader(spec: _LayerSpec, mag_folder: int):
    """``read_chunk((cz, cy, cx))`` for one mag: None for a missing cube, CorruptChunkError for
    an undecodable one."""
    store = spec.store
    decode = _decoder(spec)

    def read_chunk(idx):
        z, y, x = idx
        key = cube_key(spec.experiment, mag_folder, (x, y, z), spec.ext)
        data = store.read(key)
        if data is None:
            return None
        try:
            return decode(data)
        except Exception as e:
            raise CorruptChunkError(store.location(key), f"{type(e).__name__}: {e}") from None

    return read_chunk


# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------
def _layer_names(specs: list[_LayerSpec]) -> list[str]:
    """Unique, meaningful names: the experiment name for images, "segmentation" for
    segmentation, qualified by experiment and cube extension only where they would clash."""

    def candidates(i: int, s: _LayerSpec) -> list[str]:
        ext = s.ext.lstrip(".")
        if s.is_segmentation:
            base = ["segmentation", f"{s.experiment} segmentation", f"{s.experiment} segmentation ({ext})"]
        else:
            base = [s.experiment, f"{s.experiment} ({ext})"]
        return base + [f"{base[-1]} #{i + 1}"]

    options = [candidates(i, s) for i, s in enumerate(specs)]
    level = [0] * len(specs)
    while True:
        names = [o[k] for o, k in zip(options, level)]
        counts = Counter(names)
        clashing = [i for i, n in enumerate(names) if counts[n] > 1 and level[i] < len(options[i]) - 1]
        if not clashing:
            return names
        for i in clashing:
            level[i] += 1


def _public_source(path) -> str:
    s = os.fspath(path)
    if is_url(s):
        p = urllib.parse.urlsplit(s)
        netloc = (p.hostname or "") + (f":{p.port}" if p.port else "")
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return s


def _build_layer(spec: _LayerSpec, name: str, first: bool) -> Layer:
    if spec.ext in JPEG2000_EXTENSIONS:
        _check_jpeg2000(spec, name)
    rgb = spec.channels == 3 and spec.dtype == np.uint8
    mags = []
    for folder, factor in spec.levels:
        key = ("knossos", spec.store.location(), spec.experiment, spec.ext, f"mag{folder}")
        array = chunked(spec.extent, (0, 0, 0), factor, spec.cube, spec.dtype, _cube_reader(spec, folder), key,
                        channels=spec.channels, rgb=rgb)
        mags.append(Mag(factor=factor, array=array, path=spec.store.location(f"mag{folder}")))
    visible = spec.visible
    if visible is None:  # KNOSSOS: the first layer and segmentation layers are shown
        visible = first or spec.is_segmentation
    return Layer(
        name=name,
        category="segmentation" if spec.is_segmentation else "color",
        dtype=spec.dtype,
        voxel_size=tuple(float(v) for v in spec.voxel_size),
        mags=mags,
        offset=(0, 0, 0),
        size=tuple(int(v) for v in spec.extent),
        num_channels=spec.channels,
        rgb=rgb,
        format="knossos",
        source=spec.store.location(),
        color=spec.color,
        visible=bool(visible),
        extra={
            "experiment_name": spec.experiment,
            "file_extension": spec.ext,
            "cube_shape_xyz": tuple(spec.cube),
            "mag_folders": [f"mag{f}" for f, _ in spec.levels],
            "description": spec.description,
        },
    )


def open_knossos(path, username: str | None = None, password: str | None = None) -> Dataset:
    """Open a KNOSSOS dataset lazily from a config file, a dataset folder or a URL of either.

    ``username``/``password`` authenticate HTTP requests (they override credentials in the
    config or URL). Raises ValueError naming the file and line (or TOML key) for malformed
    configs, and for paths that are not KNOSSOS datasets.
    """
    cfg = _find_config(path, username, password, by_name=True)
    if cfg is None:
        raise ValueError(f"{_public_source(path)}: no KNOSSOS dataset config (knossos.conf, *.k.conf, *.k.toml or a PyKNOSSOS *.conf)")
    creds = _Credentials(cfg, username, password)
    parse = {"legacy": _parse_legacy, "pyknossos": _parse_pyknossos, "toml": _parse_toml}[cfg.dialect]
    specs = parse(cfg, creds)
    names = _layer_names(specs)
    layers = [_build_layer(s, n, i == 0) for i, (s, n) in enumerate(zip(specs, names))]
    return Dataset(
        name=specs[0].experiment,
        format="knossos",
        source=_public_source(path),
        layers=layers,
        extra={"config": cfg.location, "dialect": cfg.dialect},
    )
