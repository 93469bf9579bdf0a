"""Byte access to local folders and HTTP(S) servers, the one I/O path of all readers.

A :class:`Store` is rooted at a folder or URL; keys are ``/``-separated paths below it.
``read`` returns ``None`` for a missing key (absent file, HTTP 404), so every format can
treat missing chunks as zeros; other failures raise with the location in the message.
Credentials may come from the URL (``https://user:pass@host/...``) or be passed in; they
are never part of a message.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["Store", "LocalStore", "HttpStore", "open_store", "is_url", "RemoteAccessError"]

HTTP_TIMEOUT_S = float(os.environ.get("NAPARI_KNOSSOS_HTTP_TIMEOUT", "30"))
HTTP_RETRIES = int(os.environ.get("NAPARI_KNOSSOS_HTTP_RETRIES", "3"))


class RemoteAccessError(OSError):
    """A remote read failed for a reason other than 'not there' (401, 403, 5xx, network)."""


def is_url(path: str | os.PathLike) -> bool:
    return isinstance(path, str) and path.split("://", 1)[0].lower() in ("http", "https")


class Store:
    """Read-only key → bytes access below a root."""

    root: str

    def read(self, key: str) -> bytes | None:
        raise NotImplementedError

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        data = self.read(key)
        return None if data is None else data[offset : offset + length]

    def read_suffix(self, key: str, length: int) -> bytes | None:
        """The last ``length`` bytes of ``key`` (a shard index, say)."""
        data = self.read(key)
        return None if data is None else data[-length:]

    def exists(self, key: str) -> bool:
        return self.read(key) is not None

    def child(self, key: str) -> Store:
        raise NotImplementedError

    def location(self, key: str = "") -> str:
        """Human-readable location of ``key`` (no credentials)."""
        raise NotImplementedError

    def list_dir(self, key: str = "") -> list[str] | None:
        """Names below ``key``, or None where the store cannot list (HTTP)."""
        return None

    @property
    def writable(self) -> bool:
        return False


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(Path(root))

    def path(self, key: str) -> str:
        """The file-system path of ``key``."""
        return os.path.join(self.root, *[p for p in key.split("/") if p]) if key else self.root

    def read(self, key: str) -> bytes | None:
        try:
            with open(self.path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def read_suffix(self, key: str, length: int) -> bytes | None:
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            size = os.fstat(fd).st_size
            return os.pread(fd, min(length, size), max(size - length, 0))
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def child(self, key: str) -> LocalStore:
        return LocalStore(self.path(key))

    def location(self, key: str = "") -> str:
        return self.path(key)

    def list_dir(self, key: str = "") -> list[str] | None:
        try:
            return sorted(os.listdir(self.path(key)))
        except OSError:
            return None

    @property
    def writable(self) -> bool:
        return True


class HttpStore(Store):
    """HTTP(S) GET with basic auth, a timeout and bounded retries on transient errors."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        query: str = "",
        timeout: float = HTTP_TIMEOUT_S,
        retries: int = HTTP_RETRIES,
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:
            username = username or urllib.parse.unquote(parts.username)
            password = password or urllib.parse.unquote(parts.password or "")
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.root = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.query = query or parts.query
        self.username, self.password = username, password
        self.timeout, self.retries = timeout, retries
        self._local = threading.local()

    def _auth_header(self) -> dict:
        if self.username is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def location(self, key: str = "") -> str:
        return f"{self.root}/{key}" if key else self.root

    def _url(self, key: str) -> str:
        url = self.location(urllib.parse.quote(key))
        return f"{url}?{self.query}" if self.query else url

    def child(self, key: str) -> HttpStore:
        s = HttpStore(self.location(key), self.username, self.password, self.query, self.timeout, self.retries)
        return s

    def _get(self, key: str, headers: dict) -> bytes | None:
        req = urllib.request.Request(self._url(key), headers={**self._auth_header(), **headers})
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                if e.code in (404, 410):
                    return None
                if e.code in (401, 403):
                    what = "authentication required" if e.code == 401 else "access denied"
                    raise RemoteAccessError(
                        f"{self.location(key)}: HTTP {e.code} {what}; give credentials in the URL "
                        "(https://user:password@host/...) or the dataset config"
                    ) from None
                if e.code < 500 and e.code != 429:
                    raise RemoteAccessError(f"{self.location(key)}: HTTP {e.code} {e.reason}") from None
                last = e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = e
            if attempt < self.retries:
                time.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
        reason = getattr(last, "reason", None) or last
        raise RemoteAccessError(f"{self.location(key)}: failed after {self.retries + 1} attempts: {reason}")

    def read(self, key: str) -> bytes | None:
        return self._get(key, {})

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        data = self._get(key, {"Range": f"bytes={offset}-{offset + length - 1}"})
        if data is not None and len(data) > length:  # server ignored Range
            data = data[offset : offset + length]
        return data

    def read_suffix(self, key: str, length: int) -> bytes | None:
        data = self._get(key, {"Range": f"bytes=-{length}"})  # RFC 9110 suffix range
        if data is not None and len(data) > length:  # server ignored Range
            data = data[-length:]
        return data


def open_store(path: str | os.PathLike, username: str | None = None, password: str | None = None) -> Store:
    """A store rooted at a local path, ``file://`` URL or ``http(s)://`` URL."""
    if isinstance(path, str) and path.lower().startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    if is_url(path):
        return HttpStore(str(path), username, password)
    return LocalStore(path)


def split_parent(path: str | os.PathLike) -> tuple[str, str]:
    """(parent, name) of a local path or URL."""
    s = os.fspath(path)
    if is_url(s):
        s = s.rstrip("/")
        parent, _, name = s.rpartition("/")
        return parent, name
    p = Path(s)
    return str(p.parent), p.name
