"""Backbone loading: clear one-line errors for missing weights, bad paths and unsupported towers."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from torch import nn

from subpt.backbone import check_supported, load_backbone
from subpt.errors import SubptError


def test_embedded_is_the_default_and_frozen(tiny_backbone):
    assert tiny_backbone.model_name == "subpt-tiny" and tiny_backbone.pretrained == "embedded"
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training


def test_offline_tag_says_how_to_fix(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import (an earlier test may have imported it): without this
    # the download is attempted on the network, and waits for its timeouts
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        SubptError, match="could not download the RN50-quickgelu/openai weights.*--pretrained /path"
    ):
        load_backbone("RN50-quickgelu", "openai")


def test_local_checkpoint_file_loads(tmp_path):
    torch.manual_seed(0)
    ref = load_backbone("subpt-tiny", "random")
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    bb = load_backbone("subpt-tiny", str(path))
    assert bb.weights_id.startswith("file:")
    assert all(
        torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), bb.model.state_dict().values())
    )


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


# ---------------------------------------------------------------------------------------------- OpenAI's checkpoints
# A tiny ViT CLIP, registered with open_clip under a GELU name and a QuickGELU name, as ViT-B-16 and
# ViT-B-16-quickgelu are.
TINY_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}
GELU_NAME, QUICK_NAME = "subpt-test-vit", "subpt-test-vit-quickgelu"


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> tuple[str, str]:
    """The tiny ViT registered with open_clip: (GELU name, QuickGELU name)."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / f"{GELU_NAME}.json").write_text(json.dumps(TINY_VIT))
    (folder / f"{QUICK_NAME}.json").write_text(json.dumps({**TINY_VIT, "quick_gelu": True}))
    open_clip.add_model_config(folder)
    return GELU_NAME, QUICK_NAME


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory, tiny_vit):
    """A random QuickGELU model saved as OpenAI publishes CLIP (a TorchScript archive whose state dict holds the
    weights partly in fp16 and the keys input_resolution, context_length, vocab_size), and that state dict saved
    with torch.save."""
    folder = tmp_path_factory.mktemp("openai")
    torch.manual_seed(0)
    source = open_clip.create_model(QUICK_NAME)

    class Archive(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.logit_scale

    root = Archive()

    def put(key: str, value: torch.Tensor, param: bool) -> None:
        *path, leaf = key.split(".")
        mod = root
        for name in path:
            if not hasattr(mod, name):
                mod.add_module(name, nn.Module())
            mod = getattr(mod, name)
        if param:
            mod.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            mod.register_buffer(leaf, value)

    # OpenAI's partial fp16: linear, conv and attention weights in half precision.
    open_clip.model.convert_weights_to_fp16(source)
    for key, value in source.state_dict().items():
        put(key, value.clone(), True)
    for key, value in {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}.items():
        put(key, torch.tensor(value), False)
    archive = folder / "ViT-tiny.pt"
    torch.jit.trace(root, torch.ones(1)).save(str(archive))
    state_dict = folder / "openai_state_dict.pt"
    torch.save(torch.jit.load(str(archive)).state_dict(), state_dict)
    return {"archive": archive, "state_dict": state_dict}


def _image_features(model: torch.nn.Module) -> torch.Tensor:
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.encode_image(images)


@pytest.mark.parametrize("kind", ["archive", "state_dict"])
def test_openai_checkpoint_builds_the_quickgelu_model(openai_files, kind):
    path = openai_files[kind]
    # open_clip's own reader of OpenAI's files
    reference = open_clip.load_openai_model(str(path), device="cpu", precision="fp32")
    bb = load_backbone(QUICK_NAME, str(path))
    assert bb.weights_id.startswith("file:")
    assert torch.equal(_image_features(bb.model), _image_features(reference))
    # The same weights in the GELU architecture give other features: the activation is what the check is about.
    gelu = open_clip.create_model(GELU_NAME)
    gelu.load_state_dict(bb.model.state_dict())
    assert not torch.allclose(_image_features(gelu), _image_features(reference), atol=1e-4)


@pytest.mark.parametrize("kind", ["archive", "state_dict"])
def test_openai_checkpoint_under_a_gelu_name_is_refused(openai_files, kind):
    with pytest.raises(SubptError, match=f"OpenAI CLIP checkpoint.*QuickGELU.*--model {QUICK_NAME}"):
        load_backbone(GELU_NAME, str(openai_files[kind]))


def test_a_gelu_checkpoint_in_open_clip_format_still_loads_under_the_gelu_name(openai_files, tmp_path):
    torch.manual_seed(2)
    model = open_clip.create_model(GELU_NAME)
    path = tmp_path / "open_clip.pt"
    torch.save(model.state_dict(), path)
    assert torch.equal(_image_features(load_backbone(GELU_NAME, str(path)).model), _image_features(model))


def test_a_tag_trained_with_another_activation_is_refused(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # refused before any download
    with pytest.raises(
        SubptError, match="openai weights of ViT-B-16 were trained with QuickGELU.*--model ViT-B-16-quickgelu"
    ):
        load_backbone("ViT-B-16", "openai")


# ---------------------------------------------------------------------------------------------- --pretrained random
def test_random_weights_are_drawn_from_the_seed():
    state = torch.get_rng_state()
    a, b, c = (load_backbone("subpt-tiny", "random", seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert all(
        torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values())
    )
    assert not torch.equal(a.model.visual.conv1.weight, c.model.visual.conv1.weight)
    assert a.weights_id == b.weights_id != c.weights_id  # the feature cache tells the draws apart


def test_eval_of_a_random_weights_run_reproduces_its_numbers(tmp_path, monkeypatch, tiny_vit):
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    from subpt.config import TrainConfig
    from subpt.runs import read_metrics
    from subpt.train import train

    run = tmp_path / "run"
    cfg = TrainConfig(
        dataset="world-color-shape-36",
        model=GELU_NAME,  # a random tiny ViT: its accuracies vary with the draw (the random tiny ResNet's are chance)
        pretrained="random",
        shots=2,
        epochs=2,
        n_ctx=4,
        seed=5,
        dataset_options={"test_per_class": 6},
    )
    train(cfg, run, progress=False)
    assert json.loads((run / "config.json").read_text())["seed"] == 5  # the seed the weights were drawn from
    final = read_metrics(run)[-1]
    monkeypatch.setenv("SUBPT_CACHE", str(tmp_path / "fresh-cache"))  # image features recomputed too
    res = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert (again["base_acc"], again["novel_acc"], again["hm"]) == (
        final["base_acc"],
        final["novel_acc"],
        final["hm"],
    )
