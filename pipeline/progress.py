"""What a person sees while steps run: a live display on a terminal, plain lines in a log.

Each display is a step observer (`pipeline.runners.observed`) writing to stderr, so stdout
keeps the verb's own output. It shows step names only, never argv: an argument may hold
what a step's secrets protect. rich is imported only when a live display is used.
"""

from __future__ import annotations

import enum
import io
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

from pipeline.labels import StepLabel, step_label

if TYPE_CHECKING:
    from rich.console import RenderableType

    from pipeline.model import Step, StepResult


class ProgressMode(enum.Enum):
    AUTO = "auto"  # live on a terminal, plain lines otherwise
    LIVE = "live"
    PLAIN = "plain"
    NONE = "none"


def step_outcome(result: StepResult | None) -> str:
    if result is None:
        return "stopped"
    if result.ok:
        return "cached" if result.cached else "ok"
    if result.timed_out_after is not None:
        return f"timed out after {elapsed_text(result.timed_out_after)}"
    signal_name = result.signal_name
    return f"killed by {signal_name}" if signal_name else f"exit {result.exit_code}"


def elapsed_text(seconds: float) -> str:
    minute = 60
    if seconds < minute:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), minute)
    return f"{minutes}m{rest:02d}s"


def resolve_mode(
    requested: ProgressMode, *, quiet: bool, terminal: bool, engine_logs: bool
) -> ProgressMode:
    """The display to use. `engine_logs`: something else writes to stderr meanwhile (Dagger)."""
    if quiet:
        return ProgressMode.NONE
    if requested is not ProgressMode.AUTO:
        return requested
    return ProgressMode.LIVE if terminal and not engine_logs else ProgressMode.PLAIN


def is_terminal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    return stream.isatty() and environ.get("TERM", "") != "dumb"


def colour_wanted(no_color_flag: bool, environ: Mapping[str, str]) -> bool:
    # https://no-color.org: set and not empty means no colour, whatever its value.
    return not no_color_flag and not environ.get("NO_COLOR")


@dataclass
class _Running:
    step: Step
    label: StepLabel
    started: float


@dataclass
class Tally:
    """Steps started and finished so far; stages add steps as they go, so no total is known."""

    started_at: float = field(default_factory=time.monotonic)
    running: list[_Running] = field(default_factory=list)
    started: int = 0
    done: int = 0

    def start(self, step: Step, label: StepLabel) -> None:
        self.running.append(_Running(step, label, time.monotonic()))
        self.started += 1

    def finish(self, step: Step) -> tuple[StepLabel, float]:
        """The step's label and the seconds since it started."""
        entry = next(r for r in self.running if r.step is step)
        self.running.remove(entry)
        self.done += 1
        return entry.label, time.monotonic() - entry.started

    def counts(self) -> str:
        return f"{self.done}/{self.started}"


class Display(Protocol):
    def started(self, step: Step) -> None: ...

    def finished(self, step: Step, result: StepResult | None) -> None: ...

    def close(self) -> None: ...


_ANSI = {"ok": "\x1b[32m", "failed": "\x1b[31m"}
_RESET = "\x1b[0m"


class PlainDisplay:
    """One line per finished step, with its duration: for logs and `--progress plain`."""

    def __init__(self, verb: str, stream: TextIO, *, colour: bool) -> None:
        self._verb = verb
        self._stream = stream
        self._colour = colour
        self._tally = Tally()

    def started(self, step: Step) -> None:
        self._tally.start(step, step_label(step, self._verb))

    def finished(self, step: Step, result: StepResult | None) -> None:
        label, seconds = self._tally.finish(step)
        outcome = step_outcome(result)
        if self._colour:
            outcome = f"{_ANSI['ok' if outcome == 'ok' else 'failed']}{outcome}{_RESET}"
        self._stream.write(
            f"[{self._tally.counts()}] {label}: {outcome} in {elapsed_text(seconds)}\n"
        )
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class LiveDisplay:
    """Every running step with its elapsed time under a done/started count, redrawn in place;
    finished steps scroll above it."""

    def __init__(self, verb: str, stream: TextIO, *, colour: bool) -> None:
        from rich.console import Console  # noqa: PLC0415 - a live display is the only user
        from rich.live import Live  # noqa: PLC0415

        self._verb = verb
        self._tally = Tally()
        self._lock = threading.Lock()  # rich redraws from a thread of its own
        self._console = Console(
            file=stream, force_terminal=True, no_color=not colour, highlight=False
        )
        # stderr written meanwhile (a warning) goes above the display instead of through it.
        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start()
        self._closed = False

    def _render(self) -> RenderableType:
        from rich.text import Text  # noqa: PLC0415

        now = time.monotonic()
        with self._lock:
            tally = self._tally
            running = [(str(r.label), now - r.started) for r in tally.running]
            header = (
                f"{self._verb}: {tally.counts()} steps done, {len(running)} running, "
                f"{elapsed_text(now - tally.started_at)}"
            )
        text = Text(header, style="bold")
        for label, seconds in running:
            text.append("\n  running  ", style="yellow")
            text.append(f"{label}  {elapsed_text(seconds)}")
        return text

    def started(self, step: Step) -> None:
        with self._lock:
            self._tally.start(step, step_label(step, self._verb))

    def finished(self, step: Step, result: StepResult | None) -> None:
        from rich.text import Text  # noqa: PLC0415

        with self._lock:
            label, seconds = self._tally.finish(step)
            counts = self._tally.counts()
        outcome = step_outcome(result)
        line = Text(f"[{counts}] {label}: ")
        line.append(outcome, style="green" if outcome == "ok" else "red")
        line.append(f" in {elapsed_text(seconds)}")
        self._live.console.print(line)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()


def open_display(mode: ProgressMode, verb: str, stream: TextIO, *, colour: bool) -> Display | None:
    if mode is ProgressMode.LIVE:
        return LiveDisplay(verb, stream, colour=colour)
    if mode is ProgressMode.PLAIN:
        return PlainDisplay(verb, stream, colour=colour and is_terminal(stream, os.environ))
    return None


class ClosesOnWrite(io.TextIOBase):
    """A stream that calls `close_first` before its first write: the live display must end
    before the verb's own output is written below it, or the next redraw would erase it."""

    def __init__(self, stream: TextIO, close_first: Callable[[], None]) -> None:
        super().__init__()
        self._stream = stream
        self._close_first = close_first

    def write(self, text: str) -> int:
        self._close_first()
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()
