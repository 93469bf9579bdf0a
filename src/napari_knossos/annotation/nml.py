"""NML skeleton files in both dialects (KNOSSOS and webKnossos), read and written losslessly.

Reading streams the XML through lxml's parser-target interface (libxml2 fed 1 MiB blocks,
SAX-like callbacks, no element tree, so memory stays flat): each node's and edge's attribute
dict is appended to a list, converted column-wise with numpy every few hundred elements, and
handed to :meth:`Skeleton.set_nodes` once. Anything we do not model is kept: unknown elements
verbatim, unknown attributes of nodes/trees/groups/parameters in the model, and those of the
other elements (edge, comment, branchpoint, meta, metadataEntry, the list elements and the
root) in ``skeleton.extra_attrs`` (see :func:`read_nml`); all of it is written back where it
came from. Namespaces are kept as written: prefixed names (``xsi:foo``) and ``xmlns``
declarations are attributes like any other. Errors name the file, the line and the
element/attribute; lxml's target callbacks carry no position and values are checked in bulk,
so the line of a bad value is found by a second, error-only pass (see :func:`_locate`).

Why a parser target and not ``iterparse``: on a 1M-node file the bare target pass costs
~1.8 s here, iterparse (which builds and clears an element tree) ~3.5 s before any attribute
is read. lxml decides once per parser whether the target gets character data; a ``data``
callback that is a C-level ``list.append`` (cleared as we go, read only inside kept unknown
elements) costs ~0.2 s per million nodes, far less than the second pass (~1.8 s) a target
without it would need for every file with unknown elements (a webKnossos ``<volume>``, a
KNOSSOS ``<properties>``). With entity resolution off, libxml2 hands a ``&`` in an attribute
value to the target as ``&#38;``; :func:`_unescape` undoes that exactly.

Safety: entity resolution, network access and DTD loading are off, attribute defaults from a
DTD are not applied, and a DOCTYPE with an internal subset (where entities are declared) or an
external DTD (whose entities, unread, would silently vanish from values) is refused in the
parser's ``doctype`` callback, before libxml2 reads any of it; so no entity is ever declared,
and a reference to an undeclared one is a well-formedness error. A bare ``<!DOCTYPE things>``
is harmless and accepted.

Dialects (spec: knossos-annotations §3, webknossos-formats §3): KNOSSOS node/editPosition
coordinates are 1-based unless ``<nodes_0_based/>``; webKnossos is 0-based. The model is
0-based mag-1 voxels.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import itertools
import math
import os
import pyexpat
import re
import struct
import warnings
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any
from xml.etree import ElementTree

import numpy as np
from lxml import etree

from .skeleton import NODE_COLUMNS, BoundingBox, Group, MetadataEntry, Skeleton, Tree

__all__ = ["DIALECTS", "read_nml", "time_checksum", "write_nml"]

DIALECTS = ("knossos", "webknossos")

# NML node attribute -> model column
_NODE_ATTRS: dict[str, str] = {
    "id": "id",
    "x": "x",
    "y": "y",
    "z": "z",
    "radius": "radius",
    "rotX": "rot_x",
    "rotY": "rot_y",
    "rotZ": "rot_z",
    "inVp": "in_vp",
    "inMag": "in_mag",
    "bitDepth": "bit_depth",
    "interpolation": "interpolation",
    "time": "time",
}
_WK_NODE_ATTRS = {"rotX", "rotY", "rotZ", "bitDepth", "interpolation"}
_INT_RANGES = {"i1": (-(2**7), 2**7 - 1), "i2": (-(2**15), 2**15 - 1), "i4": (-(2**31), 2**31 - 1)}

# dialect markers (spec webknossos-formats §3.1): strong ones decide, weak ones only break ties
_K_PARAMS = {
    "createdin", "lastsavedin", "MovementArea", "guiMode", "dataset", "RadiusLocking",
    "skeletonVPState", "vpSettingsZoom", "segmentation", "idleTime", "brush_lock",
}  # fmt: skip
_WK_STRONG_PARAMS = {"editRotation", "zoomLevel", "userBoundingBox", "taskBoundingBox", "additionalAxes"}
# parameter elements we model (everything else: Parameters.knossos, or verbatim)
_MODELLED_PARAMS = {
    "experiment", "scale", "offset", "time", "editPosition", "editRotation", "zoomLevel",
    "activeNode", "MovementArea", "userBoundingBox", "taskBoundingBox", "nodes_0_based",
    "node_position_numbering",
}  # fmt: skip

_TRUE = {"true": 1, "1": 1, "false": 0, "0": 0, "True": 1, "False": 0, "TRUE": 1, "FALSE": 0}


def time_checksum(ms: int) -> str:
    """KNOSSOS ``<time checksum>``: sha256 hex of the 4 little-endian bytes of the int32 ``ms``
    (values outside int32 wrap, as in KNOSSOS)."""
    wrapped = ((int(ms) + 2**31) % 2**32) - 2**31
    return hashlib.sha256(struct.pack("<i", wrapped)).hexdigest()


# ------------------------------------------------------------------------------------------
# errors with a location
# ------------------------------------------------------------------------------------------
class _Where(Exception):
    """A problem found while reading; read_nml turns it into a ValueError with the line.

    The element is located by ``tag`` (+ optional ancestor ``path`` from the root) and,
    when given, an attribute whose value satisfies ``match``; ``nth`` picks among matches.
    """

    def __init__(self, message: str, tag: str, attr: str | None = None, match=None, nth: int = 0, path=None):
        super().__init__(message)
        self.message, self.tag, self.attr, self.match, self.nth, self.path = message, tag, attr, match, nth, path


def _equals(value: str) -> Callable[[str | None], bool]:
    return lambda v: v == value


def _int_equals(number: int) -> Callable[[str | None], bool]:
    def match(v):
        try:
            return v is not None and _to_int(v) == number
        except ValueError:
            return False

    return match


class _MalformedXML(Exception):
    """Not well-formed (or refused) XML at ``line`` (None: unknown)."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.message, self.line = message, line


_READ_BLOCK = 1 << 20  # bytes handed to the parser at a time
_XML_NS = "http://www.w3.org/XML/1998/namespace"
# nothing resolved, loaded or fetched; comments and PIs reach the target (kept inside unknown
# elements)
_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False, "no_network": True, "load_dtd": False, "dtd_validation": False,
    "attribute_defaults": False, "huge_tree": True, "remove_comments": False, "remove_pis": False,
}  # fmt: skip


def _new_parser(target) -> etree.XMLParser:
    """An lxml parser calling ``target`` (no tree is built)."""
    return etree.XMLParser(target=target, **_PARSER_OPTIONS)


def _feed(parser, stream) -> None:
    """Parse all of the binary ``stream`` with ``parser``."""
    feed = parser.feed
    while block := stream.read(_READ_BLOCK):
        feed(block)
    parser.close()


def _amp_escaped() -> bool:
    """Whether the target parser hands a ``&`` in an attribute value on as ``&#38;`` (libxml2
    does so when entities are not resolved, lxml then does not undo it)."""

    class Probe:
        value = None

        def start(self, tag, attrib):
            Probe.value = attrib.get("a")

        def close(self):
            return None

    parser = _new_parser(Probe())
    parser.feed(b'<x a="&amp;"/>')
    parser.close()
    return Probe.value == "&#38;"


# exact inverse: a literal "&#38;" in a value arrives as "&#38;#38;"
_AMP_ESCAPED = _amp_escaped()


def _unescape(value: str) -> str:
    """An attribute value as the file means it (see :func:`_amp_escaped`)."""
    return value.replace("&#38;", "&") if _AMP_ESCAPED and "&" in value else value


def _unescaped(values: list[str]) -> list[str]:
    """:func:`_unescape` of a column of values (a C-speed test first)."""
    return [_unescape(v) for v in values] if _AMP_ESCAPED and "&" in "".join(values) else values


_POSITION_RE = re.compile(r", line \d+, column \d+$")


def _syntax_message(error: etree.XMLSyntaxError) -> str:
    """libxml2's message without the position lxml appends (we name the line ourselves)."""
    return _POSITION_RE.sub("", error.msg or str(error))


