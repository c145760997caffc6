"""The trajectory store's on-disk schema: manifest.json (read and validated in this one place), the chunk files'
paths and .npy headers, and finding a store in a run folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.errors import GradflowError

FORMAT = "gradflow-trajectory"
VERSION = 1
MANIFEST = "manifest.json"
STREAMS = ("grads", "snapshots")
DTYPES = ("float32", "float16", "bfloat16")
SCALAR_DTYPE = np.dtype([("step", "<i8"), ("epoch", "<i8"), ("loss", "<f8"), ("lr", "<f8")])


def scalars_file(chunk: dict[str, Any]) -> str:
    """Relative path of the scalars file belonging to a chunk entry."""
    return chunk.get("scalars") or chunk["file"][: -len(".npy")] + ".scalars.npy"


def resolve(path: str | Path) -> Path:
    """Return the store folder for ``path``: a store folder or a run folder holding trajectory/."""
    p = Path(path)
    if not p.exists():
        raise GradflowError(f"{p} does not exist: pass a trajectory store folder or a run folder")
    if (p / MANIFEST).is_file():
        return p
    if (p / "trajectory" / MANIFEST).is_file():
        return p / "trajectory"
    raise GradflowError(
        f"{p} is not a trajectory store: neither {p / MANIFEST} nor {p / 'trajectory' / MANIFEST} exists "
        "(record one with gradflow.GradientRecorder)"
    )


def check_inside(store: Path, rel: object, stream: str) -> None:
    """Raise ValueError unless `rel` names a file of `stream`'s folder inside the store, reached without a
    symlink out: a manifest from elsewhere must never make the tools read or delete outside the store."""
    if not isinstance(rel, str) or "\\" in rel or "\x00" in rel:
        raise ValueError(f"chunk path {rel!r} is not a plain relative path")
    parts = rel.split("/")
    if len(parts) != 2 or parts[0] != stream or parts[1] in ("", ".", ".."):
        raise ValueError(f"chunk path {rel!r} is not a file of the store's {stream}/ folder")
    root = store.resolve()
    if not (store / rel).resolve().is_relative_to(root):
        raise ValueError(f"chunk path {rel!r} leads outside the store (a symlink?)")


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Read only the header of a .npy file: (shape, dtype, data offset)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran:
            raise ValueError("Fortran-ordered array")
        return tuple(shape), dtype, fh.tell()


def read_manifest(p: Path) -> dict[str, Any]:
    """Load manifest.json of the store folder `p` and validate its structure, types and chunk paths (a one-line
    GradflowError naming the file otherwise)."""
    mpath = p / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GradflowError(f"{mpath} is missing: {p} is not a trajectory store") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GradflowError(
            f"{mpath} cannot be parsed ({exc.__class__.__name__}: {exc}): restore it or re-record"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise GradflowError(f"{mpath} has format {fmt!r}, expected {FORMAT!r}: not a gradflow trajectory")
    if manifest.get("version") != VERSION:
        raise GradflowError(
            f"{mpath} has version {manifest.get('version')!r}; this gradflow reads version {VERSION}: "
            "upgrade gradflow or re-record"
        )
    try:
        dim = int(manifest["dim"])
        if manifest["dtype"] not in DTYPES:
            raise ValueError(f"dtype {manifest['dtype']!r}")
        int(manifest["chunk_rows"])
        total = 0
        for entry in manifest["params"]:
            if int(entry["offset"]) != total or int(entry["numel"]) != int(math.prod(entry["shape"])):
                raise ValueError(f"param {entry.get('name')!r} has inconsistent offset/numel")
            total += int(entry["numel"])
        if total != dim:
            raise ValueError(f"params add up to {total}, dim is {dim}")
        manifest.setdefault("metadata", {})
        for stream in STREAMS:
            for c in manifest["streams"][stream]["chunks"]:
                for key in ("file", "rows", "first_step", "last_step", "first_epoch", "last_epoch"):
                    c[key]  # noqa: B018 - presence check
                for rel in (c["file"], scalars_file(c)):
                    check_inside(p, rel, stream)
    except (KeyError, TypeError, ValueError) as exc:
        raise GradflowError(
            f"{mpath} is malformed ({exc.__class__.__name__}: {exc}): re-record"
        ) from None
    return manifest
