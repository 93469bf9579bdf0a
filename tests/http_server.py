"""A real HTTP server on 127.0.0.1 serving a folder: basic auth, Range, injected failures."""

from __future__ import annotations

import base64
import os
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def _check(self) -> bool:
        srv = self.server
        with srv.lock:
            srv.requests.append(self.path)
            if srv.fail_next > 0:
                srv.fail_next -= 1
                self.send_error(503, "injected failure")
                return False
        path = self.path.split("?", 1)[0]
        if any(path.startswith(p) for p in srv.forbidden):
            self.send_error(403, "forbidden")
            return False
        if srv.credentials:
            want = "Basic " + base64.b64encode(srv.credentials.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
        return True

    def do_GET(self):
        if not self._check():
            return
        rng = self.headers.get("Range")
        if not rng:
            return super().do_GET()
        path = self.translate_path(self.path.split("?", 1)[0])
        if not os.path.isfile(path):
            return self.send_error(404)
        start, end = rng.removeprefix("bytes=").split("-")
        with open(path, "rb") as f:
            data = f.read()
        if start == "":  # suffix range: the last `end` bytes
            start, end = max(len(data) - int(end), 0), len(data) - 1
        else:
            start, end = int(start), min(int(end or len(data) - 1), len(data) - 1)
        body = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(directory, credentials: str | None = None):
    """Serve ``directory`` on 127.0.0.1:<free port>; yields the server (``.url``, ``.requests``)."""
    ThreadingHTTPServer.request_queue_size = 64  # the chunk pool opens many connections at once
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=os.fspath(directory)))
    server.lock = threading.Lock()
    server.requests = []
    server.fail_next = 0
    server.forbidden = []
    server.credentials = credentials
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
