"""NML skeleton files in both dialects (KNOSSOS and webKnossos), read and written losslessly.

Reading streams the XML through an lxml parser *target* (SAX-like callbacks, no element tree,
so memory stays flat): node and edge attribute strings are gathered in flat lists, converted
column-wise with numpy every few thousand nodes, and handed to :meth:`Skeleton.set_nodes`
once. Anything we do not model (unknown elements, unknown attributes) is kept, verbatim or
as properties, and written back where it came from. Errors name the file, the line and the
element/attribute; a parser target gets no line numbers, so the line is found by a second,
error-only pass over the file (lxml iterparse).

Why not iterparse for everything: on a 1M-node file lxml's bare SAX pass costs ~3 s here,
iterparse (which builds and clears an element tree) ~5 s before any attribute is read.

Dialects (spec: knossos-annotations §3, webknossos-formats §3): KNOSSOS node/editPosition
coordinates are 1-based unless ``<nodes_0_based/>``; webKnossos is 0-based. The model is
0-based mag-1 voxels.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import re
import shutil
import struct
import uuid
import warnings
from collections.abc import Callable, Iterable
from operator import itemgetter
from pathlib import Path
from typing import Any

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


def _locate(source, where: _Where) -> int | None:
    """Line of the element ``where`` describes (second pass; only used on errors)."""
    seen = 0
    stream = _reopen(source)
    try:
        for _, el in etree.iterparse(
            stream, events=("end",), resolve_entities="internal", no_network=True, huge_tree=True, load_dtd=False
        ):
            if el.tag == where.tag:
                ok = True
                if where.path is not None:
                    anc, p = [], el.getparent()
                    while p is not None:
                        anc.append(p.tag)
                        p = p.getparent()
                    ok = tuple(reversed(anc)) == tuple(where.path)
                if ok and where.attr is not None and where.match is not None:
                    ok = where.match(el.get(where.attr))
                if ok:
                    if seen == where.nth:
                        return el.sourceline
                    seen += 1
            parent = el.getparent()
            if parent is not None:  # done with it: keep memory flat on big files
                parent.remove(el)
    except etree.XMLSyntaxError as e:
        return e.lineno
    finally:
        if not isinstance(stream, _Unclosable):
            stream.close()
    return None


def _reopen(source):
    """A fresh binary stream over ``source``: bytes, a path, or (stream, start offset)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    if isinstance(source, tuple):
        stream, start = source
        stream.seek(start)
        return _Unclosable(stream)
    return open(source, "rb")


class _Unclosable(io.RawIOBase):
    """Read-through wrapper so iterparse cannot close the caller's stream."""

    def __init__(self, stream):
        self._stream = stream

    def readable(self):
        return True

    def read(self, n=-1):
        return self._stream.read(n)

    def readinto(self, b):
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


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
    if n > 1 and len(set(values[:32])) <= 8:
        distinct = dict.fromkeys(values)
        if len(distinct) <= 64:
            try:
                for k in distinct:
                    distinct[k] = float(k)
            except (ValueError, TypeError):
                pass  # reported below, with its index
            else:
                return np.fromiter(map(distinct.__getitem__, values), np.float64, n), None
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
_FLAT_LIMIT = 1 << 14  # attribute strings gathered before converting (small: freed while cache-hot)
_EDGE_GETTER = itemgetter("source", "target")


class _Signature:
    """Nodes with the same attribute names (in the same order): their values, flat."""

    __slots__ = ("extend", "flat", "getter", "marked", "marks", "names", "width")

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.width = len(names) if names else -1
        if len(names) == 1:
            self.getter = lambda a, _k=names[0]: (a[_k],)
        else:
            self.getter = itemgetter(*names) if names else None
        self.flat: list[str] = []
        self.extend = self.flat.extend
        self.reset()

    def reset(self) -> None:
        self.flat.clear()
        self.marks: list[tuple[int, int]] = []  # (nodes so far, tree id)
        self.marked = 0


