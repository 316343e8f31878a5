from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error

import pytest

from chat import __version__
from chat.server import Application, Phase
from support import AppFactory, base_url_of, post_json, request


def test_healthz_is_ok(base_url: str) -> None:
    resp = request(base_url, "/healthz")
    assert resp.status == 200
    assert resp.body == b"ok"
    assert resp.headers.get_content_type() == "text/plain"
    assert resp.headers["Cache-Control"] == "no-store"


def test_head_has_headers_but_no_body(base_url: str) -> None:
    resp = request(base_url, "/healthz", method="HEAD")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "2"
    assert resp.body == b""


def test_readiness_goes_starting_ready_draining(make_app: AppFactory) -> None:
    app = make_app()
    url = base_url_of(app.address)

    resp = request(url, "/readyz")
    assert (resp.status, resp.json()) == (503, {"status": "starting"})
    assert request(url, "/healthz").status == 200  # alive while starting

    app.mark_ready()
    resp = request(url, "/readyz")
    assert (resp.status, resp.json()) == (200, {"status": "ready"})

    app.begin_draining()
    resp = request(url, "/readyz")
    assert (resp.status, resp.json()) == (503, {"status": "draining"})
    assert request(url, "/healthz").status == 200  # alive while draining
    assert request(url, "/api/messages").status == 200  # still serving traffic


def test_stop_drains_then_closes(make_app: AppFactory) -> None:
    app = make_app()
    app.mark_ready()
    url = base_url_of(app.address)
    stopper = threading.Thread(target=app.stop, kwargs={"drain_seconds": 0.3})
    stopper.start()
    try:
        deadline = time.monotonic() + 2
        while app.service.phase is not Phase.DRAINING and time.monotonic() < deadline:
            time.sleep(0.01)
        resp = request(url, "/readyz")
        assert (resp.status, resp.json()) == (503, {"status": "draining"})
    finally:
        stopper.join(timeout=5)
    assert not stopper.is_alive()
    with pytest.raises(urllib.error.URLError):
        request(url, "/healthz", timeout=1)


def test_version(base_url: str) -> None:
    resp = request(base_url, "/version")
    assert resp.status == 200
    assert resp.json() == {"name": "chat", "version": __version__}
    assert resp.headers["Server"] == f"chat/{__version__}"
    assert resp.headers.get_content_type() == "application/json"


def test_post_then_list_messages(base_url: str) -> None:
    assert request(base_url, "/api/messages").json() == []

    resp = post_json(base_url, "/api/messages", {"author": "ada", "text": "hello"})
    assert resp.status == 201
    created = resp.json()
    assert isinstance(created, dict)
    assert created["id"] == 1
    assert (created["author"], created["text"]) == ("ada", "hello")
    assert str(created["created_at"]).endswith("Z")

    post_json(base_url, "/api/messages", {"author": "bob", "text": "hi ada"})
    messages = request(base_url, "/api/messages?limit=ignored").json()
    assert isinstance(messages, list)
    assert [(m["id"], m["author"], m["text"]) for m in messages] == [
        (1, "ada", "hello"),
        (2, "bob", "hi ada"),
    ]


