"""The chat HTTP service: configuration, JSON logging, message store, handler and lifecycle.

Standard library only. The process is meant to run as a Kubernetes container (charts/chat):

* configuration comes from environment variables (the chart's ConfigMap plus ``PORT``);
* ``/healthz`` is the liveness probe, ``/readyz`` the readiness probe;
* on SIGTERM (or SIGINT) readiness turns to 503 ("draining") for ``CHAT_DRAIN_SECONDS`` so
  that endpoints and load balancers stop sending traffic, then the server stops accepting
  connections, finishes the requests in flight and the process exits 0.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Final
from urllib.parse import urlsplit

from chat import __version__

LOGGER: Final = logging.getLogger("chat")

LOG_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

MAX_AUTHOR_LENGTH: Final = 64
# After a 413, up to this many bytes of the unread body are read and dropped, waiting at most
# LINGER_TIMEOUT seconds for each read, so that the client gets the response rather than a
# connection reset.
DISCARD_LIMIT: Final = 1024 * 1024
LINGER_TIMEOUT: Final = 1.0
# Requests on these paths (the kubelet's probes) are logged at debug level only.
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz"})
SHUTDOWN_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})
JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"


# --- configuration ------------------------------------------------------------------------


class ConfigError(ValueError):
    """An environment variable has an invalid value."""


@dataclass(frozen=True)
class Config:
    """Runtime settings; :meth:`from_env` reads them from the environment."""

    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on the pod IP
    port: int = 8080
    log_level: str = "info"
    max_message_length: int = 4096
    history_size: int = 200
    max_body_bytes: int = 64 * 1024
    drain_seconds: float = 5.0
    request_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Build the configuration from ``env``; unset or empty variables keep the default."""
        defaults = cls()
        log_level = _get(env, "LOG_LEVEL", defaults.log_level).lower()
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(sorted(LOG_LEVELS))}, got {log_level!r}"
            )
        return cls(
            host=_get(env, "HOST", defaults.host),
            port=_int(env, "PORT", defaults.port, 0, 65535),
            log_level=log_level,
            max_message_length=_int(
                env, "CHAT_MAX_MESSAGE_LENGTH", defaults.max_message_length, 1, 1_000_000
            ),
            history_size=_int(env, "CHAT_HISTORY_SIZE", defaults.history_size, 1, 100_000),
            max_body_bytes=_int(
                env, "CHAT_MAX_BODY_BYTES", defaults.max_body_bytes, 1, 16 * 1024 * 1024
            ),
            drain_seconds=_float(env, "CHAT_DRAIN_SECONDS", defaults.drain_seconds, 0, 300),
            request_timeout=_float(
                env, "CHAT_REQUEST_TIMEOUT_SECONDS", defaults.request_timeout, 0.1, 300
            ),
        )

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS[self.log_level]


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float
) -> float:
    raw = _get(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:  # also rejects nan
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw!r}")
    return value


# --- logging ------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int, stream: IO[str] | None = None) -> None:
    """Send the ``chat`` logger's records to ``stream`` (stdout) as JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def log(level: int, message: str, **fields: object) -> None:
    LOGGER.log(level, message, extra={"fields": fields})


# --- state --------------------------------------------------------------------------------


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass(frozen=True)
class Message:
    id: int
    author: str
    text: str
    created_at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class MessageStore:
    """The most recent ``capacity`` messages, oldest first; safe to use from many threads."""

    def __init__(self, capacity: int) -> None:
        self._messages: deque[Message] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._next_id = 1

    def add(self, author: str, text: str) -> Message:
        created_at = datetime.now(tz=UTC).isoformat(timespec="milliseconds")
        with self._lock:
            message = Message(self._next_id, author, text, created_at.replace("+00:00", "Z"))
            self._next_id += 1
            self._messages.append(message)
        return message

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self._messages)


class ChatService:
    """Everything a request handler needs: the configuration, the messages, the phase."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = MessageStore(config.history_size)
        self._phase = Phase.STARTING
        self._phase_lock = threading.Lock()

    @property
    def phase(self) -> Phase:
        with self._phase_lock:
            return self._phase

    def set_phase(self, phase: Phase) -> None:
        with self._phase_lock:
            previous, self._phase = self._phase, phase
        if previous is not phase:
            log(logging.INFO, "phase changed", phase=phase.value, previous=previous.value)


