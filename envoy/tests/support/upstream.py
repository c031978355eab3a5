"""Upstream echo server: answers every request with JSON of its method, path and headers.

Besides the lower-cased ``headers`` map it reports what a CGI-style app would see: every header
exactly as received (``raw_headers``: ``[name, value]`` in order and original case), the WSGI /
Rack / PHP ``environ`` keys they become (``HTTP_`` + upper-case, ``-`` -> ``_``: ``x_a`` and
``x-a`` land on the same key), and the request ``trailers`` of a chunked body (``[name, value]``).

Run standalone (the demo): ``python -m support.upstream --port 10001``.
"""

from __future__ import annotations

import argparse
import http.client
import json
from http.server import BaseHTTPRequestHandler

from support.server import LoopbackServer

MAX_BODY = 1 << 20
# http.server parses request heads with http.client, which refuses more than 100 header fields
# (431): the echo must show what Envoy sent, so it takes as many as Envoy may pass.
http.client._MAXHEADERS = max(http.client._MAXHEADERS, 1000)


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgegate-echo"

    def _echo(self) -> None:
        self.server.seen.append((self.command, self.path))
        trailers: list[list[str]] = []
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = self._read_chunked(trailers)
        else:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        headers: dict[str, list[str]] = {}
        environ: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
            environ.setdefault("HTTP_" + name.upper().replace("-", "_"), []).append(value)
        echo = {
            "method": self.command,
            "path": self.path,
            # Lower-case names; a header sent twice keeps both values.
            "headers": {k: v[0] if len(v) == 1 else v for k, v in headers.items()},
            "body": body.decode("utf-8", "replace"),
            "raw_headers": [[n, v] for n, v in self.headers.items()],
            "environ": {k: ",".join(v) for k, v in environ.items()},
            "trailers": trailers,
        }
        self.server.received.append(echo)
        payload = json.dumps(echo).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_chunked(self, trailers: list[list[str]]) -> bytes:
        """A chunked body (at most MAX_BODY kept), then its trailer fields into `trailers`."""
        body = b""
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return body
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            chunk = self.rfile.read(size)
            self.rfile.readline(8)  # the CRLF after the chunk
            if len(body) < MAX_BODY:
                body += chunk[: MAX_BODY - len(body)]
        for _ in range(1000):
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            trailers.append([name.strip(), value.strip()])
        return body

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass


class EchoServer(LoopbackServer):
    """The echo server on 127.0.0.1 (port 0 = a free one), running in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(EchoHandler, port, name="echo")
        self.httpd.seen = []  # (method, path) of every request that reached the upstream
        self.httpd.received = []  # the echo of every request read whole (trailers included)


class _Discard(list):
    """The standalone server keeps no request log."""

    def append(self, _item) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=10001)
    args = ap.parse_args()
    srv = EchoServer(args.port)
    srv.httpd.seen = _Discard()
    srv.httpd.received = _Discard()
    print(f"upstream echo on http://127.0.0.1:{srv.port}", flush=True)
    srv.serve_until_interrupted()


if __name__ == "__main__":
    main()