@contextlib.contextmanager
def _opened(source):
    """A binary stream over ``source`` (bytes, a path, or (stream, start offset)) from its start;
    a borrowed stream is put back where it was."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source)
    elif isinstance(source, tuple):
        stream, start = source
        position = stream.tell()
        stream.seek(start)
        try:
            yield stream
        finally:
            stream.seek(position)
    else:
        with open(source, "rb") as stream:
            yield stream


class _Found(Exception):
    def __init__(self, line: int | None):
        super().__init__(line)
        self.line = line


def _locate(source, where: _Where) -> int | None:
    """Line of the element ``where`` describes (second pass; only used on errors), or None.

    expat, not lxml: a parser target gets no position at all, and lxml's ``sourceline`` is off
    past line 65535 (libxml2 keeps 16-bit element lines and borrows the next text node's);
    expat gives the line where the element starts. Names are matched as written (no namespace
    processing), as the first pass reports them. The first pass already refused entity
    declarations; here they just end the search."""
    parser = pyexpat.ParserCreate()
    parser.ordered_attributes = True
    parser.specified_attributes = True
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    ancestors: list[str] = []
    path = None if where.path is None else list(where.path)
    seen = 0

    def start(tag, attrs):
        nonlocal seen
        if (
            tag == where.tag
            and (path is None or ancestors == path)
            and (where.attr is None or where.match is None or where.match(dict(zip(attrs[::2], attrs[1::2])).get(where.attr)))
        ):
            if seen == where.nth:
                raise _Found(parser.CurrentLineNumber)
            seen += 1
        ancestors.append(tag)

    def refuse(*_):
        raise _Found(None)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: ancestors.pop()
    parser.EntityDeclHandler = refuse
    with _opened(source) as stream:
        try:
            while block := stream.read(_READ_BLOCK):
                parser.Parse(block, False)
            parser.Parse(b"", True)
        except _Found as found:
            return found.line
        except pyexpat.ExpatError:  # an encoding expat lacks, or malformed after all
            return None
    return None


_PROLOG_LIMIT = 1 << 24  # bytes looked at to find a refused DOCTYPE's line
_ENTITY_RE = re.compile(r"<!ENTITY\s+(?:%\s+)?([^\s>\"']*)")


def _text_encoding(head: bytes) -> str:
    """The encoding of XML bytes starting with ``head``: byte order mark, else declaration."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
    ):  # fmt: skip
        if head.startswith(bom):
            return codec
    if head.startswith(b"\x00<\x00?"):
        return "utf-16-be"
    if head.startswith(b"<\x00?\x00"):
        return "utf-16-le"
    declared = re.match(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)", head)
    codec = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        codecs.lookup(codec)
    except LookupError:
        return "utf-8"
    return codec


def _doctype_refusal(source, name: str, pubid: str | None, system: str | None) -> _MalformedXML | None:
    """Why the DOCTYPE of ``source`` is refused, or None for a bare ``<!DOCTYPE name>``. lxml
    tells neither where it is nor whether an internal subset follows, so the raw text is read."""
    with _opened(source) as stream:
        head = stream.read(_PROLOG_LIMIT)
    text = head.decode(_text_encoding(head[:256]), errors="replace")
    start = text.find("<!DOCTYPE")
    if start < 0:  # cannot be checked
        return _MalformedXML(f"DOCTYPE declarations are not accepted (<!DOCTYPE {name} …>)", None)
    line = text.count("\n", 0, start) + 1
    quote, i = None, start + len("<!DOCTYPE")
    while i < len(text) and (quote or text[i] not in "[>"):
        if quote is None and text[i] in "\"'":
            quote = text[i]
        elif text[i] == quote:
            quote = None
        i += 1
    if i < len(text) and text[i] == "[":
        entity = _ENTITY_RE.search(text, i)
        if entity:
            line = text.count("\n", 0, entity.start()) + 1
            return _MalformedXML(f"entity declarations are not accepted (<!ENTITY {entity.group(1)} …>)", line)
        return _MalformedXML(f"DOCTYPE internal subsets are not accepted (<!DOCTYPE {name} [ … ]>)", line)
    if pubid or system:
        return _MalformedXML(f'external DTDs are not accepted (<!DOCTYPE {name} … "{system or pubid}">)', line)
    return None


# ------------------------------------------------------------------------------------------
# number parsing
# ------------------------------------------------------------------------------------------
def _to_int(text: str) -> int:
    """int, also from an integral float spelling ("12.0", "1e3")."""
    try:
        return int(text)
    except (TypeError, ValueError):
        pass
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"not an integer: {text!r}") from None
    if not value.is_integer():
        raise ValueError(f"not an integer: {text!r}")
    return int(value)


def _to_float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {text!r}") from None


def _to_bool(text: str) -> bool:
    v = _TRUE.get(text.strip()) if isinstance(text, str) else None
    if v is None:
        raise ValueError(f"not a boolean: {text!r}")
    return bool(v)


def _parse_ints(values) -> np.ndarray | None:
    """Decimal integer strings -> int64 (C speed), or None if any is not a plain integer."""
    if not values:
        return np.empty(0, np.int64)
    try:
        arr = np.fromstring(" ".join(values), dtype=np.int64, sep=" ")
    except (ValueError, TypeError):
        return None
    return arr if len(arr) == len(values) else None


def _all_same(values) -> bool:
    return len(values) > 1 and values[0] == values[-1] and values.count(values[0]) == len(values)


def _int_column(values, dtype: str) -> tuple[np.ndarray, int | None]:
    """Strings -> int array; returns (array, index of the first invalid value or None)."""
    if _all_same(values):  # inVp="0", inMag="1" …: parse once
        first, bad = _int_column(values[:1], dtype)
        return (np.full(len(values), first[0], np.int64), None) if bad is None else (first, 0)
    arr = _parse_ints(values)
    if arr is None:
        arr = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            try:
                arr[i] = _to_int(v)
            except (ValueError, OverflowError):
                return arr, i
    lo_hi = _INT_RANGES.get(dtype)
    if lo_hi is not None and len(arr):
        bad = np.flatnonzero((arr < lo_hi[0]) | (arr > lo_hi[1]))
        if len(bad):
            return arr, int(bad[0])
    return arr, None