class _NmlTarget:
    """lxml parser target building a Skeleton (see module docstring)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self.data = self._text.append  # C-level append; text only matters inside unknown elements
        self._stack: list[str] = []
        # unknown-element capture
        self._builder: etree.TreeBuilder | None = None
        self._depth = 0
        self._on_captured: Callable[[Any], None] | None = None
        # nodes: attribute strings gathered flat per attribute-name signature, converted per chunk
        self._sigs: dict[tuple[str, ...], _Signature] = {}
        self._sig = _Signature(())  # matches nothing: the first node picks its real signature
        self._columns: dict[str, list[np.ndarray]] = {c: [] for c in NODE_COLUMNS}
        self._extras: dict[str, dict[int, str]] = {}  # unmodelled node attributes
        self._node_wk_attrs = False
        # edges: "source", "target" strings, flat
        self._edge_flat: list[str] = []
        self._edge_extend = self._edge_flat.extend
        self._edge_arrays: list[np.ndarray] = []
        # other content
        self.skeleton = Skeleton()
        self._tree: Tree | None = None
        self._tree_attrs: list[tuple[Tree, dict[str, str]]] = []
        self._comments: list[tuple[str, str]] = []
        self._branchpoints: list[tuple[str, str | None]] = []
        self._group_stack: list[Group] = []
        self._params_seen: set[str] = set()
        self._edit_position: tuple[float, float, float] | None = None
        self.index_origin: int | None = None  # from nodes_0_based / node_position_numbering
        # dialect markers, strongest first (see _decide_dialect)
        self.strong_k: set[str] = set()
        self.strong_wk: set[str] = set()
        self.k_params: set[str] = set()
        self.weak_wk: set[str] = set()
        self.weak_k: set[str] = set()

        self._install_handlers()

    # -- lxml target interface ------------------------------------------------------------
    def _install_handlers(self) -> None:
        """``self.start``/``self.end`` as closures: the per-node path touches only local cells
        (measurably faster than attribute lookups on two million elements)."""
        ctx = _DOC
        sig = self._sig
        width, getter, extend, flat = sig.width, sig.getter, sig.extend, sig.flat
        edge_flat, edge_extend, edge_getter, limit = self._edge_flat, self._edge_extend, _EDGE_GETTER, _FLAT_LIMIT
        nodes_ctx, edges_ctx = _NODES, _EDGES
        node_other, flush_nodes, flush_edges = self._node_other, self._flush_nodes, self._flush_edges
        slow_start, slow_end = self._start, self._end

        def start(tag, attrib):
            nonlocal ctx, width, getter, extend, flat
            if ctx is nodes_ctx and tag == "node":  # hot path: attribute values, flat, in signature order
                if len(attrib) == width:
                    try:
                        extend(getter(attrib))
                    except KeyError:
                        width, getter, extend, flat = node_other(attrib)
                else:
                    width, getter, extend, flat = node_other(attrib)
                if len(flat) >= limit:
                    flush_nodes()
            elif ctx is edges_ctx and tag == "edge":  # hot path
                try:
                    edge_extend(edge_getter(attrib))
                except KeyError:
                    self._edge_missing(attrib)
                if len(edge_flat) >= limit:
                    flush_edges()
            else:
                ctx = slow_start(tag, attrib, ctx)

        def end(tag):
            nonlocal ctx
            if (ctx is nodes_ctx and tag == "node") or (ctx is edges_ctx and tag == "edge"):  # hot path
                return
            ctx = slow_end(tag, ctx)

        self.start, self.end = start, end
        self.ctx = lambda: ctx

    def comment(self, text):
        if self._builder is not None:
            self._flush_text()
            self._builder.comment(text)

    def pi(self, target, data=None):
        if self._builder is not None:
            self._flush_text()
            self._builder.pi(target, data)

    def close(self):
        return self

    # -- capture of unknown elements ------------------------------------------------------
    def _flush_text(self) -> None:
        if self._text:
            if self._builder is not None:
                self._builder.data("".join(self._text))
            self._text.clear()

    def _capture(self, tag, attrib, ctx: str, on_captured: Callable[[Any], None]) -> str:
        """Start keeping an unknown element (and its subtree); returns the capture context."""
        self._text.clear()
        self._builder = etree.TreeBuilder()
        self._builder.start(tag, attrib)
        self._depth = 1
        self._on_captured = on_captured
        self._stack.append(ctx)
        return _CAPTURE

    def _keep_verbatim(self, into: list[bytes]) -> Callable[[Any], None]:
        return lambda el: into.append(etree.tostring(el, encoding="utf-8", with_tail=False))

    # -- generic start/end ----------------------------------------------------------------
    def _start(self, tag, attrib, ctx: str) -> str:
        """Any element but the hot node/edge ones; returns the new context."""
        if ctx is _CAPTURE:
            self._flush_text()
            self._builder.start(tag, attrib)
            self._depth += 1
            self._stack.append(ctx)
            return ctx
        self._text.clear()
        skel = self.skeleton
        new_ctx = None
        if ctx is _DOC:
            if tag != "things":
                raise _Where(f"not an NML file: root element is <{tag}>, expected <things>", tag)
            new_ctx = _ROOT
        elif ctx is _ROOT:
            if tag == "thing":
                self._start_thing(attrib)
                new_ctx = _THING
            elif tag == "parameters":
                new_ctx = _PARAMS
            elif tag == "comments":
                new_ctx = _COMMENTS
            elif tag == "branchpoints":
                new_ctx = _BRANCHPOINTS
            elif tag == "groups":
                self.strong_wk.add("groups")
                new_ctx = _GROUPS
            elif tag == "meta":
                self.strong_wk.add("meta")
                skel.meta.append((attrib.get("name", ""), attrib.get("content", "")))
                new_ctx = _LEAF_R
        elif ctx is _PARAMS:
            return self._capture(tag, attrib, ctx, self._parameter)
        elif ctx is _THING:
            if tag == "nodes":
                new_ctx = _NODES
            elif tag == "edges":
                new_ctx = _EDGES
            elif tag == "metadata":
                self.strong_wk.add("metadata")
                new_ctx = _METADATA
            else:
                return self._capture(tag, attrib, ctx, self._keep_verbatim(self._tree.unknown))
        elif ctx is _METADATA and tag == "metadataEntry":
            self._tree.metadata.append(_metadata_entry(attrib))
            new_ctx = _LEAF_T
        elif ctx is _NODES or ctx is _EDGES or ctx is _METADATA or ctx is _LEAF_T:
            return self._capture(tag, attrib, ctx, self._keep_verbatim(self._tree.unknown))
        elif ctx is _COMMENTS and tag == "comment":
            if "node" not in attrib:
                raise _Where("<comment> without node attribute", "comment", "content", _equals(attrib.get("content")))
            self._comments.append((attrib["node"], attrib.get("content", "")))
            new_ctx = _LEAF_R
        elif ctx is _BRANCHPOINTS and tag == "branchpoint":
            if "id" not in attrib:
                raise _Where("<branchpoint> without id attribute", "branchpoint")
            if "time" in attrib:
                self.strong_wk.add("branchpoint@time")
            self._branchpoints.append((attrib["id"], attrib.get("time")))
            new_ctx = _LEAF_R
        elif ctx is _GROUPS and tag == "group":
            group = _group(attrib)
            (self._group_stack[-1].children if self._group_stack else skel.groups).append(group)
            self._group_stack.append(group)
            new_ctx = _GROUPS
        if new_ctx is None:  # unknown here: keep verbatim
            return self._capture(tag, attrib, ctx, self._keep_verbatim(skel.unknown_root))
        self._stack.append(ctx)
        return new_ctx

    def _end(self, tag, ctx: str) -> str:
        """End of any element but the hot ones; returns the context it returns to."""
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
    def _start_thing(self, attrib) -> None:
        if "id" not in attrib:
            raise _Where("<thing> without id attribute", "thing", path=("things",))
        try:
            tid = _to_int(attrib["id"])
        except ValueError as e:
            raise _Where(f"<thing> attribute id: {e}", "thing", "id", _equals(attrib["id"])) from None
        if tid in self.skeleton.trees:
            raise _Where(f"duplicate tree id {tid}", "thing", "id", _int_equals(tid), nth=1)
        tree = Tree(id=tid)
        self.skeleton.trees[tid] = tree
        self._tree = tree
        for name in attrib:
            if name in ("name", "isVisible", "groupId", "type"):
                self.weak_wk.add(f"thing@{name}")
            elif name in ("visible", "comment"):
                self.weak_k.add(f"thing@{name}")
        self._tree_attrs.append((tree, dict(attrib)))

    def _node_other(self, attrib) -> tuple:
        """A node whose attribute names differ from the previous node's: switch signature,
        keep the node; returns the signature's (width, getter, extend, flat) for the hot path."""
        names = tuple(attrib)
        sig = self._sigs.get(names)
        if sig is None:
            sig = self._sigs[names] = _Signature(names)
            if _WK_NODE_ATTRS.intersection(names):
                self._node_wk_attrs = True
        self._sig = sig
        sig.extend(sig.getter(attrib))
        return sig.width, sig.getter, sig.extend, sig.flat

    def _mark_tree(self) -> None:
        if self._tree is None:  # after </thing>: everything is marked already
            return
        tid = self._tree.id
        for sig in self._sigs.values():
            count = len(sig.flat) // sig.width
            if count > sig.marked:
                sig.marks.append((count, tid))
                sig.marked = count

    def _flush_nodes(self) -> None:
        """Convert the gathered node strings to columns."""
        self._mark_tree()
        self._text.clear()
        for sig in self._sigs.values():
            if not sig.flat:
                continue
            counts = np.diff([0] + [m[0] for m in sig.marks])
            tree = np.repeat(np.array([m[1] for m in sig.marks], np.int64), counts)
            w = sig.width
            raw = {name: sig.flat[i::w] for i, name in enumerate(sig.names)}
            sig.reset()
            self._convert_nodes(raw, tree)

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
            value = raw["id"][bad]
            message = f"<node> attribute id: not an integer: {value!r}"
            raise _Where(message, "node", "id", _equals(value), path=_NODE_PATH)
        out = {"id": ids, "tree": tree}
        for name, values in raw.items():
            column = _NODE_ATTRS.get(name)
            if column is None:
                self._extras.setdefault(name, {}).update(zip(ids.tolist(), values))
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
                value = values[bad]
                message = f"<node> attribute {name}: not {kind}: {value!r}"
                raise _Where(message, "node", name, _equals(value), path=_NODE_PATH)
            out[column] = arr
        for column, (dtype, default) in NODE_COLUMNS.items():
            arr = out.get(column)
            self._columns[column].append(np.full(n, default, dtype) if arr is None else arr.astype(dtype, copy=False))

    def _edge_missing(self, attrib) -> None:
        attr = "source" if "source" not in attrib else "target"
        raise _Where(f"<edge> without {attr} attribute", "edge", attr, lambda v: v is None, path=_EDGE_PATH)

    def _flush_edges(self) -> None:
        flat = self._edge_flat
        if not flat:
            return
        arr, bad = _int_column(flat, "i8")
        if bad is not None:
            attr, value = ("source", "target")[bad % 2], flat[bad]
            message = f"<edge> attribute {attr}: not an integer: {value!r}"
            raise _Where(message, "edge", attr, _equals(value), path=_EDGE_PATH)
        self._edge_arrays.append(arr.reshape(-1, 2))
        flat.clear()

    # -- parameters -------------------------------------------------------------------------
    def _parameter(self, el) -> None:
        tag, a = el.tag, dict(el.attrib)
        params = self.skeleton.parameters
        simple = len(el) == 0 and not (el.text or "").strip()
        repeatable = tag == "userBoundingBox"
        if not simple or not isinstance(tag, str) or (tag in self._params_seen and not repeatable):
            params.unknown.append(etree.tostring(el, encoding="utf-8", with_tail=False))
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


