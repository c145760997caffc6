"""Record per-step gradients and parameter snapshots of any torch parameters into a store."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from gradflow.errors import GradflowError
from gradflow.trajectory import TrajectoryStore


def _is_secondary_rank() -> bool:
    """True when torch.distributed is initialised and this process is not rank 0."""
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _scalar(value: float | torch.Tensor | None) -> float:
    """A Python float from a number or 0-d tensor (NaN for None)."""
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item())
    return float(value)


class GradientRecorder:
    """Append flattened gradients ("grads") and parameter values ("snapshots") to a TrajectoryStore.

    Call :meth:`record` once per optimiser step, after backward, AMP unscaling and the DDP
    all-reduce, and before ``optimizer.zero_grad``. Only rank 0 writes; on other ranks every
    method is a no-op. A recorder over an existing store appends to it (resume).
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.nn.Parameter]],
        store: TrajectoryStore | str | Path,
        *,
        record_grads: bool = True,
        every: int = 1,
        snapshot_every: int | None = None,
        dtype: str = "float32",
        chunk_rows: int = 256,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Bind the parameters and open (or create) the store; see the class docstring."""
        self._named = [(str(n), p) for n, p in named_params]
        if not self._named:
            raise GradflowError("GradientRecorder needs at least one (name, parameter) pair")
        if int(every) < 1:
            raise GradflowError(f"every must be >= 1, got {every}")
        if snapshot_every is not None and int(snapshot_every) < 1:
            raise GradflowError(f"snapshot_every must be >= 1 or None, got {snapshot_every}")
        self.record_grads = bool(record_grads)
        self.every = int(every)
        self.snapshot_every = None if snapshot_every is None else int(snapshot_every)
        self.active = not _is_secondary_rank()
        self._store: TrajectoryStore | None = None
        self._last_snapshot_step: int | None = None
        if not self.active:
            return
        params = [(n, tuple(p.shape)) for n, p in self._named]
        if isinstance(store, TrajectoryStore):
            if store.mode != "a":
                raise GradflowError(f"the store at {store.path} is read-only: open it with mode='a'")
            store._check_params(
                [{"name": n, "shape": list(s)} for n, s in params],
                store.dtype,
            )
            self._store = store
        else:
            self._store = TrajectoryStore.create(
                store, params, dtype=dtype, chunk_rows=chunk_rows, metadata=metadata, exist_ok=True
            )
        self._numels = [p.numel() for _, p in self._named]
        devices = {p.device for _, p in self._named}
        self._single_device = len(devices) == 1
        self._flat: torch.Tensor | None = None
        if self._single_device and len(self._named) > 1:
            self._flat = torch.empty(sum(self._numels), dtype=torch.float32, device=next(iter(devices)))
        self._zeros: dict[int, torch.Tensor] = {}

    @property
    def store(self) -> TrajectoryStore | None:
        """The store written to (None on non-zero ranks)."""
        return self._store

    def _zeros_like(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """A cached flat zero tensor standing in for a missing gradient of parameter ``i``."""
        z = self._zeros.get(i)
        if z is None:
            z = self._zeros[i] = torch.zeros(p.numel(), dtype=torch.float32, device=p.device)
        return z

    def _row(self, use_grad: bool) -> torch.Tensor:
        """Flatten all gradients (or values) into one fp32 row on the parameters' device."""
        parts = []
        for i, (_, p) in enumerate(self._named):
            t = p.grad if use_grad else p
            parts.append(self._zeros_like(i, p) if t is None else t.detach().reshape(-1))
        if len(parts) == 1:
            return parts[0]
        if self._flat is not None:
            return torch.cat(parts, out=self._flat)
        return torch.cat([t.to("cpu", torch.float32) for t in parts])

    def record(
        self,
        step: int,
        epoch: int,
        loss: float | torch.Tensor | None = None,
        lr: float | None = None,
    ) -> None:
        """Record the current gradients at ``step`` (if ``step % every == 0``) and a due snapshot."""
        if not self.active:
            return
        step = int(step)
        if self.record_grads and step % self.every == 0:
            self._append("grads", self._row(True), step, epoch, loss, lr)
        if self.snapshot_every is not None and step % self.snapshot_every == 0:
            self.snapshot(step, epoch, loss=loss, lr=lr)

    def snapshot(
        self, step: int, epoch: int, loss: float | torch.Tensor | None = None, lr: float | None = None
    ) -> None:
        """Record the parameter values at ``step`` into "snapshots" (a repeat of the same step is skipped)."""
        if not self.active or self._last_snapshot_step == int(step):
            return
        self._append("snapshots", self._row(False), int(step), epoch, loss, lr)
        self._last_snapshot_step = int(step)

    def _append(self, stream: str, row: torch.Tensor, step: int, epoch: int, loss: Any, lr: Any) -> None:
        """Append one row with its scalars to ``stream``."""
        assert self._store is not None
        self._store.append(stream, row, step, int(epoch), _scalar(loss), _scalar(lr))

    def truncate(self, last_step: int) -> None:
        """Drop recorded rows after ``last_step`` in both streams (call when resuming from a checkpoint)."""
        if not self.active:
            return
        assert self._store is not None
        for stream in ("grads", "snapshots"):
            self._store.truncate(stream, last_step)
        self._last_snapshot_step = None

    def flush(self) -> None:
        """Write buffered rows to disk."""
        if self.active and self._store is not None:
            self._store.flush()

    def close(self) -> None:
        """Flush and close the store."""
        if self.active and self._store is not None:
            self._store.close()

    def __enter__(self) -> GradientRecorder:
        """Context manager: returns the recorder."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: close the recorder."""
        self.close()