def _float_column(values) -> tuple[np.ndarray, int | None]:
    """Strings -> float64. Few distinct spellings (radius "1.5" …) are parsed once each;
    integral spellings ("12", "12.0") take the int path; float parsing is the slow last resort."""
    n = len(values)
    sample = dict.fromkeys(values[:32])
    if n > 1 and len(sample) <= 8:
        for spellings in (sample, None):  # the first values' spellings, else all of them
            if spellings is None:
                spellings = dict.fromkeys(values)
                if len(spellings) > 64:
                    break
            try:
                lookup = {k: float(k) for k in spellings}
                return np.fromiter(map(lookup.__getitem__, values), np.float64, n), None
            except KeyError:
                continue
            except (ValueError, TypeError):
                break  # reported below, with its index
    if values:
        text = " ".join(values) + " "
        if ".0 " in text:
            text = text.replace(".0 ", " ")
        try:
            arr = np.fromstring(text, dtype=np.int64, sep=" ")
            if len(arr) == n and not (np.abs(arr) > 2**53).any():
                return arr.astype(np.float64), None
        except (ValueError, TypeError):
            pass
    try:
        return np.array(values, dtype=np.float64), None
    except (ValueError, TypeError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (ValueError, TypeError):
                return np.zeros(n), i
        raise


def _bool_column(values) -> tuple[np.ndarray, int | None]:
    out = np.empty(len(values), np.int8)
    for i, v in enumerate(values):
        b = _TRUE.get(v.strip())
        if b is None:
            return out, i
        out[i] = b
    return out, None


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
# parser contexts
_DOC, _ROOT, _PARAMS, _THING, _NODES, _EDGES, _METADATA = "doc", "root", "params", "thing", "nodes", "edges", "metadata"
_COMMENTS, _BRANCHPOINTS, _GROUPS, _LEAF_T, _LEAF_R, _CAPTURE, _AFTER = (
    "comments", "branchpoints", "groups", "leaf_t", "leaf_r", "capture", "after",
)  # fmt: skip

_NODE_PATH = ("things", "thing", "nodes")
_EDGE_PATH = ("things", "thing", "edges")


_WRITE_BATCH = 1 << 15  # nodes formatted at a time when writing
_READ_BATCH = 1 << 9  # node/edge attribute dicts gathered before converting (measured best: still cache-hot)
_NSDECL = "nsdecl"  # parser context: namespace declarations for the next element pending
_SOURCE, _TARGET = itemgetter("source"), itemgetter("target")


class _Bucket:
    """Nodes with the same number of attributes: their attribute dicts, in file order."""

    __slots__ = ("append", "marked", "marks", "rows", "width")

    def __init__(self, width: int):
        self.width = width
        self.rows: list[dict[str, str]] = []
        self.append = self.rows.append
        self.reset()

    def reset(self) -> None:
        self.rows.clear()
        self.marks: list[tuple[int, int]] = []  # (nodes so far, tree id)
        self.marked = 0


def _columns_by_names(rows: list[dict[str, str]]) -> list[tuple[dict[str, list[str]], np.ndarray | None]]:
    """Columns of values by attribute name from attribute dicts of equal length: one group per
    set of names, with its rows (None: all rows, in order)."""
    names = list(rows[0])
    try:  # the usual case: every row has the first one's names (and, as long, no others)
        return [(dict(zip(names, map(list, zip(*map(itemgetter(*names), rows))))), None)]
    except KeyError:
        pass
    groups: dict[frozenset[str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(frozenset(row), []).append(i)
    out = []
    for members in groups.values():
        values = {name: [rows[r][name] for r in members] for name in rows[members[0]]}
        out.append((values, np.array(members, np.intp)))
    return out


class _NmlReader:
    """lxml parser target building a Skeleton (see module docstring)."""

    def __init__(self, source) -> None:
        self._source = source  # re-read for a DOCTYPE's line
        self._stack: list[str] = []
        # character data: appended by lxml (C-level), used inside captured elements only,
        # dropped elsewhere
        self._text: list[str] = []
        self.data = self._text.append
        # namespaces: bindings in scope (prefix, uri) and those declared for the next element
        self._bindings: list[tuple[str, str]] = []
        self._pending_ns: list[tuple[str, str]] = []
        self._ctx_before_ns = _DOC
        # unknown-element capture
        self._builder: ElementTree.TreeBuilder | None = None
        self._depth = 0
        self._on_captured: Callable[[Any], None] | None = None
        # nodes: attribute dicts gathered per attribute count, converted per batch
        self._buckets: dict[int, _Bucket] = {}
        self._columns: dict[str, list[np.ndarray]] = {c: [] for c in NODE_COLUMNS}
        self._extras: dict[str, dict[int, str]] = {}  # unmodelled node attributes
        self._node_wk_attrs = False
        # edges: attribute dicts ({"source": s, "target": t}), converted per batch
        self._edge_rows: list[dict[str, str]] = []
        self._edge_arrays: list[np.ndarray] = []
        # other content
        self.skeleton = Skeleton()
        self._tree: Tree | None = None
        self._tree_attrs: list[tuple[Tree, dict[str, str]]] = []
        self._comments: list[tuple[str, str, dict[str, str]]] = []  # node, content, other attributes
        self._branchpoints: list[tuple[str, str | None, dict[str, str]]] = []  # id, time, other attributes
        self._edge_attrs: list[tuple[str, str, dict[str, str]]] = []  # source, target, other attributes
        self._group_stack: list[Group] = []
        self._params_seen: set[str] = set()
        self._edit_position: tuple[float, float, float] | None = None
        self.index_origin: int | None = None  # from nodes_0_based / node_position_numbering
        # unmodelled attributes of elements the model has no place for (see read_nml)
        self.extra_attrs: dict[str, dict[Any, dict[str, str]]] = {}
        # dialect markers, strongest first (see _decide_dialect)
        self.strong_k: set[str] = set()
        self.strong_wk: set[str] = set()
        self.k_params: set[str] = set()
        self.weak_wk: set[str] = set()
        self.weak_k: set[str] = set()

        self._install_handlers()

    # -- parser target ------------------------------------------------------------------------
    def _install_handlers(self) -> None:
        """start/end/start_ns as closures: the per-node path touches only local cells
        (measurably faster than attribute lookups on two million elements)."""
        ctx = _DOC
        width, append, rows = -1, None, []  # -1 matches no node: the first node picks its bucket
        edge_rows = self._edge_rows
        edge_append, limit = edge_rows.append, _READ_BATCH
        nodes_ctx, edges_ctx, ns_ctx = _NODES, _EDGES, _NSDECL
        node_other, edge_other = self._node_other, self._edge_other
        flush_nodes, flush_edges = self._flush_nodes, self._flush_edges
        slow_start, slow_end = self._start, self._end
        pending_ns, bindings = self._pending_ns, self._bindings

        def start(tag, attrib):
            nonlocal ctx, width, append, rows
            if ctx is nodes_ctx and tag == "node":  # hot path: the attribute dict as it is
                if len(attrib) == width:
                    append(attrib)
                else:
                    width, append, rows = node_other(attrib)
                if len(rows) >= limit:
                    flush_nodes()
            elif ctx is edges_ctx and tag == "edge":  # hot path
                if len(attrib) == 2:
                    edge_append(attrib)
                else:
                    edge_other(attrib)
                if len(edge_rows) >= limit:
                    flush_edges()
            else:
                ctx = slow_start(tag, attrib, ctx)

        def end(tag):
            nonlocal ctx
            if (ctx is nodes_ctx and tag == "node") or (ctx is edges_ctx and tag == "edge"):  # hot path
                return
            ctx = slow_end(tag, ctx)

        def start_ns(prefix, uri):
            """Called before the start of the declaring element: it takes the slow path."""
            nonlocal ctx
            if ctx is not ns_ctx:
                self._ctx_before_ns, ctx = ctx, ns_ctx
            pending_ns.append((prefix or "", uri))
            bindings.append((prefix or "", uri))

        self.start, self.end, self.start_ns = start, end, start_ns

    def end_ns(self, prefix) -> None:
        prefix = prefix or ""
        for i in range(len(self._bindings) - 1, -1, -1):
            if self._bindings[i][0] == prefix:
                del self._bindings[i]
                return

    def comment(self, text) -> None:
        if self._builder is not None:  # kept inside unknown elements only
            self._flush_text()
            self._builder.comment(text)

    def pi(self, target, data=None) -> None:
        if self._builder is not None:
            self._flush_text()
            self._builder.pi(target, data)

    def doctype(self, name, pubid, system) -> None:
        """Called before libxml2 reads the DOCTYPE's internal subset: refuse it there."""
        refusal = _doctype_refusal(self._source, name, pubid, system)
        if refusal is not None:
            raise refusal

    def close(self) -> None:
        return None

    # -- names and attributes -------------------------------------------------------------
    def _qname(self, name: str, attribute: bool = False) -> str:
        """lxml's ``{uri}local`` as written: ``prefix:local`` (or ``local`` for the default
        namespace of an element)."""
        uri, _, local = name[1:].partition("}")
        if uri == _XML_NS:
            return f"xml:{local}"
        for prefix, bound in reversed(self._bindings):
            if bound == uri and (prefix or not attribute):
                return f"{prefix}:{local}" if prefix else local
        return name

    def _attributes(self, attrib, unescape: bool = True) -> dict[str, str]:
        """An element's attributes as written: names with their prefixes, namespace
        declarations included, values unescaped (see :func:`_amp_escaped`)."""
        a = dict(attrib)
        if self._pending_ns:
            declared = {(f"xmlns:{p}" if p else "xmlns"): uri for p, uri in self._pending_ns}
            self._pending_ns.clear()
            a = {**declared, **a}
        if any(k[0] == "{" for k in a):
            a = {(self._qname(k, attribute=True) if k[0] == "{" else k): v for k, v in a.items()}
        if unescape and _AMP_ESCAPED:
            for k, v in a.items():
                if "&" in v:
                    a[k] = _unescape(v)
        return a

    def _flush_text(self) -> None:
        """Character data so far into the captured element."""
        text = self._text
        if text:
            self._builder.data("".join(text))
            text.clear()

    # -- capture of unknown elements ------------------------------------------------------
    def _capture(self, tag, a: dict[str, str], ctx: str, on_captured: Callable[[Any], None]) -> str:
        """Start keeping an unknown element (and its subtree, with text, comments and
        processing instructions); returns the capture context."""
        builder = self._builder = ElementTree.TreeBuilder(insert_comments=True, insert_pis=True)
        builder.start(tag, a)
        self._depth = 1
        self._on_captured = on_captured
        self._stack.append(ctx)
        return _CAPTURE

    def _keep_verbatim(self, into: list[bytes]) -> Callable[[Any], None]:
        return lambda el: into.append(_serialize(el))

    def _keep_attrs(self, element: str, key, attrs: dict[str, str]) -> None:
        if attrs:
            self.extra_attrs.setdefault(element, {})[key] = attrs

    # -- generic start/end ----------------------------------------------------------------
    def _start(self, tag, attrib, ctx: str) -> str:
        """Any element but the hot node/edge ones; returns the new context."""
        if ctx is _NSDECL:
            ctx = self._ctx_before_ns
        if tag[0] == "{":
            tag = self._qname(tag)
        if ctx is _NODES and tag == "node":  # in a namespace, or declaring one
            rows = self._node_other(self._attributes(attrib, unescape=False))[2]  # unescaped in bulk
            if len(rows) >= _READ_BATCH:
                self._flush_nodes()
            return ctx
        if ctx is _EDGES and tag == "edge":
            self._edge_other(attrib)
            if len(self._edge_rows) >= _READ_BATCH:
                self._flush_edges()
            return ctx
        if ctx is _CAPTURE:
            self._flush_text()
            self._builder.start(tag, self._attributes(attrib))
            self._depth += 1
            self._stack.append(ctx)
            return ctx
        self._text.clear()
        skel = self.skeleton
        a = self._attributes(attrib)
        new_ctx = None
        if ctx is _DOC:
            if tag != "things":
                raise _Where(f"not an NML file: root element is <{tag}>, expected <things>", tag)
            self._keep_attrs("things", (), a)
            new_ctx = _ROOT
        elif ctx is _ROOT:
            if tag == "thing":
                self._start_thing(a)
                new_ctx = _THING
            elif tag == "parameters":
                self._keep_attrs(tag, (), a)
                new_ctx = _PARAMS
            elif tag == "comments":
                self._keep_attrs(tag, (), a)
                new_ctx = _COMMENTS
            elif tag == "branchpoints":
                self._keep_attrs(tag, (), a)
                new_ctx = _BRANCHPOINTS
            elif tag == "groups":
                self.strong_wk.add("groups")
                self._keep_attrs(tag, (), a)
                new_ctx = _GROUPS
            elif tag == "meta":
                self.strong_wk.add("meta")
                name = a.pop("name", "")
                skel.meta.append((name, a.pop("content", "")))
                self._keep_attrs(tag, name, a)
                new_ctx = _LEAF_R
        elif ctx is _PARAMS:
            return self._capture(tag, a, ctx, self._parameter)
        elif ctx is _THING:
            if tag == "nodes":
                new_ctx = _NODES
            elif tag == "edges":
                new_ctx = _EDGES
            elif tag == "metadata":
                self.strong_wk.add("metadata")
                new_ctx = _METADATA
            else:
                return self._capture(tag, a, ctx, self._keep_verbatim(self._tree.unknown))
            self._keep_attrs(tag, self._tree.id, a)
        elif ctx is _METADATA and tag == "metadataEntry":
            entry = _metadata_entry(a)
            self._tree.metadata.append(entry)
            self._keep_attrs(tag, (self._tree.id, entry.key), a)
            new_ctx = _LEAF_T
        elif ctx is _NODES or ctx is _EDGES or ctx is _METADATA or ctx is _LEAF_T:
            return self._capture(tag, a, ctx, self._keep_verbatim(self._tree.unknown))
        elif ctx is _COMMENTS and tag == "comment":
            if "node" not in a:
                raise _Where("<comment> without node attribute", "comment", "content", _equals(a.get("content")))
            self._comments.append((a.pop("node"), a.pop("content", ""), a))
            new_ctx = _LEAF_R
        elif ctx is _BRANCHPOINTS and tag == "branchpoint":
            if "id" not in a:
                raise _Where("<branchpoint> without id attribute", "branchpoint")
            if "time" in a:
                self.strong_wk.add("branchpoint@time")
            self._branchpoints.append((a.pop("id"), a.pop("time", None), a))
            new_ctx = _LEAF_R
        elif ctx is _GROUPS and tag == "group":
            group = _group(a)
            (self._group_stack[-1].children if self._group_stack else skel.groups).append(group)
            self._group_stack.append(group)
            new_ctx = _GROUPS
        if new_ctx is None:  # unknown here: keep verbatim
            return self._capture(tag, a, ctx, self._keep_verbatim(skel.unknown_root))
        self._stack.append(ctx)
        return new_ctx

    def _end(self, tag, ctx: str) -> str:
        """End of any element but the hot ones; returns the context it returns to."""
        if tag[0] == "{":
            tag = self._qname(tag)
        if (ctx is _NODES and tag == "node") or (ctx is _EDGES and tag == "edge"):
            return ctx
        if ctx is _CAPTURE:
            self._flush_text()
            self._builder.end(tag)
            self._depth -= 1
            if self._depth == 0:
                element = self._builder.close()
                self._builder = None
                self._on_captured(element)
            return self._stack.pop()
        self._text.clear()
        if ctx is _NODES:
            self._mark_tree()
        elif ctx is _THING:
            self._tree = None
        elif ctx is _GROUPS and tag == "group":
            self._group_stack.pop()
        outer = self._stack.pop()
        return _AFTER if outer is _DOC else outer

    # -- trees, nodes, edges ----------------------------------------------------------------
    def _start_thing(self, a: dict[str, str]) -> None:
        if "id" not in a:
            raise _Where("<thing> without id attribute", "thing", path=("things",))
        try:
            tid = _to_int(a["id"])
        except ValueError as e:
            raise _Where(f"<thing> attribute id: {e}", "thing", "id", _equals(a["id"])) from None
        if tid in self.skeleton.trees:
            raise _Where(f"duplicate tree id {tid}", "thing", "id", _int_equals(tid), nth=1)
        tree = Tree(id=tid)
        self.skeleton.trees[tid] = tree
        self._tree = tree
        for name in a:
            if name in ("name", "isVisible", "groupId", "type"):
                self.weak_wk.add(f"thing@{name}")
            elif name in ("visible", "comment"):
                self.weak_k.add(f"thing@{name}")
        self._tree_attrs.append((tree, a))

    def _node_other(self, attrib) -> tuple:
        """A node with another attribute count than the previous one: switch bucket, keep the
        node; returns the bucket's (width, append, rows) for the hot path."""
        width = len(attrib)
        if not width:
            raise _Where("<node> without id attribute", "node", "id", lambda v: v is None, path=_NODE_PATH)
        bucket = self._buckets.get(width)
        if bucket is None:
            bucket = self._buckets[width] = _Bucket(width)
        bucket.append(attrib)
        return width, bucket.append, bucket.rows

    def _mark_tree(self) -> None:
        if self._tree is None:  # after </thing>: everything is marked already
            return
        tid = self._tree.id
        for bucket in self._buckets.values():
            count = len(bucket.rows)
            if count > bucket.marked:
                bucket.marks.append((count, tid))
                bucket.marked = count

    def _flush_nodes(self) -> None:
        """Convert the gathered node attributes to columns."""
        self._mark_tree()
        for bucket in self._buckets.values():
            if not bucket.rows:
                continue
            counts = np.diff([0] + [m[0] for m in bucket.marks])
            tree = np.repeat(np.array([m[1] for m in bucket.marks], np.int64), counts)
            groups = _columns_by_names(bucket.rows)
            bucket.reset()
            for raw, rows in groups:
                self._convert_nodes(raw, tree if rows is None else tree[rows])
        self._text.clear()

    def _convert_nodes(self, raw: dict[str, list[str]], tree: np.ndarray) -> None:
        """Columns of attribute strings (one group of nodes with the same names) -> arrays."""
        n = len(tree)
        names = tuple(raw)
        if "id" not in names:
            raise _Where("<node> without id attribute", "node", "id", lambda v: v is None, path=_NODE_PATH)
        for c in "xyz":
            if c not in names:
                raise _Where(f"<node> without {c} attribute", "node", c, lambda v: v is None, path=_NODE_PATH)
        if _WK_NODE_ATTRS.intersection(names):
            self._node_wk_attrs = True
        ids, bad = _int_column(raw["id"], "i8")
        if bad is not None:
            value = _unescape(raw["id"][bad])
            message = f"<node> attribute id: not an integer: {value!r}"
            raise _Where(message, "node", "id", _equals(value), path=_NODE_PATH)
        out = {"id": ids, "tree": tree}
        for name, values in raw.items():
            column = _NODE_ATTRS.get(name)
            if column is None:
                if name[0] == "{":
                    name = self._qname(name, attribute=True)
                self._extras.setdefault(name, {}).update(zip(ids.tolist(), _unescaped(values)))
                continue
            if column == "id":
                continue
            dtype = NODE_COLUMNS[column][0]
            if column == "interpolation":
                arr, bad = _bool_column(values)
                kind = "a boolean"
            elif dtype.startswith("f"):
                arr, bad = _float_column(values)
                kind = "a number"
            else:
                arr, bad = _int_column(values, dtype)
                lo_hi = _INT_RANGES.get(dtype)
                kind = f"an integer in [{lo_hi[0]}, {lo_hi[1]}]" if lo_hi else "an integer"
            if bad is not None:
                value = _unescape(values[bad])
                message = f"<node> attribute {name}: not {kind}: {value!r}"
                raise _Where(message, "node", name, _equals(value), path=_NODE_PATH)
            out[column] = arr
        for column, (dtype, default) in NODE_COLUMNS.items():
            arr = out.get(column)
            self._columns[column].append(np.full(n, default, dtype) if arr is None else arr.astype(dtype, copy=False))

    def _edge_other(self, attrib) -> None:
        """An edge with other than two attributes: source and target go to the batch, the
        rest is kept."""
        a = self._attributes(attrib)
        source, target = _edge_ends(a)
        if a:
            self._edge_attrs.append((source, target, a))
        self._edge_rows.append({"source": source, "target": target})

    def _flush_edges(self) -> None:
        rows = self._edge_rows
        if not rows:
            return
        try:
            ends = {"source": list(map(_SOURCE, rows)), "target": list(map(_TARGET, rows))}
        except KeyError:  # two attributes, but not source and target
            for row in rows:
                _edge_ends(dict(row))
            raise
        arrays = []
        for attr, values in ends.items():
            arr, bad = _int_column(values, "i8")
            if bad is not None:
                value = _unescape(values[bad])
                message = f"<edge> attribute {attr}: not an integer: {value!r}"
                raise _Where(message, "edge", attr, _equals(value), path=_EDGE_PATH)
            arrays.append(arr)
        self._edge_arrays.append(np.stack(arrays, axis=1))
        rows.clear()
        self._text.clear()


    # -- parameters -------------------------------------------------------------------------
    def _parameter(self, el) -> None:
        tag, a = el.tag, dict(el.attrib)
        params = self.skeleton.parameters
        simple = len(el) == 0 and not (el.text or "").strip()
        repeatable = tag == "userBoundingBox"
        if not simple or not isinstance(tag, str) or (tag in self._params_seen and not repeatable):
            params.unknown.append(_serialize(el))
            if tag == "additionalAxes":
                self.strong_wk.add(tag)
            return
        self._params_seen.add(tag)
        if tag in _K_PARAMS:
            self.k_params.add(tag)
        if tag in _WK_STRONG_PARAMS:
            self.strong_wk.add(tag)
        if tag not in _MODELLED_PARAMS:
            params.knossos[tag] = a
            return

        def num(attr, conv=_to_float, default=None):
            v = a.pop(attr, None)
            if v is None:
                if default is not None:
                    return default
                raise _Where(f"<{tag}> without {attr} attribute", tag)
            try:
                return conv(v)
            except ValueError as e:
                raise _Where(f"<{tag}> attribute {attr}: {e}", tag, attr, _equals(v)) from None

        if tag == "experiment":
            params.experiment = a.pop("name", "")
            if {"organization", "datasetId", "wkUrl"} & set(a):
                self.strong_wk.add("experiment@organization")
            params.experiment_attrs = a
            return
        if tag == "scale":
            scale = (num("x"), num("y"), num("z"))
            params.scale = None if scale == (-1.0, -1.0, -1.0) else scale
            if "unit" in a:
                params.scale_unit = a.pop("unit")
                self.strong_wk.add("scale@unit")
        elif tag == "offset":
            params.offset = (num("x", default=0.0), num("y", default=0.0), num("z", default=0.0))
        elif tag == "time":
            params.time_ms = num("ms", _to_int)
            if "checksum" in a:
                self.strong_k.add("time@checksum")
                if a["checksum"].lower() == time_checksum(params.time_ms):
                    del a["checksum"]  # valid: regenerated on writing
        elif tag == "editPosition":
            self._edit_position = (num("x"), num("y"), num("z"))
        elif tag == "editRotation":
            params.edit_rotation = (num("xRot"), num("yRot"), num("zRot"))
        elif tag == "zoomLevel":
            params.zoom_level = num("zoom")
        elif tag == "activeNode":
            params.active_node = num("id", _to_int)
        elif tag == "MovementArea":
            lo = tuple(num(f"min.{c}", _to_int) for c in "xyz")
            if all(f"size.{c}" in a for c in "xyz"):
                size = tuple(num(f"size.{c}", _to_int) for c in "xyz")
                for c in "xyz":  # max = min + size, regenerated on writing
                    a.pop(f"max.{c}", None)
            else:  # old files: inclusive max, read unchanged
                hi = tuple(num(f"max.{c}", _to_int) for c in "xyz")
                size = tuple(h - l for h, l in zip(hi, lo))
            params.movement_area = BoundingBox(lo, size)
        elif tag in ("userBoundingBox", "taskBoundingBox"):
            box = self._bounding_box(tag, a, num)
            if tag == "userBoundingBox":
                params.user_bounding_boxes.append(box)
            else:
                params.task_bounding_box = box
            return
        elif tag == "nodes_0_based":
            self.index_origin = 0
        elif tag == "node_position_numbering" and self.index_origin is None:  # nodes_0_based wins
            self.index_origin = num("index_origin", _to_int, default=1)
        if a:
            params.extra[tag] = a

    def _bounding_box(self, tag, a, num) -> BoundingBox:
        top_left = tuple(num(f"topLeft{c}", _to_int, default=0) for c in "XYZ")
        size = tuple(num(k, _to_int, default=0) for k in ("width", "height", "depth"))
        box = BoundingBox(top_left, size)
        if "id" in a:
            box.id = num("id", _to_int)
        box.name = a.pop("name", "")
        if "isVisible" in a:
            v = a.pop("isVisible")
            try:
                box.visible = _to_bool(v)
            except ValueError as e:
                raise _Where(f"<{tag}> attribute isVisible: {e}", tag, "isVisible", _equals(v)) from None
        box.color = _color(a, "color.", tag)
        box.extra = a
        return box


def _edge_ends(a: dict[str, str]) -> tuple[str, str]:
    """Take source and target out of an edge's attributes."""
    for attr in ("source", "target"):
        if attr not in a:
            raise _Where(f"<edge> without {attr} attribute", "edge", attr, lambda v: v is None, path=_EDGE_PATH)
    return a.pop("source"), a.pop("target")


def _color(a: dict[str, str], prefix: str, tag: str) -> tuple[float, float, float, float] | None:
    """Pop ``<prefix>r/g/b/a`` from ``a``; None when absent or empty (left in ``a`` if partial)."""
    keys = [prefix + c for c in "rgba"]
    if not all(k in a for k in keys):
        return None
    values = [a.pop(k) for k in keys]
    if any(v.strip() == "" for v in values):
        return None
    try:
        return tuple(float(v) for v in values)  # type: ignore[return-value]
    except ValueError:
        bad = next(k for k, v in zip(keys, values) if not _is_float(v))
        v = values[keys.index(bad)]
        raise _Where(f"<{tag}> attribute {bad}: not a number: {v!r}", tag, bad, _equals(v)) from None


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _metadata_entry(a: dict[str, str]) -> MetadataEntry:
    """The entry of a ``<metadataEntry>``; the attributes it uses are taken out of ``a``."""
    key = a.pop("key", None)
    if key is None:
        raise _Where("<metadataEntry> without key attribute", "metadataEntry")
    if "stringValue" in a:
        return MetadataEntry(key, a.pop("stringValue"))
    if "numberValue" in a:
        v = a.pop("numberValue")
        try:
            return MetadataEntry(key, int(v))
        except ValueError:
            try:
                return MetadataEntry(key, float(v))
            except ValueError:
                raise _Where(
                    f"<metadataEntry> attribute numberValue: not a number: {v!r}", "metadataEntry", "key", _equals(key)
                ) from None
    if "boolValue" in a:
        v = a.pop("boolValue")
        try:
            return MetadataEntry(key, _to_bool(v))
        except ValueError as e:
            raise _Where(f"<metadataEntry> attribute boolValue: {e}", "metadataEntry", "key", _equals(key)) from None
    values = []
    while f"stringListValue-{len(values)}" in a:
        values.append(a.pop(f"stringListValue-{len(values)}"))
    return MetadataEntry(key, values)


def _group(a: dict[str, str]) -> Group:
    if "id" not in a:
        raise _Where("<group> without id attribute", "group")
    v = a.pop("id")
    try:
        gid = _to_int(v)
    except ValueError as e:
        raise _Where(f"<group> attribute id: {e}", "group", "id", _equals(v)) from None
    group = Group(id=gid, name=a.pop("name", ""))
    if "isExpanded" in a:
        v = a.pop("isExpanded")
        try:
            group.expanded = _to_bool(v)
        except ValueError as e:
            raise _Where(f"<group> attribute isExpanded: {e}", "group", "isExpanded", _equals(v)) from None
    group.extra = a
    return group


def _decide_dialect(t: _NmlReader) -> str:
    """Spec webknossos-formats §3.1 markers, strongest first: a KNOSSOS time checksum (the
    server never writes one); webKnossos-only elements/attributes (meta, groups, organization,
    scale unit, node rotation …; KNOSSOS drops them on saving); KNOSSOS-only parameters;
    webKnossos tree attributes (KNOSSOS keeps them as properties); KNOSSOS tree attributes.
    No marker at all: webKnossos (0-based)."""
    if t.strong_k:
        return "knossos"
    if t.strong_wk or t._node_wk_attrs:
        return "webknossos"
    if t.k_params:
        return "knossos"
    if t.weak_wk:
        return "webknossos"
    return "knossos" if t.weak_k else "webknossos"


def _apply_tree_attrs(tree: Tree, a: dict[str, str], dialect: str) -> None:
    a = dict(a)
    a.pop("id")
    tag = "thing"
    color = _color(a, "color.", tag)
    if color is None:
        color = _color(a, "color", tag)  # legacy colorr/colorg/…
    if color is not None and -1.0 in color:
        color = None  # KNOSSOS: -1 means the default colour
    tree.color = color
    own_vis, other_vis = ("visible", "isVisible") if dialect == "knossos" else ("isVisible", "visible")
    own_name, other_name = ("comment", "name") if dialect == "knossos" else ("name", "comment")
    for key in (own_vis, other_vis):
        if key in a:
            v = a.pop(key)
            try:
                tree.visible = _to_bool(v)
            except ValueError as e:
                raise _Where(f"<thing> attribute {key}: {e}", tag, key, _equals(v)) from None
            break
    else:
        if dialect == "webknossos" and color is not None and color[3] == 0:
            tree.visible = False  # server: no isVisible, hidden trees have alpha 0
    for key in (own_name, other_name):
        if key in a:
            tree.name = a.pop(key)
            break
    if "groupId" in a:
        v = a.pop("groupId")
        if v.strip():
            try:
                gid = _to_int(v)
            except ValueError as e:
                raise _Where(f"<thing> attribute groupId: {e}", tag, "groupId", _equals(v)) from None
            tree.group_id = gid if gid >= 0 else None
    if "type" in a:
        tree.type = a.pop("type")
    tree.properties = a


def _finish(t: _NmlReader, dataset_scale) -> Skeleton:
    skel = t.skeleton
    t._flush_nodes()
    t._flush_edges()
    dialect = _decide_dialect(t)
    skel.dialect = dialect
    base = t.index_origin if t.index_origin is not None else (1 if dialect == "knossos" else 0)
    params = skel.parameters

    columns = {c: (np.concatenate(v) if v else np.empty(0, NODE_COLUMNS[c][0])) for c, v in t._columns.items()}
    ids = columns["id"]
    if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # not strictly increasing: look for duplicates
        sorted_ids = np.sort(ids)
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if len(dup):
            nid = int(sorted_ids[dup[0]])
            raise _Where(f"duplicate node id {nid}", "node", "id", _int_equals(nid), nth=1, path=_NODE_PATH)
    for c in "xyz":
        if base:
            columns[c] -= base
    edit = t._edit_position
    if edit is not None:
        edit = tuple(v - base for v in edit)

    # KNOSSOS rescaling to the target dataset (spec knossos-annotations §3.2)
    if dataset_scale is not None and params.scale is not None and all(s > 0 for s in params.scale):
        ratio = [float(f) / float(d) for f, d in zip(params.scale, dataset_scale)]
        if any(r != 1.0 for r in ratio):
            for c, r in zip("xyz", ratio):
                columns[c] = np.floor(r * (columns[c] + base) + 0.5) - base
            columns["radius"] = (columns["radius"] * ratio[0]).astype(np.float32)
            if edit is not None:
                edit = tuple(r * (v + base) - base for v, r in zip(edit, ratio))
            params.scale = tuple(float(d) for d in dataset_scale)
    params.edit_position = edit
    skel.set_nodes(columns)
    ids = skel.nodes["id"]

    # edges must join known nodes
    edges = np.concatenate(t._edge_arrays) if t._edge_arrays else np.empty((0, 2), np.int64)
    if len(edges):
        flat = edges.reshape(-1)
        n = len(ids)
        if n and ids[-1] - ids[0] == n - 1:  # contiguous ids: a range check will do
            known = (flat >= ids[0]) & (flat <= ids[-1])
        elif n:
            pos = np.minimum(np.searchsorted(ids, flat), n - 1)
            known = ids[pos] == flat
        else:
            known = np.zeros(len(flat), bool)
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            attr = ("source", "target")[i % 2]
            nid = int(flat[i])
            message = f"<edge> {attr} {nid} is not a node of this file"
            raise _Where(message, "edge", attr, _int_equals(nid), path=_EDGE_PATH)
    skel.edges = edges
    for source, target, attrs in t._edge_attrs:
        t._keep_attrs("edge", (_to_int(source), _to_int(target)), attrs)

    for tree, attrs in t._tree_attrs:
        _apply_tree_attrs(tree, attrs, dialect)

    known_node = skel.has_node
    dropped = []
    for text_id, content, attrs in t._comments:
        try:
            nid = _to_int(text_id)
        except ValueError as e:
            raise _Where(f"<comment> attribute node: {e}", "comment", "node", _equals(text_id)) from None
        if not content:
            continue  # KNOSSOS: empty comments are ignored
        if not known_node(nid):
            dropped.append(f"comment on node {nid}")
            continue
        skel.comments[nid] = content
        t.extra_attrs.get("comment", {}).pop(nid, None)  # the attributes of the comment that counts
        t._keep_attrs("comment", nid, attrs)
    for text_id, text_time, attrs in t._branchpoints:
        try:
            nid = _to_int(text_id)
            when = None if text_time is None else _to_int(text_time)
        except ValueError as e:
            raise _Where(f"<branchpoint>: {e}", "branchpoint", "id", _equals(text_id)) from None
        if not known_node(nid):
            dropped.append(f"branch point on node {nid}")
            continue
        skel.branchpoints.append((nid, when))
        t._keep_attrs("branchpoint", nid, attrs)
    if dropped:
        warnings.warn(
            f"{len(dropped)} comment(s)/branch point(s) refer to nodes that do not exist and were ignored "
            f"(first: {dropped[0]})",
            stacklevel=3,
        )

    # KNOSSOS writes comments twice (node attribute + <comments>): the attribute only survives
    # as a property where it says something <comments> does not
    extras = t._extras
    attr_comments = extras.pop("comment", None)
    if attr_comments:
        kept = {nid: text for nid, text in attr_comments.items() if skel.comments.get(nid) != text and text}
        if kept:
            extras["comment"] = kept
    skel.node_properties = extras
    skel.extra_attrs = {element: by_key for element, by_key in t.extra_attrs.items() if by_key}
    return skel


def read_nml(source, *, dataset_scale=None, name: str | None = None) -> Skeleton:
    """Read an NML file (either dialect) into a :class:`Skeleton`.

    ``source``: path, bytes, or a binary file object. ``dataset_scale`` (x, y, z nm of the
    target dataset): when the file's ``<scale>`` differs, nodes are rescaled as KNOSSOS does.
    ``name`` names the source in error messages (bytes have no name of their own).
    Raises ValueError naming the file and line for malformed XML and invalid content.

    Attributes we do not model on elements whose model has no place for them are kept in
    ``skeleton.extra_attrs[element][key] = {name: value}`` and written back by
    :func:`write_nml`; ``key`` is what identifies the element in the model: ``(source,
    target)`` for ``edge``, the node id for ``comment`` and ``branchpoint``, the name for
    ``meta``, ``(tree id, key)`` for ``metadataEntry``, the tree id for ``nodes``/``edges``/
    ``metadata``, and ``()`` for ``things``/``parameters``/``comments``/``branchpoints``/``groups``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
        feed = io.BytesIO(data)
        locate_source = data
    elif isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        feed = open(source, "rb")  # noqa: SIM115 (closed below, after parsing)
        locate_source = source
    elif hasattr(source, "read"):
        label = name or str(getattr(source, "name", "<stream>"))
        if getattr(source, "seekable", lambda: False)():
            feed = source
            locate_source = (source, source.tell())
        else:
            data = source.read()
            feed, locate_source = io.BytesIO(data), data
    else:
        raise TypeError(f"read_nml: expected a path, bytes or a binary file, got {type(source).__name__}")

    reader = _NmlReader(locate_source)
    try:
        try:
            _feed(_new_parser(reader), feed)
            return _finish(reader, dataset_scale)
        finally:
            if feed is not source:
                feed.close()
    except etree.XMLSyntaxError as e:
        raise ValueError(f"{label}, line {e.lineno or 1}: malformed XML: {_syntax_message(e)}") from None
    except _MalformedXML as e:
        where = f"line {e.line}" if e.line is not None else "line unknown"
        raise ValueError(f"{label}, {where}: malformed XML: {e.message}") from None
    except _Where as w:
        line = _locate(locate_source, w)
        where = f"line {line}" if line is not None else "line unknown"
        raise ValueError(f"{label}, {where}: {w.message}") from None


def _serialize(element) -> bytes:
    """A kept element as UTF-8 XML text (no declaration, no tail)."""
    element.tail = None
    return ElementTree.tostring(element, encoding="unicode").encode("utf-8")


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------
_ESCAPE_RE = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
_NAME_RE = re.compile(r"^[^\W\d][\w.\-:]*$")


def _esc(value) -> str:
    """Text safe inside a double-quoted XML attribute. Characters XML 1.0 cannot carry at all
    (C0 controls other than tab/newline/CR, lone surrogates) become U+FFFD."""
    s = value if isinstance(value, str) else str(value)
    if _ESCAPE_RE.search(s) is None:
        return s
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(), "\ufffd"), s)


def _check_name(name: str, *, read: bool = False) -> str:
    """``name`` if it can be written as an attribute name. ``xml…:`` names (namespace
    declarations and the like) pass only when ``read`` from a file, where they were already."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or (not read and name.lower().startswith("xml") and ":" in name):
        raise ValueError(f"{name!r} is not a valid XML attribute name")
    return name


def _num(v) -> str:
    """Shortest text for a number: integers without a fraction."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    if math.isfinite(f) and f.is_integer() and abs(f) < 2**63:
        return str(int(f))
    return repr(f)


def _attrs(pairs: Iterable[tuple[str, Any]]) -> str:
    return "".join(f' {k}="{_esc(v)}"' for k, v in pairs if v is not None)


def _tag(name: str, pairs: Iterable[tuple[str, Any]], indent: str) -> str:
    return f"{indent}<{name}{_attrs(pairs)}/>\n"


def _float_texts(values: np.ndarray, float32: bool = False) -> list:
    """Per value: an int when integral, else the shortest float text (float32-shortest for f4)."""
    finite = np.isfinite(values)
    integral = finite & (np.floor(values) == values) & (np.abs(values) < 2**53)
    if integral.all():
        return values.astype(np.int64).tolist()
    out = np.where(integral, values, 0).astype(np.int64).tolist()
    rest = np.flatnonzero(~integral)
    if float32:  # numpy's shortest text for float32 ("0.1", not "0.10000000149011612")
        texts = values[rest].astype(str).tolist()
    else:
        texts = [repr(v) for v in values[rest].astype(np.float64).tolist()]
    for i, text in zip(rest.tolist(), texts):
        out[i] = text
    return out


class _Writer:
    def __init__(self, skel: Skeleton, dialect: str, zero_based: bool):
        self.s = skel
        self.k = dialect == "knossos"
        self.base = 1 if (self.k and not zero_based) else 0
        self.zero_based = self.k and zero_based
        # skeleton.extra_attrs (see read_nml) as attribute text, names checked before writing
        self._extra = {
            element: {key: _attrs((_check_name(k, read=True), v) for k, v in attrs.items()) for key, attrs in by_key.items()}
            for element, by_key in (getattr(skel, "extra_attrs", None) or {}).items()
        }

    def _x(self, element: str, key=()) -> str:
        """Kept attributes of ``element`` ``key`` as text (leading space), or ""."""
        by_key = self._extra.get(element)
        return by_key.get(key, "") if by_key else ""

    def _list(self, tag: str, lines: list[str], indent: str = "  ", key=()) -> str:
        """A list element (comments, edges …) around ``lines``; empty: self-closing."""
        head = f"{indent}<{tag}{self._x(tag, key)}"
        return f"{head}>\n{''.join(lines)}{indent}</{tag}>\n" if lines else f"{head}/>\n"

    # -- parameters -------------------------------------------------------------------------
    def _box(self, tag: str, box: BoundingBox, with_id: bool) -> str:
        pairs: list[tuple[str, Any]] = []
        if with_id:
            pairs.append(("id", box.id))
        pairs += [("name", box.name), ("isVisible", "true" if box.visible else "false")]
        if box.color is not None:
            pairs += [(f"color.{c}", _num(v)) for c, v in zip("rgba", box.color)]
        pairs += [(f"topLeft{c}", _num(v)) for c, v in zip("XYZ", box.top_left)]
        pairs += [(k, _num(v)) for k, v in zip(("width", "height", "depth"), box.size)]
        pairs += [(_check_name(k), v) for k, v in box.extra.items()]
        return _tag(tag, pairs, "    ")

    def parameters(self) -> str:
        p = self.s.parameters
        extra = p.extra
        ind = "    "
        out: list[str] = []

        def elem(tag, pairs):
            pairs = list(pairs) + [(_check_name(k), v) for k, v in extra.get(tag, {}).items()]
            out.append(_tag(tag, pairs, ind))

        def knossos(tag):
            if tag in p.knossos:
                out.append(_tag(tag, [(_check_name(k), v) for k, v in p.knossos[tag].items()], ind))

        elem("experiment", [("name", p.experiment), *((_check_name(k), v) for k, v in p.experiment_attrs.items())])
        if self.k:
            knossos("lastsavedin")
            knossos("createdin")
            if self.zero_based:
                elem("nodes_0_based", [])
            knossos("guiMode")
            knossos("dataset")
        if p.movement_area is not None:
            lo, size = p.movement_area.top_left, p.movement_area.size
            pairs = [(f"min.{c}", _num(v)) for c, v in zip("xyz", lo)]
            pairs += [(f"size.{c}", _num(v)) for c, v in zip("xyz", size)]
            pairs += [(f"max.{c}", _num(a + b)) for c, a, b in zip("xyz", lo, size)]
            elem("MovementArea", pairs)
        scale = p.scale
        if scale is not None or not self.k:
            scale = scale if scale is not None else (-1, -1, -1)
            elem("scale", [*((c, _num(v)) for c, v in zip("xyz", scale)), ("unit", p.scale_unit)])
        if p.offset is not None:
            elem("offset", [(c, _num(v)) for c, v in zip("xyz", p.offset)])
        if self.k:
            knossos("RadiusLocking")
            knossos("brush_lock")
            ms = p.time_ms if p.time_ms is not None else 0
            checksum = extra.get("time", {}).get("checksum") or time_checksum(ms)
            time_extra = {k: v for k, v in extra.get("time", {}).items() if k != "checksum"}
            out.append(_tag("time", [("ms", ms), ("checksum", checksum), *time_extra.items()], ind))
        elif p.time_ms is not None:
            elem("time", [("ms", p.time_ms)])
        if p.active_node is not None and self.k:
            elem("activeNode", [("id", p.active_node)])
        if self.k:
            knossos("segmentation")
        if p.edit_position is not None:
            elem("editPosition", [(c, _num(v + self.base)) for c, v in zip("xyz", p.edit_position)])
        if self.k:
            knossos("skeletonVPState")
            knossos("vpSettingsZoom")
        if p.edit_rotation is not None:
            elem("editRotation", [(k, _num(v)) for k, v in zip(("xRot", "yRot", "zRot"), p.edit_rotation)])
        if p.zoom_level is not None:
            elem("zoomLevel", [("zoom", _num(p.zoom_level))])
        if p.active_node is not None and not self.k:
            elem("activeNode", [("id", p.active_node)])
        for box in p.user_bounding_boxes:
            out.append(self._box("userBoundingBox", box, True))
        if p.task_bounding_box is not None:
            out.append(self._box("taskBoundingBox", p.task_bounding_box, False))
        written = {"lastsavedin", "createdin", "guiMode", "dataset", "RadiusLocking", "brush_lock", "segmentation",
                   "skeletonVPState", "vpSettingsZoom"} if self.k else set()  # fmt: skip
        for tag, attrs in p.knossos.items():
            if tag not in written:
                out.append(_tag(_check_name(tag), [(_check_name(k), v) for k, v in attrs.items()], ind))
        out += [f"{ind}{_verbatim(b)}\n" for b in p.unknown]
        return f"  <parameters{self._x('parameters')}>\n" + "".join(out) + "  </parameters>\n"

    # -- trees ------------------------------------------------------------------------------
    def _thing_open(self, tree: Tree) -> str:
        """The opening tag: modelled attributes in the dialect's spelling, then properties."""
        pairs: list[tuple[str, Any]] = [("id", tree.id)]
        if self.k:
            pairs.append(("visible", 1 if tree.visible else 0))
            if tree.color is None:  # KNOSSOS' "default colour"
                pairs += [("color.r", "-1."), ("color.g", "-1."), ("color.b", "-1."), ("color.a", "1.")]
            else:
                pairs += [(f"color.{c}", _num(v)) for c, v in zip("rgba", tree.color)]
            if tree.name:
                pairs.append(("comment", tree.name))
            taken = {"id", "visible", "color.r", "color.g", "color.b", "color.a", "comment"}
        else:
            if tree.color is not None:
                pairs += [(f"color.{c}", _num(v)) for c, v in zip("rgba", tree.color)]
            pairs.append(("name", tree.name))
            taken = {"id", "color.r", "color.g", "color.b", "color.a", "name", "isVisible"}
        if tree.group_id is not None:
            pairs.append(("groupId", tree.group_id))
            taken.add("groupId")
        if tree.type is not None:
            pairs.append(("type", tree.type))
            taken.add("type")
        if not self.k:
            pairs.append(("isVisible", "true" if tree.visible else "false"))
        pairs += [(_check_name(k), v) for k, v in tree.properties.items() if k not in taken]
        return f"  <thing{_attrs(pairs)}>\n"

    def _metadata(self, tree: Tree) -> str:
        if not tree.metadata and self.k and not self._x("metadata", tree.id):
            return ""  # KNOSSOS has no tree metadata
        lines = []
        for entry in tree.metadata:
            v = entry.value
            if isinstance(v, (bool, np.bool_)):
                pairs = [("key", entry.key), ("boolValue", "true" if v else "false")]
            elif isinstance(v, (int, float, np.integer, np.floating)):
                pairs = [("key", entry.key), ("numberValue", _num(v))]
            elif isinstance(v, str):
                pairs = [("key", entry.key), ("stringValue", v)]
            else:
                pairs = [("key", entry.key), *((f"stringListValue-{i}", s) for i, s in enumerate(v))]
            lines.append(f"      <metadataEntry{_attrs(pairs)}{self._x('metadataEntry', (tree.id, entry.key))}/>\n")
        return self._list("metadata", lines, "    ", tree.id)

    def _node_lines(self, start: int, stop: int) -> list[str]:
        """One text line per node of ``_node_order[start:stop]``: a %-template per row over
        per-column values; a column with one value for every node goes into the template."""
        s = self.s
        order = self._node_order[start:stop]
        nodes = {k: v[order] for k, v in s.nodes.items()}
        ids = nodes["id"]
        n = len(ids)
        if not n:
            return []
        template: list[str] = ["      <node"]
        cols: list[list] = []

        def column(attr: str, values: np.ndarray | list, texts: Callable[[Any], list], present=None):
            """``values``: per node; ``texts`` turns (a subset of) them into text/ints."""
            if present is not None and not present.all():
                if present.any():
                    rows = np.flatnonzero(present)
                    frag = [""] * n
                    for row, text in zip(rows.tolist(), texts(values[rows])):
                        frag[row] = f' {attr}="{text}"'
                    template.append("%s")
                    cols.append(frag)
                return
            first = values[:1]
            if n > 1 and isinstance(values, np.ndarray) and (values == first[0]).all():
                template.append(f' {attr}="' + str(texts(first)[0]).replace("%", "%%") + '"')
            else:
                template.append(f' {attr}="%s"')
                cols.append(texts(values))

        def floats(attr, col, f32=True):
            values = nodes[col]
            column(attr, values, lambda v: _float_texts(v, float32=f32), ~np.isnan(values))

        def ints(attr, col):
            values = nodes[col]
            column(attr, values, lambda v: v.tolist(), values != -1)

        def bools(attr, col):
            values = nodes[col]
            column(attr, values, lambda v: np.where(v == 1, "true", "false").tolist(), values != -1)

        column("id", ids, lambda v: v.tolist())
        floats("radius", "radius")
        for c in "xyz":
            column(c, nodes[c] + self.base if self.base else nodes[c], _float_texts)
        wk_columns = [
            lambda: floats("rotX", "rot_x"), lambda: floats("rotY", "rot_y"), lambda: floats("rotZ", "rot_z"),
        ]  # fmt: skip
        if not self.k:
            for add in wk_columns:
                add()
        ints("inVp", "in_vp")
        ints("inMag", "in_mag")
        if not self.k:
            ints("bitDepth", "bit_depth")
            bools("interpolation", "interpolation")
        ints("time", "time")
        if self.k:  # webKnossos columns after KNOSSOS' own (KNOSSOS keeps them as properties)
            for add in wk_columns:
                add()
            ints("bitDepth", "bit_depth")
            bools("interpolation", "interpolation")
        for attr, positions, texts in self._sparse:  # comment attribute, node properties
            lo, hi = np.searchsorted(positions, [start, start + n]).tolist()
            if lo == hi:
                continue
            frag = [""] * n
            for at, text in zip((positions[lo:hi] - start).tolist(), texts[lo:hi]):
                frag[at] = f' {attr}="{text}"'
            template.append("%s")
            cols.append(frag)
        template.append("/>\n")
        line = "".join(template)
        if not cols:
            return [line] * n
        return list(map(line.__mod__, zip(*cols)))

    def _prepare_things(self) -> None:
        """Group nodes and edges by tree (file order of trees); checks every node and edge
        belongs somewhere before anything is written."""
        s = self.s
        tree_ids = np.fromiter(s.trees.keys(), np.int64, len(s.trees))
        sorter = np.argsort(tree_ids, kind="stable")

        def tree_positions(tids: np.ndarray, what: str) -> np.ndarray:
            if not len(tids):
                return np.empty(0, np.intp)
            if not len(tree_ids):
                raise ValueError(f"{what} belongs to tree {int(tids[0])}, which does not exist")
            pos = sorter[np.minimum(np.searchsorted(tree_ids, tids, sorter=sorter), len(tree_ids) - 1)]
            bad = tree_ids[pos] != tids
            if bad.any():
                raise ValueError(f"{what} belongs to tree {int(tids[np.flatnonzero(bad)[0]])}, which does not exist")
            return pos

        node_pos = tree_positions(s.nodes["tree"], "a node")
        self._node_order = order = np.argsort(node_pos, kind="stable")
        # sparse text attributes (KNOSSOS comment attribute, node properties): for each, the
        # positions in the output order of the nodes that have one, and the escaped texts
        sparse: list[tuple[str, dict[int, str]]] = []
        if self.k:
            comments = dict(s.node_properties.get("comment", {}))
            comments.update(s.comments)
            sparse.append(("comment", comments))
        for prop, values in s.node_properties.items():
            if prop not in _NODE_ATTRS and not (self.k and prop == "comment"):
                sparse.append((_check_name(prop), values))
        self._sparse = []
        ids = s.nodes["id"]  # sorted
        output_position = np.empty(len(order), np.int64)
        output_position[order] = np.arange(len(order))
        for attr, values in sparse:
            if not values or not len(ids):
                continue
            keys = np.fromiter(values.keys(), np.int64, len(values))
            rows = np.minimum(np.searchsorted(ids, keys), len(ids) - 1)
            known = ids[rows] == keys  # properties of deleted nodes are not written
            positions = output_position[rows[known]]
            texts = [_esc(t) for t, k in zip(values.values(), known.tolist()) if k]
            by_position = np.argsort(positions, kind="stable")
            self._sparse.append((attr, positions[by_position], [texts[i] for i in by_position.tolist()]))
        self._node_bounds = np.concatenate([[0], np.cumsum(np.bincount(node_pos, minlength=len(tree_ids)))]).tolist()
        edges = s.edges
        if len(edges):
            try:
                rows = s.rows(edges[:, 0])
                s.rows(edges[:, 1])
            except KeyError as e:
                raise ValueError(f"edge refers to a missing node: {e}") from None
            edge_pos = node_pos[rows]
            self._edges_sorted = edges[np.argsort(edge_pos, kind="stable")]
            counts = np.bincount(edge_pos, minlength=len(tree_ids))
            self._edge_bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
        else:
            self._edges_sorted = edges
            self._edge_bounds = [0] * (len(tree_ids) + 1)

    def things(self) -> Iterable[str]:
        """``<thing>`` elements, formatted in batches of trees (bounded memory)."""
        trees = list(self.s.trees.values())
        nb, eb = self._node_bounds, self._edge_bounds
        first = 0
        while first < len(trees):
            last = first + 1  # batch: trees up to ~_WRITE_BATCH nodes (at least one tree)
            while last < len(trees) and nb[last + 1] - nb[first] <= _WRITE_BATCH:
                last += 1
            node_lines = self._node_lines(nb[first], nb[last])
            e = self._edges_sorted[eb[first] : eb[last]]
            line = '      <edge source="%d" target="%d"/>\n'
            sources, targets = e[:, 0].tolist(), e[:, 1].tolist()
            edge_lines = list(map(line.__mod__, zip(sources, targets)))
            if "edge" in self._extra:
                kept = self._extra["edge"]
                for j, key in enumerate(zip(sources, targets)):
                    if key in kept:
                        edge_lines[j] = f'      <edge source="{key[0]}" target="{key[1]}"{kept[key]}/>\n'
            out: list[str] = []
            for i in range(first, last):
                tree = trees[i]
                out.append(self._thing_open(tree))
                a, b = nb[i] - nb[first], nb[i + 1] - nb[first]
                out.append(self._list("nodes", node_lines[a:b], "    ", tree.id))
                a, b = eb[i] - eb[first], eb[i + 1] - eb[first]
                out.append(self._list("edges", edge_lines[a:b], "    ", tree.id))
                out.append(self._metadata(tree))
                out += [f"    {_verbatim(u)}\n" for u in tree.unknown]
                out.append("  </thing>\n")
            yield "".join(out)
            first = last

    # -- root-level lists ---------------------------------------------------------------------
    def comments(self) -> str:
        x = self._x
        lines = [
            f'    <comment node="{nid}" content="{_esc(text)}"{x("comment", nid)}/>\n' for nid, text in self.s.comments.items()
        ]
        return self._list("comments", lines)

    def branchpoints(self) -> str:
        x = self._x
        lines = [f"    <branchpoint{_attrs([('id', nid), ('time', t)])}{x('branchpoint', nid)}/>\n" for nid, t in self.s.branchpoints]
        return self._list("branchpoints", lines)

    def groups(self) -> str:
        def render(g: Group, ind: str) -> str:
            pairs = [("id", g.id), ("name", g.name)]
            if g.expanded is not None:
                pairs.append(("isExpanded", "true" if g.expanded else "false"))
            pairs += [(_check_name(k), v) for k, v in g.extra.items()]
            if not g.children:
                return _tag("group", pairs, ind)
            inner = "".join(render(c, ind + "  ") for c in g.children)
            return f"{ind}<group{_attrs(pairs)}>\n{inner}{ind}</group>\n"

        return self._list("groups", [render(g, "    ") for g in self.s.groups])

    def meta(self) -> str:
        return "".join(f"  <meta{_attrs([('name', k), ('content', v)])}{self._x('meta', k)}/>\n" for k, v in self.s.meta)

    def render(self) -> Iterable[str]:
        """The document as text pieces, produced lazily (the trees in batches), so that only
        the output, not its text, is ever whole in memory. Validates before the first piece."""
        s = self.s
        self._prepare_things()
        head = [f'<?xml version="1.0" encoding="UTF-8"?>\n<things{self._x("things")}>\n']
        if not self.k:
            head.append(self.meta())
        head.append(self.parameters())  # its errors (bad names) also come before any output
        yield "".join(head)
        yield from self.things()
        if self.k:
            groups = self.groups() if s.groups or self._x("groups") else ""
            yield self.comments() + self.branchpoints() + groups + self.meta()
        else:
            yield self.branchpoints() + self.comments() + self.groups()
        yield "".join(f"  {_verbatim(u)}\n" for u in s.unknown_root) + "</things>\n"


def _encoded(parts: Iterable[str], size: int = 1 << 20) -> Iterable[bytes]:
    """UTF-8 of the pieces in blocks of about ``size`` characters."""
    batch: list[str] = []
    n = 0
    for part in parts:
        batch.append(part)
        n += len(part)
        if n >= size:
            yield "".join(batch).encode("utf-8")
            batch, n = [], 0
    if batch:
        yield "".join(batch).encode("utf-8")


def _verbatim(element: bytes) -> str:
    return element.decode("utf-8") if isinstance(element, (bytes, bytearray)) else str(element)


def write_nml(
    skeleton: Skeleton, target=None, *, dialect: str | None = None, zero_based: bool = False
) -> bytes | None:
    """Write ``skeleton`` as NML.

    ``dialect``: "webknossos" or "knossos"; default: the dialect the skeleton was read from,
    else webKnossos. KNOSSOS output is 1-based without ``<nodes_0_based/>`` (KNOSSOS' own
    default) or, with ``zero_based=True``, 0-based with the tag. ``target``: a path (written
    atomically and durably, see :mod:`..formats.atomic`), a binary file object, or None
    to get the bytes back.
    """
    dialect = dialect or skeleton.dialect or "webknossos"
    if dialect not in DIALECTS:
        raise ValueError(f"unknown NML dialect {dialect!r} (expected one of {DIALECTS})")
    parts = _Writer(skeleton, dialect, zero_based).render()
    blocks = _encoded(itertools.chain([next(parts)], parts))  # the first piece validates eagerly
    if target is None:
        return b"".join(list(blocks))
    if hasattr(target, "write"):
        for block in blocks:
            target.write(block)
        return None
    from ..formats.atomic import atomic_write_blocks

    atomic_write_blocks(target, blocks, parents=False)
    return None
