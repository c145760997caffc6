"""Shared fixtures: an isolated cache folder, and small backbones built once per session."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist every worker (and every process a test starts, through the environment) computes on one
    # thread: the workers share the cores, and one thread count everywhere keeps in-process and subprocess
    # results bit-comparable.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["SUBPT_CACHE"] = str(tmp_path_factory.mktemp("subpt-cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_backbone():
    from subpt.backbone import load_backbone

    return load_backbone("subpt-tiny", "embedded")
