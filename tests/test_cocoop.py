"""CoCoOp (`subpt train --method cocoop`, docs/baselines.md): the zero-shift identity with CoOp, the batched, chunked
and prefix-shared per-image text path against the plain one, its settings and refusals, evaluation, resume after
SIGKILL, and two gloo processes against one.

Tolerances: fp32 relative error (norm of the difference over the norm of the reference) at most 1e-5 for features
and gradients, as in tests/test_prefix_share.py.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from ddp_runs import one_and_two_processes
from kill_resume import train_full_and_killed
from test_prefix_share import BUILDERS

from gradflow.trajectory import TrajectoryStore
from subpt import cocoop
from subpt.basis_plan import run_basis
from subpt.config import PromptConfig, TrainConfig, method_presets
from subpt.errors import SubptError
from subpt.evaluate import classify
from subpt.prompts import PromptLearner
from subpt.runs import read_metrics

FP32_REL = 1e-5
NAMES = [
    "red circle",
    "a",
    "golden retriever",
    "sea lion",
    "the great crested grebe of the northern lakes",
    "x-ray",
]
CLI_TASK = ["--dataset", "world-color-shape-36", "--shots", "2"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error of a against the reference b."""
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def images(backbone, n: int, seed: int = 0) -> torch.Tensor:
    """n random normalised image features."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, backbone.embed_dim, generator=gen), dim=-1).to(backbone.device)


def learner(backbone, prefix_share: bool = True, n_ctx: int = 4) -> cocoop.CoCoOpLearner:
    return cocoop.CoCoOpLearner(backbone, NAMES, PromptConfig(n_ctx=n_ctx), seed=3, prefix_share=prefix_share)


# ------------------------------------------------------------------------------------------------ the identity
def test_zero_meta_output_gives_coop_logits(tiny_backbone):
    """pi(x) = 0 (the meta-network's last layer zeroed): every image's prompt is CoOp's, so are the logits."""
    co = learner(tiny_backbone)
    coop = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=4), seed=3)
    assert torch.equal(co.ctx, coop.ctx)
    x = images(tiny_backbone, 5)
    assert (
        rel(co.per_image_logits(x), classify(x, coop.text_features(), coop.backbone.model.logit_scale)) > 1e-3
    )
    w1, b1, w2, b2 = co.meta.weights()
    with torch.no_grad():
        w2.zero_()
        b2.zero_()
    assert torch.equal(co.image_contexts(x), co.ctx.expand(5, -1, -1))
    expected = classify(x, coop.text_features(), coop.backbone.model.logit_scale)
    torch.testing.assert_close(co.per_image_logits(x), expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(co.per_image_logits(x, chunk=4), expected, rtol=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------------------ the text path
@pytest.mark.parametrize("tower", ["embedded", "layerscale-seqfirst"])
def test_batched_chunked_prefix_shared_features_equal_the_plain_path(tiny_backbone, tower):
    """Each image's features, one image at a time through full sequences (CoOp's learner holding ctx + pi(x_b)), equal
    the batched prefix-shared pass and every piece layout of the chunked one (the embedded tower, and ViT-B-16's
    text width with layer scale, run sequence-first)."""
    backbone = tiny_backbone if tower == "embedded" else BUILDERS[tower]()
    co = learner(backbone)
    assert co.shares_prefix()
    x = images(backbone, 3)
    with torch.no_grad():
        ctxs = co.image_contexts(x)
        ref = []
        for c in ctxs:
            plain = PromptLearner(backbone, NAMES, PromptConfig(n_ctx=4), prefix_share=False)
            plain.ctx.copy_(c)
            ref.append(plain.text_features())
        ref = torch.stack(ref)
        assert rel(co.image_text_features(ctxs), ref) < FP32_REL
        full = learner(backbone, prefix_share=False)
        assert rel(full.image_text_features(ctxs), ref) < FP32_REL
        for chunk in (4, 6, 13):  # classes split per image, one image per pass, 2 images per pass
            assert rel(co.chunked_text_features(ctxs, chunk=chunk), ref) < FP32_REL, chunk


@pytest.mark.parametrize("chunk", [None, 4])
def test_training_gradient_matches_the_plain_path(tiny_backbone, chunk):
    """ctx and meta-network gradients of the batched (and chunked) prefix-shared step equal the full-sequence one."""
    gen = torch.Generator().manual_seed(1)
    x, y = images(tiny_backbone, 4, seed=2), torch.randint(0, len(NAMES), (4,), generator=gen)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    from contextlib import nullcontext

    got, want = learner(tiny_backbone), learner(tiny_backbone, prefix_share=False)
    loss, _ = cocoop.backward_step(got, x, y, 4, chunk, scaler, nullcontext)
    ref_loss, _ = cocoop.backward_step(want, x, y, 4, None, scaler, nullcontext)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert rel(got.ctx.grad, want.ctx.grad) < FP32_REL
    assert rel(got.meta.flat.grad, want.meta.flat.grad) < FP32_REL
    assert want.meta.flat.grad.norm() > 0


def test_pieces_bound_every_pass():
    assert cocoop.pieces(3, 5, None) == [(slice(0, 3), slice(0, 5))]
    layouts = {chunk: cocoop.pieces(3, 5, chunk) for chunk in (1, 4, 5, 12, 15)}
    for chunk, parts in layouts.items():
        cells = set()
        for imgs, cls in parts:
            assert (imgs.stop - imgs.start) * (cls.stop - cls.start) <= chunk
            cells |= {(i, c) for i in range(imgs.start, imgs.stop) for c in range(cls.start, cls.stop)}
        assert cells == {(i, c) for i in range(3) for c in range(5)}, chunk


# ------------------------------------------------------------------------------------------------ settings
def test_presets_display_name_and_refusals(tmp_path):
    assert method_presets("cocoop", set()) == {
        "ctx_init": "a photo of a",
        "n_ctx": 4,
        "batch_size": 1,
        "epochs": 10,
        "lr": 0.002,
    }
    assert method_presets("cocoop", {"epochs", "n_ctx"}) == {"batch_size": 1, "lr": 0.002}
    assert method_presets("kgcoop", set()) == {}
    small = dict(dataset="world-color-shape-36", shots=2)
    assert TrainConfig(**small, prompt_method="cocoop").method == "CoCoOp"
    basis = tmp_path / "b.pt"
    basis.write_bytes(b"")
    assert TrainConfig(**small, prompt_method="cocoop", basis=str(basis)).method == "SubPT(CoCoOp)"
    refused = [
        (
            dict(nfl=True),
            "--method cocoop cannot be combined with --nfl: NFL's text-only student has no image",
        ),
        (dict(csc=True), "--method cocoop learns one shared context"),
        (dict(method_lambda=1.0), "CoCoOp has none"),
    ]
    for kw, msg in refused:
        with pytest.raises(SubptError, match=msg):
            TrainConfig(**small, prompt_method="cocoop", **kw).validate()


def test_cli_refuses_nfl_in_one_line(tmp_path):
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "new"), *CLI_TASK, "--method", "cocoop", "--nfl"]
    )
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--method cocoop cannot be combined with --nfl" in lines[0], result.stderr
    assert not (tmp_path / "new").exists()


