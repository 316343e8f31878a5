"""A content-addressed cache of steps for the local runner: Dagger's layer cache, on a host.

A step's key is what can change its result: the tool (pinned version and the binary's
identity), its argv, environment, stdin, working directory and declared outputs, the host
paths its roots resolve to (tools print them), and the digest of every file it declares as an
input. A hit restores the step's outputs into the artifacts directory and returns its result
without running the tool. Only steps that say their inputs are complete (`Step.cacheable`)
and that passed are kept: a failure, a timeout or a signal is never replayed, so an
environment problem is always retried.

Entries are written into a staging directory and renamed into place, so two runs sharing
the cache never see half an entry; the cache is bounded by size, the least recently used
entries going first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.model import Arg, Joined, Ref, Step, StepResult

FORMAT = 2  # bump when the key or the entry layout changes: old entries are then never hit
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
CACHE_LIMIT_ENV = "GITOPS_PIPELINE_CACHE_MAX_MB"
_RESULT = "result.json"
_VALUE = "value.json"  # a remembered value of in-process work (`remember`), not a step
_OUTPUTS = "outputs"
# A file changed less than this long ago may change again within its own mtime tick, unseen
# by its stat (git's "racy" files): its digest is computed afresh every time.
_SETTLED_NS = 2_000_000_000


@dataclass(frozen=True)
class StepCache:
    root: Path  # <cache dir>/steps
    max_bytes: int = DEFAULT_MAX_BYTES
    # What the cache holds, counted once and then kept up to date by this process's stores:
    # eviction walks the cache only when the bound is crossed, not on every store.
    _usage: list[int] = field(default_factory=list, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    # Digests of settled files by path and stat, for this process: a chart folder read by
    # six steps is hashed once.
    _digests: dict[tuple[str, int, int, int], str] = field(
        default_factory=dict, compare=False, repr=False
    )

    def key(self, step: Step, resolve: Callable[[Ref], Path], binary: Path) -> str:
        stat = binary.stat()
        ignored = {str(resolve(ref)) for ref in step.cache_ignores}
        described = {
            "format": FORMAT,
            "tool": step.tool,
            "binary": [str(binary), stat.st_size, stat.st_mtime_ns],
            "args": [_arg(a, resolve) for a in step.args],
            "env": [[name, _arg(value, resolve)] for name, value in step.env],
            "stdin": step.stdin,
            "workdir": str(resolve(step.workdir)),
            "outputs": list(step.outputs),
            "inputs": [
                [str(resolve(ref)), self._digest(resolve(ref), ignored)] for ref in step.inputs
            ],
            "ignored": sorted(ignored),
        }
        text = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _digest(self, path: Path, ignored: Collection[str] = ()) -> str:
        """sha256 of a file, of a directory's files (names and contents) but the `ignored`
        paths, or "absent"."""
        if path.is_file():
            return self.file_digest(path)
        if not path.is_dir():
            return "absent"
        digest = hashlib.sha256()
        for relative, file in _files(path):
            if str(file) in ignored:
                continue
            digest.update(relative.encode() + b"\0")
            digest.update(self.file_digest(file).encode() + b"\n")
        return digest.hexdigest()

    def file_digest(self, path: Path) -> str:
        """sha256 of a file's content, remembered for settled files; "absent" when missing."""
        try:
            stat = path.stat()
        except OSError:
            return "absent"
        signature = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        known = self._digests.get(signature)
        if known is not None:
            return known
        try:
            with path.open("rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError:
            return "unreadable"
        if time.time_ns() - stat.st_mtime_ns > _SETTLED_NS:
            self._digests[signature] = digest
        return digest

    def _entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def lookup(
        self, step: Step, resolve: Callable[[Ref], Path], binary: Path, out: Path
    ) -> tuple[str, StepResult | None]:
        """The step's key and `load` of it. The runner calls it on its event loop: a lookup
        takes well under a millisecond once digests are remembered, less than handing it
        to a thread and back (measured: a re-run with nothing changed 0.14 s -> 0.08 s)."""
        key = self.key(step, resolve, binary)
        return key, self.load(key, step, out)

    def load(self, key: str, step: Step, out: Path) -> StepResult | None:
        """The stored result with its outputs restored under `out`, or None on a miss."""
        entry = self._entry(key)
        try:
            data = json.loads((entry / _RESULT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or damaged: run the step and store it again
        for relative in data["outputs"]:
            stored = entry / _OUTPUTS / relative
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if stored.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(stored, target)
            else:
                shutil.copy2(stored, target)
        with contextlib.suppress(OSError):
            os.utime(entry)  # recently used: evicted last
        return StepResult(
            step=step,
            exit_code=data["exit_code"],
            stdout=data["stdout"],
            stderr=data["stderr"],
            outputs=tuple(data["outputs"]),
            duration=0.0,
            cached=True,
        )

    def store(self, key: str, result: StepResult, out: Path) -> None:
        if not result.ok or result.timed_out_after is not None:
            return

        def write(staging: Path) -> None:
            for relative in result.outputs:
                source = out / relative
                target = staging / _OUTPUTS / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target)
                else:
                    shutil.copy2(source, target)
            (staging / _RESULT).write_text(
                json.dumps(
                    {
                        "exit_code": result.exit_code,
                        "stdout": result.stdout,
                        "stderr": result.stderr,
                        "outputs": list(result.outputs),
                        "seconds": round(result.duration, 3),
                    }
                ),
                encoding="utf-8",
            )

        self._write_entry(key, write)

    def remember_key(self, kind: str, **described: Any) -> str:
        """The key of a remembered value: what the work is (`kind`) and all it depends on."""
        text = json.dumps(
            {"format": FORMAT, "remembered": kind, **described},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def recall(self, key: str) -> Any | None:
        """A value `remember` stored under `key` (from `remember_key`), or None."""
        entry = self._entry(key)
        try:
            value = json.loads((entry / _VALUE).read_text(encoding="utf-8"))["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        with contextlib.suppress(OSError):
            os.utime(entry)
        return value

    def remember(self, key: str, value: Any) -> None:
        """Keep the result of in-process work (a JSON value) as a step's result is kept."""
        text = json.dumps({"value": value})
        self._write_entry(key, lambda staging: (staging / _VALUE).write_text(text, "utf-8"))

    def _write_entry(self, key: str, write: Callable[[Path], object]) -> None:
        entry = self._entry(key)
        if entry.exists():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=entry.parent))
        try:
            write(staging)
            size = _size(staging)
            staging.rename(entry)  # atomic; another run that stored it first wins
        except OSError:
            return  # a cache that cannot be written only costs the next run time
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._added(size)

    def _added(self, size: int) -> None:
        with self._lock:
            if not self._usage:
                self._usage.append(self.usage()[1])  # once: the walk includes this entry
            else:
                self._usage[0] += size
            if self._usage[0] <= self.max_bytes:
                return
            self._usage[0] = self.evict()

    def evict(self) -> int:
        """Remove the least recently used entries until the cache fits its bound; its size."""
        entries = []
        total = 0
        for entry in _entries(self.root):
            try:
                size = _size(entry)
                entries.append((entry.stat().st_mtime, size, entry))
            except OSError:
                continue  # another run evicted it meanwhile
            total += size
        for _, size, entry in sorted(entries):
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size
        return total

    def usage(self) -> tuple[int, int]:
        """Entries and bytes in the cache."""
        entries = list(_entries(self.root))
        size = 0
        for entry in entries:
            with contextlib.suppress(OSError):  # another run evicted it meanwhile
                size += _size(entry)
        return len(entries), size

    def clear(self) -> int:
        """Remove every entry; the number removed."""
        removed = 0
        for entry in _entries(self.root):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


def _entries(root: Path) -> Iterable[Path]:
    """Complete entries: a staging directory (a dot name) is another run's, being written."""
    if not root.is_dir():
        return []
    return [
        entry
        for shard in root.iterdir()
        if shard.is_dir()
        for entry in shard.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    ]


def _size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())


def _arg(arg: Arg, resolve: Callable[[Ref], Path]) -> str:
    if isinstance(arg, Joined):
        return "".join(_arg(part, resolve) for part in arg.parts)
    return str(resolve(arg)) if isinstance(arg, Ref) else arg


def _files(root: Path) -> list[tuple[str, Path]]:
    """The files under a folder, by relative POSIX name, following links (as the tools read
    them) but never into a folder twice (a link loop)."""
    found: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path, prefix: str) -> None:
        try:
            stat = folder.stat()
            entries = list(os.scandir(folder))
        except OSError:
            return
        if (stat.st_dev, stat.st_ino) in seen:
            return
        seen.add((stat.st_dev, stat.st_ino))
        for entry in entries:
            try:
                if entry.is_dir():
                    walk(Path(entry.path), f"{prefix}{entry.name}/")
                elif entry.is_file():
                    found.append((f"{prefix}{entry.name}", Path(entry.path)))
            except OSError:
                continue

    walk(root, "")
    return sorted(found)
