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
