"""What a run of ours wrote into the artifacts directory, so the next run removes only that.

A report left from an earlier run (the `prd` render of a run that now checks `dev` only)
would read as this run's; a file someone else put there is not ours to delete. The
manifest lists the files the last run added; the next run removes exactly those before it
starts, and everything else in the directory stays as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = ".gitops-pipeline-manifest.json"
KEPT = (".cache",)  # caches survive runs on purpose


@dataclass(frozen=True)
class Ledger:
    out: Path
    foreign: frozenset[str]  # files that were there before this run and are not ours

    def finish(self) -> None:
        """Record what this run left in the directory, other than what was there before."""
        if not self.out.is_dir():
            return  # the verb wrote no artifacts (version, changelog)
        ours = sorted(_files(self.out) - self.foreign - {MANIFEST})
        staging = self.out / f"{MANIFEST}.partial"
        staging.write_text(json.dumps({"files": ours}, indent=1) + "\n", encoding="utf-8")
        staging.replace(self.out / MANIFEST)


def begin(out: Path) -> Ledger:
    """Remove the files the previous run of ours wrote; remember everything else."""
    if not out.is_dir():
        return Ledger(out, frozenset())
    root = out.resolve()
    for relative in _previous(out):
        path = (out / relative).resolve()
        if root in path.parents and path.is_file():  # never outside, never a folder
            path.unlink()
            _remove_emptied_parents(path.parent, root)
    return Ledger(out, frozenset(_files(out)))


def _previous(out: Path) -> list[str]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return []  # no manifest, or not one of ours: remove nothing
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _files(out: Path) -> set[str]:
    found: set[str] = set()
    for directory, subdirs, names in os.walk(out):
        relative = Path(directory).relative_to(out)
        if relative == Path():
            subdirs[:] = [d for d in subdirs if d not in KEPT]
        found.update((relative / name).as_posix() for name in names)
    return found


def _remove_emptied_parents(directory: Path, root: Path) -> None:
    """The folders a removed file leaves empty (rendered/<chart>), up to the root."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()  # only succeeds when empty: someone else's file keeps it
        except OSError:
            return
        directory = directory.parent
