"""Opening a trajectory store for a report, salvaging what still reads back from a damaged one.

A store that cannot be opened as a whole (a truncated or missing chunk) is salvaged: a temporary store
is assembled from the chunks that still read back (hard links, or copies across file systems), and the
notes name the chunks left out.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from gradflow.errors import GradflowError
from gradflow.manifest import check_inside, scalars_file
from gradflow.trajectory import MANIFEST, SCALAR_DTYPE, STREAMS, TrajectoryStore, resolve


def open_store(path: str | Path, stack: ExitStack) -> tuple[TrajectoryStore | None, list[str]]:
    """Open the store at `path` (a store or a run folder); salvage readable chunks of a damaged store.

    Returns the store (None when nothing could be read) and notes naming what is missing or left out.
    Temporary files of a salvaged store live until `stack` closes.
    """
    try:
        p = resolve(path)
    except GradflowError as e:
        return None, [f"no trajectory: {e}"]
    try:
        return TrajectoryStore.open(p), []
    except GradflowError as e:
        first = str(e)
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
        dim = int(manifest["dim"])
        streams = manifest["streams"]
        if not isinstance(streams, dict):
            raise TypeError("streams is not an object")
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as e:
        return None, [
            f"trajectory {p} is unreadable ({first}; {type(e).__name__}); re-record the run with --record"
        ]
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gradflow-report-salvage-")))
    notes = []
    for stream in STREAMS:
        kept = []
        (tmp / stream).mkdir()
        entry = streams.get(stream)
        chunks = entry.get("chunks") if isinstance(entry, dict) else None
        if not isinstance(chunks, list):
            notes.append(f"{p / MANIFEST} lists no readable chunk list for '{stream}': its rows are left out")
            chunks = []
        for c in chunks:
            if not isinstance(c, dict):
                notes.append(f"{p / MANIFEST} has a malformed '{stream}' chunk entry {c!r:.60}: left out")
                continue
            reason = _chunk_problem(p, c, dim, stream)
            if reason:
                notes.append(
                    f"{p.name}/{c.get('file')} is {reason}: its {c.get('rows')} rows of '{stream}' "
                    f"(steps {c.get('first_step')}-{c.get('last_step')}) are left out; re-record to restore them"
                )
                continue
            for rel in (c["file"], scalars_file(c)):
                _link_or_copy((p / rel).resolve(), tmp / rel)
            kept.append(c)
        streams[stream] = {"chunks": kept}
    (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    try:
        return TrajectoryStore.open(tmp), notes
    except GradflowError as e:
        return None, [
            f"trajectory {p} could not be read ({first}) nor salvaged ({e}); re-record the run with --record"
        ]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put the chunk file `src` at `dst` in the salvage store: a hard link where the file system allows, else a
    copy. Not a symlink: a store refuses chunk paths that lead outside it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _chunk_problem(store: Path, chunk: dict, dim: int, stream: str) -> str | None:
    """Why a chunk of a manifest cannot be read back (None when it reads with the listed shape)."""
    try:
        rows = int(chunk["rows"])
        scal = scalars_file(chunk)
        for rel in (chunk["file"], scal):
            check_inside(store, rel, stream)
        files = [(store / chunk["file"], (rows, dim)), (store / scal, (rows,))]
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        return "listed with a malformed manifest entry (or a path outside the store)"
    for f, shape in files:
        if not f.is_file():
            return "missing"
        try:
            a = np.load(f, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return "truncated or unreadable"
        if a.shape != shape or (len(shape) == 1 and a.dtype != SCALAR_DTYPE):
            return f"of shape {a.shape}, not {shape}"
    return None
