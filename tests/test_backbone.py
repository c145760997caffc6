"""Backbone loading: clear one-line errors for missing weights, bad paths and unsupported towers."""

from __future__ import annotations

import pytest
import torch

from subpt.backbone import check_supported, load_backbone
from subpt.errors import SubptError


def test_embedded_is_the_default_and_frozen(tiny_backbone):
    assert tiny_backbone.model_name == "subpt-tiny" and tiny_backbone.pretrained == "embedded"
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training


def test_offline_tag_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SubptError, match="could not download the RN50/openai weights.*--pretrained /path"):
        load_backbone("RN50", "openai")


def test_local_checkpoint_file_loads(tmp_path):
    torch.manual_seed(0)
    ref = load_backbone("subpt-tiny", "random")
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    bb = load_backbone("subpt-tiny", str(path))
    assert bb.weights_id.startswith("file:")
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), bb.model.state_dict().values()))


def test_bad_inputs(tmp_path):
    with pytest.raises(SubptError, match="no such file"):
        load_backbone("ViT-B-16", str(tmp_path / "missing.pt"))
    with pytest.raises(SubptError, match="neither a file nor a tag"):
        load_backbone("ViT-B-16", "not-a-tag")
    with pytest.raises(SubptError, match="unknown model"):
        load_backbone("ViT-Q-99", "random")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(SubptError, match="could not load checkpoint"):
        load_backbone("subpt-tiny", str(bad))


def test_non_clip_text_towers_are_refused():
    with pytest.raises(SubptError, match="not supported"):
        check_supported(torch.nn.Linear(2, 2), "some-custom-model")