def test_history_keeps_the_most_recent(make_app: AppFactory) -> None:
    app = make_app(history_size=2)
    url = base_url_of(app.address)
    for n in range(3):
        assert post_json(url, "/api/messages", {"author": "a", "text": str(n)}).status == 201
    messages = request(url, "/api/messages").json()
    assert isinstance(messages, list)
    assert [m["text"] for m in messages] == ["1", "2"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "hi"}, "author"),
        ({"author": 7, "text": "hi"}, "author"),
        ({"author": "   ", "text": "hi"}, "author"),
        ({"author": "a" * 65, "text": "hi"}, "author"),
        ({"author": "ada"}, "text"),
        ({"author": "ada", "text": None}, "text"),
        ({"author": "ada", "text": ""}, "text"),
        ({"author": "ada", "text": "x" * 11}, "text"),
        ({"author": "ada", "text": "hi", "room": "general"}, "room"),
    ],
)
def test_invalid_message_names_the_field(
    make_app: AppFactory, payload: dict[str, object], field: str
) -> None:
    app = make_app(max_message_length=10)
    url = base_url_of(app.address)
    resp = post_json(url, "/api/messages", payload)
    assert resp.status == 400
    error = resp.json()
    assert isinstance(error, dict)
    assert error["field"] == field
    assert field in str(error["error"])
    assert request(url, "/api/messages").json() == []


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000]
)
def test_malformed_body_is_400_without_field(make_app: AppFactory, body: bytes) -> None:
    app = make_app(max_body_bytes=20_000)
    resp = request(
        base_url_of(app.address),
        "/api/messages",
        method="POST",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    error = resp.json()
    assert isinstance(error, dict)
    assert "field" not in error
    assert error["error"]


def test_text_at_the_limit_is_accepted(make_app: AppFactory) -> None:
    app = make_app(max_message_length=10)
    resp = post_json(base_url_of(app.address), "/api/messages", {"author": "a", "text": "é" * 10})
    assert resp.status == 201


def test_oversized_body_is_413(make_app: AppFactory) -> None:
    app = make_app(max_body_bytes=1024)
    url = base_url_of(app.address)
    payload = {"author": "ada", "text": "x" * 2048}
    resp = post_json(url, "/api/messages", payload)
    assert resp.status == 413
    assert resp.json() == {"error": "body exceeds 1024 bytes", "limit": 1024}
    assert request(url, "/api/messages").json() == []


def test_declared_length_over_the_discard_limit_is_413(make_app: AppFactory) -> None:
    app = make_app(max_body_bytes=1024)
    host, port = app.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.putrequest("POST", "/api/messages")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()
        conn.send(b"{}")  # far less than declared: the server must not wait for the rest
        resp = conn.getresponse()
        assert resp.status == 413
        resp.read()
    finally:
        conn.close()


def test_wrong_content_type_is_415(base_url: str) -> None:
    resp = request(
        base_url,
        "/api/messages",
        method="POST",
        body=json.dumps({"author": "a", "text": "b"}).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 415


def test_missing_content_length_is_411(app: Application) -> None:
    host, port = app.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.putrequest("POST", "/api/messages")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 411
        assert json.loads(resp.read())["error"]
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/", "/nope", "/api/messages/", "/api/messages/1", "/HEALTHZ"])
def test_unknown_path_is_404(base_url: str, path: str) -> None:
    resp = request(base_url, path)
    assert resp.status == 404
    assert resp.json() == {"error": f"no route for {path}"}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_wrong_method_is_405_with_allow(base_url: str, method: str) -> None:
    resp = request(base_url, "/api/messages", method=method)
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD, POST"
    resp = request(base_url, "/healthz", method="POST", body=b"")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"


def test_unsupported_method_is_json_501(base_url: str) -> None:
    resp = request(base_url, "/healthz", method="TRACE")
    assert resp.status == 501
    error = resp.json()
    assert isinstance(error, dict)
    assert error["error"]


def test_garbage_request_line_is_json_400(app: Application) -> None:
    with socket.create_connection(app.address, timeout=5) as sock:
        sock.sendall(b"GET /a b HTTP/1.1\r\n\r\n")  # one word too many
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400")
    assert json.loads(body)["error"]


def test_concurrent_posts_get_unique_ids(base_url: str) -> None:
    def post(n: int) -> None:
        assert post_json(base_url, "/api/messages", {"author": "t", "text": str(n)}).status == 201

    threads = [threading.Thread(target=post, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = request(base_url, "/api/messages").json()
    assert isinstance(messages, list)
    assert sorted(m["id"] for m in messages) == list(range(1, 21))


def _raw_post(app: Application, declared: int | bytes, sent: bytes, *, close_write: bool) -> bytes:
    """POST with a Content-Length of `declared` but only `sent` as the body; the raw reply."""
    length = declared if isinstance(declared, bytes) else str(declared).encode()
    head = (
        b"POST /api/messages HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %s\r\n\r\n" % length
    )
    with socket.create_connection(app.address, timeout=5) as sock:
        sock.sendall(head + sent)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_body_shorter_than_content_length_is_400(app: Application) -> None:
    reply = _raw_post(app, 100, b'{"author": "a"', close_write=True)
    assert reply.startswith(b"HTTP/1.0 400")
    assert b"shorter than Content-Length" in reply


@pytest.mark.parametrize("declared", [b"12x", b"-1", b"\xb2", b"1_0"])
def test_invalid_content_length_is_400(app: Application, declared: bytes) -> None:
    reply = _raw_post(app, declared, b"{}", close_write=True)
    assert reply.startswith(b"HTTP/1.0 400")
    assert b"invalid Content-Length" in reply


def test_slow_body_is_408(make_app: AppFactory) -> None:
    app = make_app(request_timeout=0.2)
    reply = _raw_post(app, 100, b'{"author": "a"', close_write=False)
    assert reply.startswith(b"HTTP/1.0 408")


def test_unexpected_error_is_json_500(
    app: Application, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(author: str, text: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app.service.store, "add", broken)
    resp = post_json(base_url, "/api/messages", {"author": "a", "text": "b"})
    assert resp.status == 500
    assert resp.json() == {"error": "internal error"}