def test_cli_applies_the_paper_settings_where_not_given(tmp_path, monkeypatch):
    """`--method cocoop` fills in the paper's settings for the options not given; the config (so config.json) holds
    the values used."""
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    import subpt.train

    seen = []
    monkeypatch.setattr(subpt.train, "train", lambda cfg, *a, **kw: seen.append(cfg) or [])
    for method, extra, expected in [
        ("cocoop", [], ("a photo of a", 4, 1, 10, 0.002)),
        ("cocoop", ["--epochs", "2", "--n-ctx", "8", "--lr", "0.01"], (None, 8, 1, 2, 0.01)),
        ("kgcoop", [], (None, 16, 32, 100, 0.002)),
    ]:
        args = ["train", "--out", str(tmp_path / "run"), *CLI_TASK, "--method", method, *extra, "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        cfg = seen[-1]
        assert (cfg.ctx_init, cfg.n_ctx, cfg.batch_size, cfg.epochs, cfg.lr) == expected


# ------------------------------------------------------------------------------------------------ resume and DDP
def test_resume_after_sigkill_is_bit_identical_and_eval_agrees(tmp_path):
    """A `subpt train --method cocoop --record` process killed with SIGKILL resumes to the uninterrupted end: ctx, the
    meta-network, both momentum buffers and the trajectory bit-identical. The trajectory holds ctx and the
    meta-network as two entries, the SubPT basis of the run spans ctx alone, and `subpt eval` of the run (per-image
    text features, base and novel) reproduces its final accuracy."""
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    args = [*CLI_TASK, "--method", "cocoop", "--batch-size", "8", "--epochs", "6", "--record"]
    full, killed = train_full_and_killed(tmp_path, args, epochs=6, env={"OMP_NUM_THREADS": "1"})
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(full)) == strip(read_metrics(killed))
    for e in range(1, 7):
        a = torch.load(full / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)
        b = torch.load(killed / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)
        assert torch.equal(a["ctx"], b["ctx"]) and torch.equal(a["meta_net"], b["meta_net"]), e
    a, b = (torch.load(d / "ckpt" / "last.pt", weights_only=True)["optimizer"] for d in (full, killed))
    assert all(
        torch.equal(a["state"][i]["momentum_buffer"], b["state"][i]["momentum_buffer"]) for i in (0, 1)
    )
    sa, sb = (TrajectoryStore.open(d / "trajectory") for d in (full, killed))
    for stream in ("grads", "snapshots"):
        assert (sa.rows(stream) == sb.rows(stream)).all()

    assert [p["name"] for p in sa.params] == ["ctx", "meta_net"]
    assert (
        sa.param_dim("meta_net")
        == torch.load(full / "ckpt" / "last.pt", weights_only=True)["meta_net"].numel()
    )
    snaps = sa.rows("snapshots", param="meta_net")
    assert not torch.equal(
        torch.from_numpy(snaps[0]), torch.from_numpy(snaps[-1])
    )  # the meta-network trained
    basis = run_basis(full, "epochs:0-3", 1, tmp_path / "b.pt")
    assert basis.dim == 4 * 128 and basis.metadata["param_names"] == ["ctx"]

    evaluated = CliRunner().invoke(app, ["eval", str(full), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    result, final = json.loads(evaluated.stdout), read_metrics(full)[-1]
    assert result["method"] == "CoCoOp" and json.loads((full / "config.json").read_text())["batch_size"] == 8
    assert result["base_acc"] == final["base_acc"] and result["novel_acc"] == final["novel_acc"]

    # the paths that rebuild a run's prompts from its checkpoint read the meta-network too: the report's per-class
    # analysis gives the run's own base accuracy, and a transfer to a dataset evaluates per-image prompts
    from subpt.backbone import load_backbone
    from subpt.experiments.protocols import transfer_eval
    from subpt.report.model import analyse_classes
    from subpt.runs import load_config, load_params

    cfg, (saved, epoch) = load_config(full), load_params(full)
    analysis = analyse_classes(load_backbone(cfg.model, cfg.pretrained, "cpu"), cfg, saved["ctx"], epoch, "ckpt",
                               extra=saved)
    groups = {g.group: g for g in analysis.groups}
    assert groups["base"].final_acc == pytest.approx(final["base_acc"], abs=1e-6)
    assert groups["novel"].final_acc == pytest.approx(final["novel_acc"], abs=1e-6)
    moved = transfer_eval(full, cfg.dataset, None, options=cfg.dataset_options, use_cache=False, save=False)
    assert moved["method"] == "CoCoOp" and 0.0 <= moved["acc"] <= 100.0


def test_two_gloo_processes_match_one(tmp_path):
    """The meta-network's gradient is all-reduced as ctx's is: rank 0 of two processes ends where one process ends."""
    args = [
        "train",
        *CLI_TASK,
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "0.05",
        "--method",
        "cocoop",
        "--json",
    ]
    one_and_two_processes(tmp_path, args)
    a = torch.load(tmp_path / "one" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "ckpt" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 2 * 9
    for name in ("ctx", "meta_net"):
        torch.testing.assert_close(b[name], a[name], atol=2e-5, rtol=1e-4)
    moved = torch.load(tmp_path / "one" / "ckpt" / "ctx_001.pt", weights_only=True)["meta_net"]
    assert not torch.equal(moved, a["meta_net"])
    for x, y in zip(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["base_acc"] - y["base_acc"]) < 0.5
