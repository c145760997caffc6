"""Atomic file writes: write to a temporary file next to the target, then rename it over the target.

The one implementation used by gradflow (trajectory chunks, manifests, bases) and by subpt (run folders,
feature caches, reports). A reader sees the old file or the new one, never a torn one; a crash leaves at
most a temporary file whose name holds `TMP_MARK`, which the trajectory store removes when it reopens.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"


def fsync_dir(folder: str | Path) -> None:
    """Flush a directory entry (a rename) to disk where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, fsync: bool = False, mkdir: bool = False,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path` for writing; on a clean exit it replaces `path` (os.replace).

    `fsync` flushes the file's content to disk before the rename; `mkdir` creates the folder first. On an
    error the temporary file is removed and `path` is left as it was. The file gets the default permissions
    (0666 less the umask).
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes: mode must contain 'w', got {mode!r}")
    p = Path(path)
    if mkdir:
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    if "b" in mode:
        encoding = None
    elif encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode.replace("w", "x"), encoding=encoding) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False, mkdir: bool = False) -> Path:
    """Replace the text file `path` atomically (UTF-8); returns the path."""
    with atomic_open(path, "w", fsync=fsync, mkdir=mkdir) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, fsync: bool = False, mkdir: bool = False,
                      **dumps: Any) -> Path:
    """Replace the JSON file `path` atomically with `json.dumps(obj, **dumps)` and a final newline."""
    return atomic_write_text(path, json.dumps(obj, **dumps) + "\n", fsync=fsync, mkdir=mkdir)


def atomic_torch_save(obj: Any, path: str | Path, *, fsync: bool = False, mkdir: bool = False) -> Path:
    """`torch.save(obj)` to `path` atomically; returns the path."""
    import torch

    with atomic_open(path, "wb", fsync=fsync, mkdir=mkdir) as fh:
        torch.save(obj, fh)
    return Path(path)
