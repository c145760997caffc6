"""On-disk trajectory store: append-only, crash-safe, chunked, memory-mapped on read.

Layout of a store folder::

    manifest.json                      format, params, dim, dtype, chunk list per stream
    grads/chunk_000000.npy             (rows, dim) data in the storage dtype
    grads/chunk_000000.scalars.npy     structured array: step, epoch, loss, lr
    snapshots/...                      same for parameter snapshots

A chunk is written to a temporary name, fsync'd and renamed; the manifest is replaced atomically
only after that, so a process killed at any moment leaves a readable store that lacks at most the
rows still buffered in memory.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradflow.atomic import TMP_MARK, atomic_open, atomic_write_json, fsync_dir
from gradflow.errors import GradflowError
from gradflow.manifest import (  # noqa: F401 - the store's schema, re-exported
    DTYPES,
    FORMAT,
    MANIFEST,
    SCALAR_DTYPE,
    STREAMS,
    VERSION,
    npy_header,
    read_manifest,
    resolve,
    scalars_file,
)

_NP_STORAGE = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
_TORCH_STORAGE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CHUNK_RE = re.compile(r"^chunk_(\d{6,})\.npy$")
MAX_BUFFER_BYTES = 1 << 30  # one chunk buffer in memory (two while a chunk is being written)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a fsync'd temporary file and a rename."""
    with atomic_open(path, "wb", fsync=True) as fh:
        np.save(fh, array, allow_pickle=False)


def _atomic_write_json(path: Path, obj: Any) -> None:
    """Replace the JSON file ``path`` atomically (tmp + fsync + os.replace)."""
    atomic_write_json(path, obj, fsync=True, indent=1)
    fsync_dir(path.parent)


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Convert raw bfloat16 bit patterns (uint16) to float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _to_f32(block: np.ndarray, dtype: str) -> np.ndarray:
    """Convert a stored block to a float32 ndarray (copying out of any memory map)."""
    if dtype == "bfloat16":
        return _bf16_bits_to_f32(np.asarray(block))
    return np.array(block, dtype=np.float32)


