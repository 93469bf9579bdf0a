"""Store: local and HTTP access, missing → None, auth, clear errors, bounded retries."""

import pytest

from napari_knossos.formats.store import HttpStore, RemoteAccessError, open_store

from .http_server import serve


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.bin").write_bytes(bytes(range(256)))
    return tmp_path


def test_local_store(folder):
    s = open_store(folder)
    assert s.read("a/b.bin") == bytes(range(256))
    assert s.read_range("a/b.bin", 10, 5) == bytes(range(10, 15))
    assert s.read("a/missing") is None and s.read("nope/x") is None
    assert s.child("a").read("b.bin")[:3] == b"\x00\x01\x02"
    assert open_store(f"file://{folder}").read("a/b.bin") is not None


def test_http_store_reads_ranges_and_missing(folder):
    with serve(folder) as srv:
        s = open_store(srv.url)
        assert isinstance(s, HttpStore)
        assert s.read("a/b.bin") == bytes(range(256))
        assert s.read_range("a/b.bin", 100, 4) == bytes(range(100, 104))
        assert s.read("a/missing.bin") is None


def test_http_basic_auth_from_url_and_clear_401(folder):
    with serve(folder, credentials="ann:s3cret") as srv:
        host = srv.url.removeprefix("http://")
        assert open_store(f"http://ann:s3cret@{host}").read("a/b.bin") is not None
        with pytest.raises(RemoteAccessError) as err:
            open_store(srv.url).read("a/b.bin")
        assert "401" in str(err.value) and "b.bin" in str(err.value)
        with pytest.raises(RemoteAccessError) as err:
            open_store(f"http://ann:wrong@{host}").read("a/b.bin")
        assert "wrong" not in str(err.value)  # credentials never in messages


def test_http_403_and_retries(folder):
    with serve(folder) as srv:
        srv.forbidden.append("/a/")
        with pytest.raises(RemoteAccessError, match="403"):
            open_store(srv.url).read("a/b.bin")
        srv.forbidden.clear()
        srv.fail_next = 2  # two 503s, then success
        assert HttpStore(srv.url, retries=3).read("a/b.bin") is not None
        srv.fail_next = 10
        n = len(srv.requests)
        with pytest.raises(RemoteAccessError, match="after 2 attempts"):
            HttpStore(srv.url, retries=1).read("a/b.bin")
        assert len(srv.requests) - n == 2  # bounded


def test_http_timeout_is_bounded():
    import socket
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)  # accepts connections, never answers
    port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(RemoteAccessError):
        HttpStore(f"http://127.0.0.1:{port}", timeout=0.3, retries=1).read("x")
    assert time.perf_counter() - t0 < 5
    sock.close()


def test_suffix_reads_local_and_http(folder):
    assert open_store(folder).read_suffix("a/b.bin", 3) == bytes([253, 254, 255])
    assert open_store(folder).read_suffix("a/b.bin", 1000) == bytes(range(256))
    with serve(folder) as srv:
        assert open_store(srv.url).read_suffix("a/b.bin", 3) == bytes([253, 254, 255])
        assert open_store(srv.url).read_suffix("a/none", 3) is None
