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
    """Relative path of the scalars file belonging to a chunk entry (TypeError when its file is no string)."""
    if not isinstance(chunk["file"], str) and not chunk.get("scalars"):
        raise TypeError(f"chunk file {chunk['file']!r} is not a string")
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


def _count(value: object, what: str, least: int) -> int:
    """`value` as an integer of at least `least` (a JSON integer, not a bool nor a float), else ValueError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} is {value!r}, not an integer")
    if value < least:
        raise ValueError(f"{what} is {value}, below {least}")
    return value


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
        dim = _count(manifest["dim"], "dim", 1)
        if manifest["dtype"] not in DTYPES:
            raise ValueError(f"dtype {manifest['dtype']!r}")
        _count(manifest["chunk_rows"], "chunk_rows", 1)
        if not isinstance(manifest["params"], list):
            raise TypeError("params is not a list")
        total = 0
        for entry in manifest["params"]:
            if not isinstance(entry, dict) or not isinstance(entry["name"], str):
                raise TypeError(f"param entry {entry!r} is not an object with a name")
            shape = entry["shape"]
            if not isinstance(shape, list):
                raise TypeError(f"param {entry['name']!r} has shape {shape!r}, not a list")
            numel = math.prod(_count(s, f"shape of param {entry['name']!r}", 0) for s in shape)
            if _count(entry["offset"], "offset", 0) != total or _count(entry["numel"], "numel", 0) != numel:
                raise ValueError(f"param {entry.get('name')!r} has inconsistent offset/numel")
            total += numel
        if total != dim:
            raise ValueError(f"params add up to {total}, dim is {dim}")
        metadata = manifest.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata is a {type(metadata).__name__}, not an object")
        if not isinstance(manifest["streams"], dict):
            raise TypeError("streams is not an object")
        for stream in STREAMS:
            chunks = manifest["streams"][stream]["chunks"]
            if not isinstance(chunks, list):
                raise TypeError(f"the chunks of {stream!r} are not a list")
            for c in chunks:
                if not isinstance(c, dict):
                    raise TypeError(f"a chunk entry of {stream!r} is a {type(c).__name__}, not an object")
                for key in ("rows", "first_step", "last_step", "first_epoch", "last_epoch"):
                    _count(c[key], f"{key} of a {stream!r} chunk", 0 if key == "rows" else -(2**63))
                if "scalars" in c and not isinstance(c["scalars"], str):
                    raise TypeError(f"scalars path {c['scalars']!r} is not a string")
                for rel in (c["file"], scalars_file(c)):
                    check_inside(p, rel, stream)
    except (KeyError, TypeError, ValueError) as exc:
        raise GradflowError(
            f"{mpath} is malformed ({exc.__class__.__name__}: {exc}): re-record"
        ) from None
    return manifest
