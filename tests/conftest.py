"""Shared fixtures: an isolated cache folder, and small backbones built once per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["SUBPT_CACHE"] = str(tmp_path_factory.mktemp("subpt-cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_backbone():
    from subpt.backbone import load_backbone

    return load_backbone("subpt-tiny", "embedded")
