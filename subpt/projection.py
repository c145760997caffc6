"""The SubPT gradient projector: owns a basis U (r, D) and maps a flattened gradient g to U^T U g.

The projection acts on gradients, so a basis built from centred snapshots is used without its mean:
only the directions span(U) matter. It runs in fp32 on the parameter's device whatever the training
precision, after AMP unscaling. Weight decay must be added to the gradient *before* projecting (the
trainer does this and gives the optimiser weight_decay=0), so that the applied update stays in span(U).
"""

from __future__ import annotations

from pathlib import Path

import torch

from gradflow.errors import GradflowError
from gradflow.subspace import Basis
from subpt.errors import SubptError


class GradientProjector:
    """Replaces a parameter's gradient by its projection onto span(U)."""

    def __init__(self, basis: torch.Tensor, device: torch.device | str = "cpu", source: str = "basis"):
        if basis.dim() != 2:
            raise SubptError(f"{source}: a basis must have shape (rank, dim), got {tuple(basis.shape)}")
        self.U = basis.detach().to(device=device, dtype=torch.float32).contiguous()
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path, expect: dict, dim: int, device: torch.device | str = "cpu") -> GradientProjector:
        """Load a basis file and check it against the model and run it will be applied to (`expect` metadata).

        The basis must have the parameter's `dim` and record every field of `expect` (model, context shape,
        seed, dataset, dataset options) with the same value; otherwise a one-line SubptError names each
        differing field with the basis value and the run value, or the fields an older basis lacks.
        """
        try:
            basis = Basis.load(path)
            basis.check_compatible(dim)
        except GradflowError as e:
            raise SubptError(str(e)) from e
        check_basis_metadata(basis.metadata, expect, str(path))
        return cls(basis.U, device, source=str(path))

    @property
    def rank(self) -> int:
        """Number of basis vectors."""
        return int(self.U.shape[0])

    @property
    def dim(self) -> int:
        """Length of the flattened parameter the basis applies to."""
        return int(self.U.shape[1])

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """U^T U g for a gradient of any shape with dim elements, in fp32, same shape as g."""
        flat = g.reshape(-1).to(torch.float32)
        return (self.U.t() @ (self.U @ flat)).reshape(g.shape)

    def project_(self, param: torch.nn.Parameter) -> None:
        """Project `param.grad` in place (no-op when the parameter has no gradient)."""
        if param.grad is None:
            return
        if param.numel() != self.dim:
            raise SubptError(f"{self.source}: basis dim {self.dim} does not match the parameter's {param.numel()} values")
        param.grad.copy_(self.project(param.grad).to(param.grad.dtype))


def check_basis_metadata(meta: dict, expect: dict, name: str = "basis") -> None:
    """Raise a one-line SubptError unless the basis metadata `meta` records every `expect` field with its value."""
    diff = [(k, meta[k], want) for k, want in expect.items() if k in meta and meta[k] != want]
    if diff:
        built = " and ".join(f"{k} {have}" for k, have, _ in diff)
        here = " and ".join(f"{k} {want}" for k, _, want in diff)
        keys = " and ".join(k for k, _, _ in diff)
        raise SubptError(
            f"basis {name} was built for {built}, this run has {here}: build the basis from a run with the same {keys}"
        )
    missing = [k for k in expect if k not in meta]
    if missing:
        raise SubptError(
            f"basis {name} records no {', '.join(missing)} (it predates these checks or was not built from a subpt "
            "run): rebuild the basis from this seed's CoOp run with `subpt basis` so that it can be checked"
        )