# --- validation ---------------------------------------------------------------------------


class ValidationError(ValueError):
    """A request body is invalid; ``field`` names the offending field when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


def parse_message(body: bytes, max_text_length: int) -> tuple[str, str]:
    """Validate a ``{"author": str, "text": str}`` JSON body; return (author, text)."""
    try:
        payload: object = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValidationError("body must be valid JSON") from None
    if not isinstance(payload, dict):
        raise ValidationError("body must be a JSON object")
    unknown = sorted(str(key) for key in payload if key not in {"author", "text"})
    if unknown:
        raise ValidationError(f"unknown field '{unknown[0]}'", unknown[0])
    author = _string_field(payload, "author", MAX_AUTHOR_LENGTH)
    text = _string_field(payload, "text", max_text_length)
    return author, text


def _string_field(payload: Mapping[str, object], name: str, max_length: int) -> str:
    if name not in payload:
        raise ValidationError(f"{name} is required", name)
    value = payload[name]
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", name)
    if not value.strip():
        raise ValidationError(f"{name} must not be blank", name)
    if len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters", name)
    return value


# --- HTTP ---------------------------------------------------------------------------------


class ChatHTTPServer(ThreadingHTTPServer):
    """A thread per request; on close, waits for the requests in flight to finish."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: ChatService) -> None:
        self.service = service
        super().__init__(address, ChatRequestHandler)


Route = Callable[[], None]


class ChatRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to the endpoints; every response body but /healthz's is JSON."""

    server_version = f"chat/{__version__}"
    # HTTP/1.0: one request per connection, so a shutdown never waits on idle keep-alives.
    protocol_version = "HTTP/1.0"

    _status: int | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def service(self) -> ChatService:
        server = self.server
        if not isinstance(server, ChatHTTPServer):
            raise TypeError("ChatRequestHandler must be served by a ChatHTTPServer")
        return server.service

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.service.config.request_timeout)

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access logs are written by :meth:`_dispatch`, as JSON."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        log(logging.WARNING, format % args, client=self.client_address[0])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by the base class (bad request line, unsupported method) as JSON."""
        del explain
        self.close_connection = True
        status = HTTPStatus(code)
        self._send_json(status, {"error": message or status.phrase})

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(
        self, status: HTTPStatus, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, JSON_CONTENT_TYPE, headers)

    def _routes(self) -> Mapping[str, Mapping[str, Route]]:
        return {
            "/healthz": {"GET": self._healthz},
            "/readyz": {"GET": self._readyz},
            "/version": {"GET": self._version},
            "/api/messages": {"GET": self._list_messages, "POST": self._post_message},
        }

    def _dispatch(self) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        try:
            methods = self._routes().get(path)
            route = None
            if methods is not None:
                route = methods.get("GET" if self.command == "HEAD" else self.command)
            if methods is None:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no route for {path}"})
            elif route is None:
                allow = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
                self._send_json(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    {"error": f"method {self.command} not allowed on {path}"},
                    {"Allow": allow},
                )
            else:
                route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            log(logging.DEBUG, "client disconnected", path=path)
        except Exception:
            LOGGER.exception("request failed", extra={"fields": {"path": path}})
            self.close_connection = True
            if self._status is None:
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
        finally:
            log(
                logging.DEBUG if path in PROBE_PATHS else logging.INFO,
                "request",
                method=self.command,
                path=path,
                status=self._status,
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                client=self.client_address[0],
            )

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- endpoints ---------------------------------------------------------------------------

    def _healthz(self) -> None:
        self._send(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")

    def _readyz(self) -> None:
        phase = self.service.phase
        status = HTTPStatus.OK if phase is Phase.READY else HTTPStatus.SERVICE_UNAVAILABLE
        self._send_json(status, {"status": phase.value})

    def _version(self) -> None:
        self._send_json(HTTPStatus.OK, {"name": "chat", "version": __version__})

    def _list_messages(self) -> None:
        messages = [message.to_json() for message in self.service.store.snapshot()]
        self._send_json(HTTPStatus.OK, messages)

    def _post_message(self) -> None:
        config = self.service.config
        body = self._read_body(config.max_body_bytes)
        if body is None:
            return
        if self.headers.get_content_type() != "application/json":
            self._send_json(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                {"error": "Content-Type must be application/json"},
            )
            return
        try:
            author, text = parse_message(body, config.max_message_length)
        except ValidationError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, exc.to_json())
            return
        message = self.service.store.add(author, text)
        log(logging.DEBUG, "message added", id=message.id, length=len(text))
        self._send_json(HTTPStatus.CREATED, message.to_json())

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None after an error response (411, 400, 413, 408)."""
        if "Transfer-Encoding" in self.headers or "Content-Length" not in self.headers:
            self.close_connection = True
            self._send_json(
                HTTPStatus.LENGTH_REQUIRED, {"error": "a Content-Length header is required"}
            )
            return None
        raw = self.headers["Content-Length"].strip()
        if not (raw.isascii() and raw.isdigit()):  # int() would also take '²' or ' 1_0'
            self.close_connection = True
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
            return None
        length = int(raw)
        if length > limit:
            self.close_connection = True
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body exceeds {limit} bytes", "limit": limit},
            )
            self._linger(min(length, DISCARD_LIMIT))
            return None
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "timed out reading the body"})
            return None
        if len(body) != length:
            self.close_connection = True
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "body shorter than Content-Length"})
            return None
        return body

    def _linger(self, length: int) -> None:
        """Read and drop up to ``length`` unread body bytes, briefly, before the close.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the response before the client reads it; like a web server's lingering close, keep
        reading (with a short timeout) until the client stops sending or closes.
        """
        self.connection.settimeout(LINGER_TIMEOUT)
        try:
            while length > 0:
                chunk = self.rfile.read1(min(length, 64 * 1024))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:  # includes TimeoutError
            return


# --- lifecycle ----------------------------------------------------------------------------


class Application:
    """The server and its thread: start, mark ready, drain, stop."""

    def __init__(self, config: Config, *, poll_interval: float = 0.1) -> None:
        self.config = config
        self.service = ChatService(config)
        self.poll_interval = poll_interval  # how quickly shutdown() is noticed
        self._server: ChatHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start_serving(self) -> None:
        """Bind and serve in a background thread; readiness stays 'starting'."""
        server = ChatHTTPServer((self.config.host, self.config.port), self.service)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name="chat-http",
        )
        self._thread.start()
        host, port = self.address
        log(logging.INFO, "listening", host=host, port=port, version=__version__)

    def mark_ready(self) -> None:
        self.service.set_phase(Phase.READY)

    def start(self) -> None:
        self.start_serving()
        self.mark_ready()

    def begin_draining(self) -> None:
        self.service.set_phase(Phase.DRAINING)

    def shutdown(self) -> None:
        """Stop accepting connections, wait for the requests in flight, close the socket."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()  # joins the request threads (block_on_close)
        self._server = None
        self._thread = None
        log(logging.INFO, "stopped")

    def stop(self, drain_seconds: float | None = None) -> None:
        """Drain (readiness 503) for ``drain_seconds`` (default: the config's), then stop."""
        self.begin_draining()
        time.sleep(self.config.drain_seconds if drain_seconds is None else drain_seconds)
        self.shutdown()


def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT, drain, stop; a second signal cuts the drain short."""
    # Block the signals before any thread starts (threads inherit the mask), then wait for
    # them synchronously: no code runs inside a signal handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    app = Application(config)
    try:
        app.start()
    except OSError as exc:
        log(logging.ERROR, "cannot listen", host=config.host, port=config.port, error=str(exc))
        return 1
    received = signal.sigwait(SHUTDOWN_SIGNALS)
    log(
        logging.INFO,
        "shutdown requested",
        signal=signal.Signals(received).name,
        drain_seconds=config.drain_seconds,
    )
    app.begin_draining()
    if config.drain_seconds > 0 and signal.sigtimedwait(SHUTDOWN_SIGNALS, config.drain_seconds):
        log(logging.WARNING, "second signal: skipping the rest of the drain")
    app.shutdown()
    return 0


def main() -> int:
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        configure_logging(logging.INFO)
        log(logging.ERROR, "invalid configuration", error=str(exc))
        return 2
    configure_logging(config.log_level_number)
    log(logging.INFO, "starting", version=__version__, config=asdict(config))
    return run(config)
