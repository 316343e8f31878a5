"""Test helpers: a tiny urllib client (every status comes back as a Response, none raises)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message

from chat.server import Application

# make_app(**config_overrides): a started Application on 127.0.0.1:0 (see conftest.py).
AppFactory = Callable[..., Application]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def base_url_of(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://{host}:{port}"


def request(
    base_url: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Response:
    req = urllib.request.Request(  # noqa: S310 - the URL is the test server's
        base_url + path, data=body, method=method, headers=dict(headers or {})
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.headers, exc.read())


def post_json(base_url: str, path: str, payload: object) -> Response:
    return request(
        base_url,
        path,
        method="POST",
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