class TrajectoryStore:
    """A folder of chunked per-step rows ("grads") and parameter snapshots ("snapshots")."""

    def __init__(self, path: Path, manifest: dict[str, Any], mode: str) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self.path = Path(path)
        self.mode = mode
        self._manifest = manifest
        self._dim = int(manifest["dim"])
        self._dtype = str(manifest["dtype"])
        self._chunk_rows = int(manifest["chunk_rows"])
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._closed = False
        self._buffers: dict[str, dict[str, Any] | None] = {}
        self._spare: list[dict[str, Any]] = []
        self._last: dict[str, tuple[int, int] | None] = {}
        for stream in STREAMS:
            chunks = manifest["streams"][stream]["chunks"]
            self._last[stream] = (
                (int(chunks[-1]["last_step"]), int(chunks[-1]["last_epoch"])) if chunks else None
            )

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(
        cls,
        path: str | Path,
        params: Sequence[tuple[str, tuple[int, ...]]],
        dtype: str = "float32",
        chunk_rows: int = 256,
        metadata: dict[str, Any] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TrajectoryStore:
        """Create a new store at ``path`` (or, with ``exist_ok``, open a matching one for append)."""
        p = Path(path)
        if dtype not in DTYPES:
            raise GradflowError(f"dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)}")
        if int(chunk_rows) < 1:
            raise GradflowError(f"chunk_rows must be >= 1, got {chunk_rows}")
        entries = []
        offset = 0
        seen: set[str] = set()
        for name, shape in params:
            if name in seen:
                raise GradflowError(f"parameter name {name!r} appears twice: names must be unique")
            seen.add(name)
            shape = tuple(int(s) for s in shape)
            numel = int(math.prod(shape))
            entries.append({"name": str(name), "shape": list(shape), "numel": numel, "offset": offset})
            offset += numel
        if not entries or offset == 0:
            raise GradflowError("a trajectory store needs at least one parameter with at least one element")
        buffer_bytes = int(chunk_rows) * offset * _NP_STORAGE[dtype].itemsize
        if buffer_bytes > MAX_BUFFER_BYTES:
            fit = max(1, MAX_BUFFER_BYTES // (offset * _NP_STORAGE[dtype].itemsize))
            raise GradflowError(
                f"chunk_rows={chunk_rows} x dim {offset} {dtype} needs a {buffer_bytes / 2**20:.0f} MiB buffer "
                f"(limit {MAX_BUFFER_BYTES // 2**20} MiB): use chunk_rows <= {fit}"
            )
        if metadata is not None:
            try:
                json.dumps(metadata)
            except (TypeError, ValueError) as exc:
                raise GradflowError(f"store metadata must be JSON-serialisable: {exc}") from None
        if (p / MANIFEST).exists():
            if not exist_ok:
                raise GradflowError(
                    f"a trajectory store already exists at {p}: open it with TrajectoryStore.open(path, 'a'), "
                    "pass exist_ok=True to append, or choose another folder"
                )
            store = cls.open(p, mode="a")
            store._check_params(entries, dtype)
            if metadata:
                store._manifest["metadata"].update(metadata)
                store._write_manifest()
            return store
        p.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "params": entries,
            "dim": offset,
            "dtype": dtype,
            "chunk_rows": int(chunk_rows),
            "metadata": dict(metadata or {}),
            "streams": {s: {"chunks": []} for s in STREAMS},
        }
        for stream in STREAMS:
            (p / stream).mkdir(exist_ok=True)
        _atomic_write_json(p / MANIFEST, manifest)
        return cls(p, manifest, "a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> TrajectoryStore:
        """Open an existing store (``mode`` "r" to read, "a" to append); validates every chunk."""
        if mode not in ("r", "a"):
            raise GradflowError(f"mode must be 'r' or 'a', got {mode!r}")
        p = resolve(path)
        manifest = read_manifest(p)
        store = cls(p, manifest, mode)
        store._validate_chunks()
        if mode == "a":
            store._clean_strays()
        return store

    def _validate_chunks(self) -> None:
        """Check that every listed chunk file exists and has the shape and dtype in the manifest."""
        storage = _NP_STORAGE[self._dtype]
        for stream in STREAMS:
            for c in self._manifest["streams"][stream]["chunks"]:
                rows = int(c["rows"])
                self._check_npy(c["file"], (rows, self._dim), storage, stream)
                self._check_npy(scalars_file(c), (rows,), SCALAR_DTYPE, stream)

    def _check_npy(self, rel: str, shape: tuple[int, ...], dtype: np.dtype, stream: str) -> None:
        """Raise a GradflowError if the .npy file ``rel`` is missing, truncated or of another shape."""
        f = self.path / rel
        shown = f"{self.path.name}/{rel}"
        fix = f"delete it and its entry in {self.path / MANIFEST} (or truncate the '{stream}' stream), or re-record"
        if not f.is_file():
            raise GradflowError(f"{shown} is missing (listed in the manifest): {fix}")
        expect = " x ".join(str(s) for s in shape)
        try:
            got_shape, got_dtype, offset = npy_header(f)
        except (OSError, ValueError, SyntaxError) as exc:
            raise GradflowError(f"{shown} is not a readable .npy file ({exc}): {fix}") from None
        if got_shape != shape or got_dtype != dtype:
            raise GradflowError(
                f"{shown} has shape {got_shape} {got_dtype}, the manifest expects {expect} {dtype}: {fix}"
            )
        need = offset + int(math.prod(shape)) * dtype.itemsize
        if f.stat().st_size < need:
            what = f"{shape[0]} rows x {shape[1]}" if len(shape) > 1 else f"{shape[0]} rows of scalars"
            raise GradflowError(f"{shown} is truncated (expected {what}): {fix}")

    def _clean_strays(self) -> None:
        """Remove temporary files and chunk files that the manifest does not list (killed writes)."""
        listed = set()
        for stream in STREAMS:
            for c in self._manifest["streams"][stream]["chunks"]:
                listed.add(c["file"])
                listed.add(scalars_file(c))
        for name in os.listdir(self.path):
            if TMP_MARK in name and name.startswith(MANIFEST):
                (self.path / name).unlink(missing_ok=True)
        for stream in STREAMS:
            folder = self.path / stream
            if folder.is_symlink():
                raise GradflowError(f"{folder} is a symlink: a store's stream folders must lie inside it; re-record")
            if not folder.is_dir():
                folder.mkdir()
                continue
            for name in os.listdir(folder):
                rel = f"{stream}/{name}"
                if TMP_MARK in name or (name.startswith("chunk_") and rel not in listed):
                    (folder / name).unlink(missing_ok=True)

    def _check_params(self, entries: list[dict[str, Any]], dtype: str) -> None:
        """Raise if an existing store was recorded for other parameters or another dtype."""
        have = [(e["name"], list(e["shape"])) for e in self._manifest["params"]]
        want = [(e["name"], list(e["shape"])) for e in entries]
        if have != want:
            raise GradflowError(
                f"the store at {self.path} holds parameters {have}, the recorder has {want}: "
                "use a new folder for a different model"
            )
        if dtype != self._dtype:
            raise GradflowError(
                f"the store at {self.path} stores {self._dtype}, asked for {dtype}: use dtype={self._dtype!r}"
            )

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Row length D: the sum of the parameters' numels."""
        return self._dim

    @property
    def dtype(self) -> str:
        """Storage dtype name: float32, float16 or bfloat16."""
        return self._dtype

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk file."""
        return self._chunk_rows

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form JSON metadata stored in the manifest (a copy)."""
        return json.loads(json.dumps(self._manifest.get("metadata", {})))

    @property
    def params(self) -> list[dict[str, Any]]:
        """Parameter entries (name, shape, numel, offset) in row order (a copy)."""
        return [dict(e) for e in self._manifest["params"]]

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest as last written."""
        with self._lock:
            return json.loads(json.dumps(self._manifest))

    def param_slices(self) -> dict[str, slice]:
        """Map each parameter name to its slice of a row."""
        return {e["name"]: slice(e["offset"], e["offset"] + e["numel"]) for e in self._manifest["params"]}

    def columns(self, param: str | None) -> slice:
        """The slice of a row holding parameter ``param`` (None: the whole row); an unknown name is a GradflowError."""
        if param is None:
            return slice(0, self._dim)
        slices = self.param_slices()
        if param not in slices:
            raise GradflowError(f"--param {param!r}: the store at {self.path} records {', '.join(slices)}")
        return slices[param]

    def param_dim(self, param: str | None) -> int:
        """The number of values of ``param`` in a row (None: the row length D)."""
        sl = self.columns(param)
        return sl.stop - sl.start

    # ------------------------------------------------------------------ writing
    def _check_stream(self, stream: str) -> None:
        """Raise unless ``stream`` is a known stream name."""
        if stream not in STREAMS:
            raise GradflowError(f"unknown stream {stream!r}: use one of {', '.join(STREAMS)}")

    def _require_writable(self) -> None:
        """Raise unless the store is open for append."""
        if self._closed:
            raise GradflowError(f"the trajectory store at {self.path} is closed")
        if self.mode != "a":
            raise GradflowError(
                f"the trajectory store at {self.path} is open read-only: open it with mode='a'"
            )

    def _new_buffer(self) -> dict[str, Any]:
        """Return an empty row buffer (recycled if possible) with a torch view for casting copies."""
        with self._lock:
            if self._spare:
                return self._spare.pop()
        data = np.empty((self._chunk_rows, self._dim), dtype=_NP_STORAGE[self._dtype])
        data.fill(0)  # touch the pages now, not one page fault at a time inside append()
        if self._dtype == "bfloat16":
            view = torch.from_numpy(data.view(np.int16)).view(torch.bfloat16)
        else:
            view = torch.from_numpy(data)
        return {
            "data": data,
            "rows": list(view.unbind(0)),  # per-row views: list indexing is cheaper than tensor indexing
            "scalars": np.empty(self._chunk_rows, SCALAR_DTYPE),
            "n": 0,
        }

    def _buffer(self, stream: str) -> dict[str, Any]:
        """The current buffer of ``stream`` (allocated lazily)."""
        buf = self._buffers.get(stream)
        if buf is None:
            buf = self._buffers[stream] = self._new_buffer()
        return buf

    def last_step(self, stream: str) -> int | None:
        """The last step appended to ``stream`` (on disk or buffered), or None if it is empty."""
        self._check_stream(stream)
        last = self._last[stream]
        return None if last is None else last[0]

    def append(
        self,
        stream: str,
        row: torch.Tensor | np.ndarray,
        step: int,
        epoch: int,
        loss: float = math.nan,
        lr: float = math.nan,
    ) -> None:
        """Buffer one row of length D; a full buffer is written as a chunk."""
        self._check_stream(stream)
        self._require_writable()
        self._raise_writer_error()
        step, epoch = int(step), int(epoch)
        last = self._last[stream]
        if last is not None and step <= last[0]:
            raise GradflowError(
                f"step {step} is not after the last stored step {last[0]} of '{stream}' in {self.path}: "
                "steps must increase (call truncate(stream, last_step) when resuming from a checkpoint)"
            )
        if last is not None and epoch < last[1]:
            raise GradflowError(
                f"epoch {epoch} at step {step} is before the last stored epoch {last[1]} of '{stream}': "
                "epochs must not decrease"
            )
        buf = self._buffer(stream)
        i = buf["n"]
        target = buf["rows"][i]
        if isinstance(row, torch.Tensor):
            src = row.detach().reshape(-1)
        else:
            src = torch.from_numpy(np.ascontiguousarray(row).reshape(-1))
        if src.numel() != self._dim:
            raise GradflowError(
                f"row has {src.numel()} values, the store at {self.path} expects dim {self._dim}"
            )
        target.copy_(src)
        buf["scalars"][i] = (step, epoch, math.nan if loss is None else loss, math.nan if lr is None else lr)
        buf["n"] = i + 1
        self._last[stream] = (step, epoch)
        if buf["n"] == self._chunk_rows:
            self._buffers[stream] = None
            self._submit(stream, buf)

    def _submit(self, stream: str, buf: dict[str, Any]) -> None:
        """Write a full buffer on a background thread (at most one write in flight)."""
        self._wait_writer()
        thread = threading.Thread(target=self._write_guarded, args=(stream, buf), daemon=False)
        self._writer = thread
        thread.start()

    def _write_guarded(self, stream: str, buf: dict[str, Any]) -> None:
        """Background-thread body: write a chunk and remember any error for the caller."""
        try:
            self._write_chunk(stream, buf["data"][: buf["n"]], buf["scalars"][: buf["n"]])
        except BaseException as exc:  # re-raised on the caller's thread
            self._writer_error = exc
        finally:
            buf["n"] = 0
            with self._lock:
                self._spare.append(buf)

    def _wait_writer(self) -> None:
        """Block until the background write (if any) has finished, then re-raise its error."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self._raise_writer_error()

    def _raise_writer_error(self) -> None:
        """Re-raise an error from the background writer once."""
        if self._writer_error is not None:
            exc, self._writer_error = self._writer_error, None
            if isinstance(exc, GradflowError):
                raise exc
            raise GradflowError(
                f"writing a chunk to {self.path} failed: {exc.__class__.__name__}: {exc}"
            ) from exc

    def _next_index(self) -> int:
        """Index for a new chunk file: one past the highest listed in any stream."""
        best = -1
        for stream in STREAMS:
            for c in self._manifest["streams"][stream]["chunks"]:
                m = _CHUNK_RE.match(Path(c["file"]).name)
                if m:
                    best = max(best, int(m.group(1)))
        return best + 1

    def _write_chunk_files(self, stream: str, data: np.ndarray, scalars: np.ndarray) -> dict[str, Any]:
        """Write data and scalars files atomically and return the manifest entry for them."""
        with self._lock:
            idx = self._next_index()  # writes are serialised: no other writer can take idx
        name = f"chunk_{idx:06d}"
        folder = self.path / stream
        folder.mkdir(exist_ok=True)
        _atomic_save_npy(folder / f"{name}.npy", np.ascontiguousarray(data))
        _atomic_save_npy(folder / f"{name}.scalars.npy", np.ascontiguousarray(scalars))
        fsync_dir(folder)
        return {
            "file": f"{stream}/{name}.npy",
            "scalars": f"{stream}/{name}.scalars.npy",
            "rows": int(len(scalars)),
            "first_step": int(scalars["step"][0]),
            "last_step": int(scalars["step"][-1]),
            "first_epoch": int(scalars["epoch"][0]),
            "last_epoch": int(scalars["epoch"][-1]),
        }

    def _write_chunk(self, stream: str, data: np.ndarray, scalars: np.ndarray) -> None:
        """Write one chunk, then publish it in the manifest."""
        entry = self._write_chunk_files(stream, data, scalars)
        with self._lock:
            self._manifest["streams"][stream]["chunks"].append(entry)
            self._write_manifest_locked()

    def _write_manifest(self) -> None:
        """Rewrite manifest.json atomically."""
        with self._lock:
            self._write_manifest_locked()

    def _write_manifest_locked(self) -> None:
        """Rewrite manifest.json atomically; the caller holds the lock."""
        _atomic_write_json(self.path / MANIFEST, self._manifest)

    def flush(self) -> None:
        """Write every buffered row to disk (partial chunks included) and wait for the writer."""
        if self.mode != "a" or self._closed:
            return
        self._wait_writer()
        for stream in STREAMS:
            buf = self._buffers.get(stream)
            if buf is not None and buf["n"] > 0:
                self._write_chunk(stream, buf["data"][: buf["n"]], buf["scalars"][: buf["n"]])
                buf["n"] = 0

    def close(self) -> None:
        """Flush and close the store; further appends raise."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._buffers.clear()

    def __enter__(self) -> TrajectoryStore:
        """Context manager: returns the store."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: close (flush) the store."""
        self.close()

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the manifest's free-form metadata and rewrite the manifest."""
        self._require_writable()
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise GradflowError(f"store metadata must be JSON-serialisable: {exc}") from None
        with self._lock:
            self._manifest["metadata"].update(metadata)
            self._write_manifest_locked()

    def truncate(self, stream: str, last_step: int) -> None:
        """Drop every row of ``stream`` with step > ``last_step`` (on disk and in the buffer)."""
        self._check_stream(stream)
        self._require_writable()
        self._wait_writer()
        last_step = int(last_step)
        buf = self._buffers.get(stream)
        if buf is not None and buf["n"] > 0:
            keep = int(np.searchsorted(buf["scalars"]["step"][: buf["n"]], last_step, side="right"))
            buf["n"] = keep
        chunks = self._manifest["streams"][stream]["chunks"]
        kept: list[dict[str, Any]] = []
        doomed: list[dict[str, Any]] = []
        for c in chunks:
            if int(c["last_step"]) <= last_step:
                kept.append(c)
            elif int(c["first_step"]) > last_step:
                doomed.append(c)
            else:
                data = np.load(self.path / c["file"], mmap_mode="r")
                sc = np.load(self.path / scalars_file(c), mmap_mode="r")
                n = int(np.searchsorted(sc["step"], last_step, side="right"))
                entry = self._write_chunk_files(stream, np.array(data[:n]), np.array(sc[:n]))
                del data, sc
                kept.append(entry)
                doomed.append(c)
        if not doomed:
            self._refresh_last(stream)
            return
        with self._lock:
            self._manifest["streams"][stream]["chunks"] = kept
            self._write_manifest_locked()
        for c in doomed:
            (self.path / c["file"]).unlink(missing_ok=True)
            (self.path / scalars_file(c)).unlink(missing_ok=True)
        self._refresh_last(stream)

    def _refresh_last(self, stream: str) -> None:
        """Recompute the last (step, epoch) of ``stream`` from buffer and manifest."""
        buf = self._buffers.get(stream)
        if buf is not None and buf["n"] > 0:
            s = buf["scalars"][buf["n"] - 1]
            self._last[stream] = (int(s["step"]), int(s["epoch"]))
            return
        chunks = self._manifest["streams"][stream]["chunks"]
        self._last[stream] = (int(chunks[-1]["last_step"]), int(chunks[-1]["last_epoch"])) if chunks else None

    # ------------------------------------------------------------------ reading
    def _chunks(self, stream: str) -> list[dict[str, Any]]:
        """The manifest's chunk entries of ``stream`` (a snapshot of the list)."""
        self._check_stream(stream)
        with self._lock:
            return list(self._manifest["streams"][stream]["chunks"])

    @staticmethod
    def _check_window(name: str, window: tuple[int, int] | None) -> tuple[int, int] | None:
        """Validate an inclusive (lo, hi) window."""
        if window is None:
            return None
        try:
            lo, hi = int(window[0]), int(window[1])
        except (TypeError, ValueError, IndexError):
            raise GradflowError(
                f"{name} window must be a pair (lo, hi) of integers, got {window!r}"
            ) from None
        return lo, hi

    def _selected(
        self, stream: str, steps: tuple[int, int] | None, epochs: tuple[int, int] | None
    ) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """Yield (chunk entry, boolean row mask) for chunks overlapping both windows."""
        steps = self._check_window("steps", steps)
        epochs = self._check_window("epochs", epochs)
        for c in self._chunks(stream):
            if steps and (int(c["last_step"]) < steps[0] or int(c["first_step"]) > steps[1]):
                continue
            if epochs and (int(c["last_epoch"]) < epochs[0] or int(c["first_epoch"]) > epochs[1]):
                continue
            sc = self._load(scalars_file(c), stream)
            mask = np.ones(len(sc), dtype=bool)
            if steps:
                mask &= (sc["step"] >= steps[0]) & (sc["step"] <= steps[1])
            if epochs:
                mask &= (sc["epoch"] >= epochs[0]) & (sc["epoch"] <= epochs[1])
            if mask.any():
                yield c, mask

    def _load(self, rel: str, stream: str) -> np.ndarray:
        """Memory-map one .npy file of the store, turning I/O failures into GradflowError."""
        try:
            return np.load(self.path / rel, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise GradflowError(
                f"{self.path.name}/{rel} cannot be read ({exc}): delete it and its entry in "
                f"{self.path / MANIFEST} (or truncate the '{stream}' stream), or re-record"
            ) from None

    def num_rows(self, stream: str) -> int:
        """Number of rows of ``stream`` on disk (buffered rows are not counted until flushed)."""
        return sum(int(c["rows"]) for c in self._chunks(stream))

    def scalars(
        self, stream: str, steps: tuple[int, int] | None = None, epochs: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """Per-row step, epoch, loss and lr of ``stream`` (optionally restricted to a window)."""
        parts = [
            np.asarray(self._load(scalars_file(c), stream))[m]
            for c, m in self._selected(stream, steps, epochs)
        ]
        sc = np.concatenate(parts) if parts else np.empty(0, SCALAR_DTYPE)
        return {name: np.array(sc[name]) for name in SCALAR_DTYPE.names}

    def iter_chunks(
        self,
        stream: str,
        steps: tuple[int, int] | None = None,
        epochs: tuple[int, int] | None = None,
        param: str | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield float32 blocks of rows of ``stream`` inside the (inclusive) windows, chunk by chunk; with ``param``,
        only that parameter's columns."""
        cols = self.columns(param)
        whole = param is None or (cols.start == 0 and cols.stop == self._dim)
        for c, mask in self._selected(stream, steps, epochs):
            data = self._load(c["file"], stream)
            if not whole:
                data = data[:, cols]
            block = data if mask.all() else data[mask]
            yield _to_f32(block, self._dtype)

    def rows(
        self,
        stream: str,
        steps: tuple[int, int] | None = None,
        epochs: tuple[int, int] | None = None,
        param: str | None = None,
    ) -> np.ndarray:
        """All rows of ``stream`` inside the (inclusive) windows as a float32 (n, D) array (with ``param``, only its
        columns)."""
        blocks = list(self.iter_chunks(stream, steps=steps, epochs=epochs, param=param))
        if not blocks:
            return np.empty((0, self.param_dim(param)), dtype=np.float32)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def __repr__(self) -> str:
        """Short description: path, dim, dtype and row counts."""
        counts = ", ".join(f"{s}={self.num_rows(s)}" for s in STREAMS)
        return f"TrajectoryStore({str(self.path)!r}, dim={self._dim}, dtype={self._dtype}, {counts})"