def _metadata_entry(attrib) -> MetadataEntry:
    a = dict(attrib)
    key = a.pop("key", None)
    if key is None:
        raise _Where("<metadataEntry> without key attribute", "metadataEntry")
    if "stringValue" in a:
        return MetadataEntry(key, a["stringValue"])
    if "numberValue" in a:
        v = a["numberValue"]
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
        v = a["boolValue"]
        try:
            return MetadataEntry(key, _to_bool(v))
        except ValueError as e:
            raise _Where(f"<metadataEntry> attribute boolValue: {e}", "metadataEntry", "key", _equals(key)) from None
    values = []
    while f"stringListValue-{len(values)}" in a:
        values.append(a[f"stringListValue-{len(values)}"])
    return MetadataEntry(key, values)


def _group(attrib) -> Group:
    a = dict(attrib)
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


def _decide_dialect(t: _NmlTarget) -> str:
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


def _finish(t: _NmlTarget, dataset_scale) -> Skeleton:
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

    for tree, attrs in t._tree_attrs:
        _apply_tree_attrs(tree, attrs, dialect)

    known_node = skel.has_node
    dropped = []
    for text_id, content in t._comments:
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
    for text_id, text_time in t._branchpoints:
        try:
            nid = _to_int(text_id)
            when = None if text_time is None else _to_int(text_time)
        except ValueError as e:
            raise _Where(f"<branchpoint>: {e}", "branchpoint", "id", _equals(text_id)) from None
        if not known_node(nid):
            dropped.append(f"branch point on node {nid}")
            continue
        skel.branchpoints.append((nid, when))
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
    return skel


