"""`python -m chat` as a process: JSON logs on stdout, SIGTERM drains then exits 0."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from support import request

SRC = Path(__file__).resolve().parent.parent / "src"


class Process:
    """A `python -m chat` child whose stdout lines are parsed as JSON in the background."""

    def __init__(self, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in {"PORT", "LOG_LEVEL"}}
        environ.update({"PYTHONPATH": str(SRC), "HOST": "127.0.0.1", "PORT": "0"})
        environ.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chat"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.entries: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, message: str, timeout: float = 5.0) -> dict[str, Any]:
        """Read log entries until one has `message`; every line must be a JSON object."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                pytest.fail(f"exited before logging {message!r}: {self.entries}")
            entry = json.loads(line)
            assert isinstance(entry, dict)
            self.entries.append(entry)
            if entry["message"] == message:
                return entry

    def messages(self) -> list[str]:
        return [str(entry["message"]) for entry in self.entries]

    def finish(self, timeout: float = 5.0) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.entries.append(json.loads(line))
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn() -> Iterator[type[Process]]:
    processes: list[Process] = []

    class Tracked(Process):
        def __init__(self, **env: str) -> None:
            super().__init__(**env)
            processes.append(self)

    yield Tracked
    for process in processes:
        process.close()


def test_sigterm_drains_then_exits_zero(spawn: type[Process]) -> None:
    proc = spawn(CHAT_DRAIN_SECONDS="0.3", LOG_LEVEL="debug")
    listening = proc.wait_for("listening")
    url = f"http://127.0.0.1:{listening['port']}"
    proc.wait_for("phase changed")
    assert request(url, "/readyz").status == 200
    assert proc.wait_for("request")["path"] == "/readyz"  # probes log at debug

    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait_for("shutdown requested")["signal"] == "SIGTERM"
    assert proc.wait_for("phase changed")["phase"] == "draining"
    assert request(url, "/readyz").status == 503
    assert proc.finish() == 0
    assert proc.messages()[-1] == "stopped"
    assert proc.entries[0]["message"] == "starting"
    assert proc.entries[0]["config"]["drain_seconds"] == 0.3


def test_second_signal_skips_the_drain(spawn: type[Process]) -> None:
    proc = spawn(CHAT_DRAIN_SECONDS="60")
    proc.wait_for("listening")
    proc.wait_for("phase changed")
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for("shutdown requested")
    proc.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.finish() == 0
    assert time.monotonic() - started < 3
    assert "second signal: skipping the rest of the drain" in proc.messages()


def test_invalid_configuration_exits_2(spawn: type[Process]) -> None:
    proc = spawn(PORT="http")
    entry = proc.wait_for("invalid configuration")
    assert "PORT" in entry["error"]
    assert entry["level"] == "error"
    assert proc.finish() == 2


def test_port_in_use_exits_1(spawn: type[Process]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        proc = spawn(PORT=str(blocker.getsockname()[1]))
        assert proc.wait_for("cannot listen")["level"] == "error"
        assert proc.finish() == 1
