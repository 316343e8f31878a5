"""Stopping a process started in a session of its own, with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal

import anyio
from anyio.abc import Process

from pipeline.limits import STOP_GRACE_SECONDS


async def stop_group(process: Process, stop: signal.Signals) -> None:
    """`stop` to the process group, SIGKILL after a grace period; reap the process.

    Also after the process exited by itself: anything it left running in its group goes too.
    """
    signal_group(process.pid, stop)
    if process.returncode is None:
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            await process.wait()
    signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
