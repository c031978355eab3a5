"""HTTP client helpers with bounded timeouts (a hung request must fail the test, not hang it)."""

from __future__ import annotations

import requests

TIMEOUT = 10.0


def request(method: str, url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("allow_redirects", False)
    return requests.request(method, url, **kw)


def get(url: str, **kw) -> requests.Response:
    return request("GET", url, **kw)


def post(url: str, **kw) -> requests.Response:
    return request("POST", url, **kw)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


# --- raw HTTP/1.1 and HTTP/2 (h2c) clients, for what `requests` cannot send -------------------


class RawResponse:
    """A response read off the wire: status, lower-cased headers (last value wins), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        import json

        return json.loads(self.body)


def _read_http1(sock) -> RawResponse:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response head: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for ln in lines[1:]:
        n, _, v = ln.partition(":")
        headers[n.strip().lower()] = v.strip()

    def more() -> bytes:
        c = sock.recv(65536)
        if not c:
            raise ConnectionError("connection closed mid-body")
        return c

    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2:]
        return RawResponse(status, headers, body)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += more()
    return RawResponse(status, headers, rest[:length])


def raw_http1(port: int, data: bytes, timeout: float = TIMEOUT) -> RawResponse:
    """Sends `data` (a whole HTTP/1.1 request, as bytes) to 127.0.0.1:port; reads one response."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return _read_http1(s)


def http1_request(port: int, method: str, path: str, headers: list[tuple[str, str]],
                  body: bytes = b"", trailers: list[tuple[str, str]] | None = None,
                  host: str = "127.0.0.1") -> RawResponse:
    """One HTTP/1.1 request with headers exactly as given (any case, `_`, repeats). With
    `trailers`, the body is sent chunked and the trailer fields follow the last chunk."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{n}: {v}" for n, v in headers]
    if trailers is not None:
        lines += ["transfer-encoding: chunked", "te: trailers"]
        chunks = (f"{len(body):x}\r\n".encode() + body + b"\r\n") if body else b""
        payload = chunks + b"0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in trailers).encode() + b"\r\n"
    else:
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(body)}")
        payload = body
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    return raw_http1(port, data)


def h2_request(port: int, method: str, path: str, headers: list[tuple[str, str]],
               body: bytes = b"", trailers: list[tuple[str, str]] | None = None,
               authority: str = "127.0.0.1", timeout: float = TIMEOUT) -> RawResponse:
    """One HTTP/2 request over cleartext (prior knowledge), with request trailers if given
    (a HEADERS frame ending the stream after the body). Uses the `h2` package."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        req = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        req += [(n.lower(), v) for n, v in headers]
        end_after_headers = not body and not trailers
        conn.send_headers(sid, req, end_stream=end_after_headers)
        if body:
            conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            conn.send_headers(sid, [(n.lower(), v) for n, v in trailers], end_stream=True)
        s.sendall(conn.data_to_send())
        status, resp_headers, data = 0, {}, b""
        done = False
        while not done:
            raw = s.recv(65536)
            if not raw:
                raise ConnectionError("h2: connection closed before the response ended")
            for ev in conn.receive_data(raw):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    for n, v in ev.headers:
                        if n == ":status":
                            status = int(v)
                        else:
                            resp_headers[n] = v
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    done = True
            s.sendall(conn.data_to_send())
        return RawResponse(status, resp_headers, data)