def read_nml(source, *, dataset_scale=None, name: str | None = None) -> Skeleton:
    """Read an NML file (either dialect) into a :class:`Skeleton`.

    ``source``: path, bytes, or a binary file object. ``dataset_scale`` (x, y, z nm of the
    target dataset): when the file's ``<scale>`` differs, nodes are rescaled as KNOSSOS does.
    ``name`` names the source in error messages (bytes have no name of their own).
    Raises ValueError naming the file and line for malformed XML and invalid content.
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

    target = _NmlTarget()
    parser = etree.XMLParser(
        target=target, resolve_entities="internal", no_network=True, huge_tree=True, load_dtd=False
    )
    try:
        try:
            etree.parse(feed, parser)
            if target.ctx() is _DOC:
                raise ValueError(f"{label}: not an NML file (no root element)")
            return _finish(target, dataset_scale)
        finally:
            if feed is not source:
                feed.close()
    except etree.XMLSyntaxError as e:
        msg = getattr(e, "msg", None) or str(e)
        msg = re.sub(r",? line \d+, column \d+.*$", "", msg)
        raise ValueError(f"{label}, line {e.lineno}: malformed XML: {msg}") from None
    except _Where as w:
        line = _locate(locate_source, w)
        where = f"line {line}" if line is not None else "line unknown"
        raise ValueError(f"{label}, {where}: {w.message}") from None


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


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.lower().startswith("xml") and ":" in name:
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
                out.append(f"{ind}<nodes_0_based/>\n")
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
        return "  <parameters>\n" + "".join(out) + "  </parameters>\n"

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
        if not tree.metadata:
            return "" if self.k else "    <metadata/>\n"
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
            lines.append(_tag("metadataEntry", pairs, "      "))
        return "    <metadata>\n" + "".join(lines) + "    </metadata>\n"

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
            edge_lines = list(map(line.__mod__, zip(e[:, 0].tolist(), e[:, 1].tolist())))
            out: list[str] = []
            for i in range(first, last):
                tree = trees[i]
                out.append(self._thing_open(tree))
                a, b = nb[i] - nb[first], nb[i + 1] - nb[first]
                out.append("    <nodes>\n" + "".join(node_lines[a:b]) + "    </nodes>\n" if b > a else "    <nodes/>\n")
                a, b = eb[i] - eb[first], eb[i + 1] - eb[first]
                out.append("    <edges>\n" + "".join(edge_lines[a:b]) + "    </edges>\n" if b > a else "    <edges/>\n")
                out.append(self._metadata(tree))
                out += [f"    {_verbatim(u)}\n" for u in tree.unknown]
                out.append("  </thing>\n")
            yield "".join(out)
            first = last

    # -- root-level lists ---------------------------------------------------------------------
    def comments(self) -> str:
        lines = [f'    <comment node="{nid}" content="{_esc(text)}"/>\n' for nid, text in self.s.comments.items()]
        return "  <comments>\n" + "".join(lines) + "  </comments>\n" if lines else "  <comments/>\n"

    def branchpoints(self) -> str:
        lines = [_tag("branchpoint", [("id", nid), ("time", t)], "    ") for nid, t in self.s.branchpoints]
        return "  <branchpoints>\n" + "".join(lines) + "  </branchpoints>\n" if lines else "  <branchpoints/>\n"

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

        if not self.s.groups:
            return "  <groups/>\n"
        return "  <groups>\n" + "".join(render(g, "    ") for g in self.s.groups) + "  </groups>\n"

    def meta(self) -> str:
        return "".join(_tag("meta", [("name", k), ("content", v)], "  ") for k, v in self.s.meta)

    def render(self) -> Iterable[str]:
        """The document as text pieces, produced lazily (the trees in batches), so that only
        the output, not its text, is ever whole in memory. Validates before the first piece."""
        s = self.s
        self._prepare_things()
        head = ['<?xml version="1.0" encoding="UTF-8"?>\n<things>\n']
        if not self.k:
            head.append(self.meta())
        head.append(self.parameters())  # its errors (bad names) also come before any output
        yield "".join(head)
        yield from self.things()
        if self.k:
            yield self.comments() + self.branchpoints() + (self.groups() if s.groups else "") + self.meta()
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


def _write_atomically(path: Path, blocks: Iterable[bytes]) -> None:
    """Write to a temp file in the same folder, then rename over ``path`` (readers never see
    a half-written file). New files get the usual permissions (0666 minus umask); an existing
    file keeps its mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for block in blocks:
                f.write(block)
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _verbatim(element: bytes) -> str:
    return element.decode("utf-8") if isinstance(element, (bytes, bytearray)) else str(element)


def write_nml(
    skeleton: Skeleton, target=None, *, dialect: str | None = None, zero_based: bool = False
) -> bytes | None:
    """Write ``skeleton`` as NML.

    ``dialect``: "webknossos" or "knossos"; default: the dialect the skeleton was read from,
    else webKnossos. KNOSSOS output is 1-based without ``<nodes_0_based/>`` (KNOSSOS' own
    default) or, with ``zero_based=True``, 0-based with the tag. ``target``: a path (written
    atomically: temp file in the same folder, then renamed), a binary file object, or None
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
    _write_atomically(Path(target), blocks)
    return None
