"""The baselines of `subpt train --method`: KgCoOp's loss, ProGrad's gradient rule, their composition with SubPT,
resume after SIGKILL and the refused combinations (docs/baselines.md)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from ddp_runs import one_and_two_processes
from kill_resume import train_full_and_killed

from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore
from subpt.baselines import KgCoOpTerm, prograd_gradient
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.prompts import PromptLearner
from subpt.runs import read_metrics
from subpt.splits import prepare_data
from subpt.train import backward_step, epoch_order, train

SMALL = dict(
    dataset="world-color-shape-36", shots=2, epochs=2, n_ctx=4, dataset_options={"test_per_class": 4}
)
METHODS = ["kgcoop", "prograd"]


def small_config(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def last_ctx(run) -> torch.Tensor:
    return torch.load(run / "ckpt" / "last.pt", weights_only=True)["ctx"]


def clip_text(backbone, names: list[str], template: str) -> torch.Tensor:
    """Normalised features of the hand-crafted prompts through open_clip's own encode_text."""
    tokens = backbone.tokenizer([template.format(n.replace("_", " ")) for n in names]).to(backbone.device)
    with torch.no_grad():
        return F.normalize(backbone.model.encode_text(tokens).float(), dim=-1)


# ------------------------------------------------------------------------------------------------ config
def test_display_names_and_refused_combinations(tmp_path):
    assert small_config().method == "CoOp"
    assert small_config(prompt_method="kgcoop").method == "KgCoOp"
    assert small_config(prompt_method="kgcoop", nfl=True).method == "KgCoOp+NFL"
    assert small_config(prompt_method="prograd").method == "ProGrad"
    basis = tmp_path / "b.pt"
    basis.write_bytes(b"")
    assert small_config(prompt_method="prograd", basis=str(basis)).method == "SubPT(ProGrad)"
    assert small_config(prompt_method="kgcoop", basis=str(basis), nfl=True).method == "SubPT(KgCoOp)+NFL"
    assert small_config(basis=str(basis), nfl=True).method == "SubPT+NFL"
    assert small_config(prompt_method="kgcoop").method_weight == 8.0
    assert small_config(prompt_method="prograd").method_weight == 1.0
    assert small_config(prompt_method="kgcoop", method_lambda=2.5).method_weight == 2.5
    assert small_config(prompt_method="kgcoop").hash() != small_config().hash()
    assert (
        small_config(prompt_method="kgcoop", method_lambda=8.0).hash()
        != small_config(prompt_method="kgcoop").hash()
    )
    refused = [
        (dict(prompt_method="maple"), "--method must be one of"),
        (dict(method_lambda=1.0), "CoOp has none"),
        (dict(prompt_method="kgcoop", method_lambda=-1.0), "--method-lambda must be"),
        (dict(prompt_method="prograd", method_lambda=float("nan")), "--method-lambda must be"),
        (dict(prompt_method="prograd", nfl=True), "cannot be combined with --nfl"),
        (dict(prompt_method="prograd", precision="fp16", device="cuda"), "needs --precision fp32 or bf16"),
    ]
    for kw, msg in refused:
        with pytest.raises(SubptError, match=msg):
            small_config(**kw).validate()


def test_config_round_trips_the_method(tmp_path):
    cfg = small_config(prompt_method="kgcoop", method_lambda=4.0)
    cfg.save(tmp_path / "config.json")
    back = TrainConfig.load(tmp_path / "config.json")
    assert back.prompt_method == "kgcoop" and back.method_lambda == 4.0 and back.hash() == cfg.hash()


# ------------------------------------------------------------------------------------------------ KgCoOp
def test_kgcoop_at_lambda_zero_trains_exactly_like_coop(tmp_path):
    coop = train(small_config(), tmp_path / "coop", progress=False)
    kg0 = train(small_config(prompt_method="kgcoop", method_lambda=0.0), tmp_path / "kg0", progress=False)
    assert torch.equal(last_ctx(tmp_path / "coop"), last_ctx(tmp_path / "kg0"))
    assert [m["loss"] for m in coop] == [m["loss"] for m in kg0]
    train(
        small_config(prompt_method="kgcoop"), tmp_path / "kg8", progress=False
    )  # lambda 8 does change the training
    assert not torch.allclose(last_ctx(tmp_path / "coop"), last_ctx(tmp_path / "kg8"), atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 5])
def test_kgcoop_loss_and_gradient_match_the_formula(tiny_backbone, chunk):
    """CE + lambda * mean_i ||w_i - w_i^clip||^2, computed here from open_clip's encode_text and full prompts."""
    cfg = small_config(prompt_method="kgcoop", method_lambda=3.0, text_chunk=chunk)
    splits = prepare_data(cfg, tiny_backbone, progress=False)
    names, template = splits.base.classnames, splits.task.template
    learner = PromptLearner(tiny_backbone, names, cfg.prompt_config(), seed=1)
    x, y = splits.train[0][:10], splits.train[1][:10]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss, _ = backward_step(learner, x, y, 10, None, cfg, scaler, kg=KgCoOpTerm(learner, template))

    ref = PromptLearner(tiny_backbone, names, cfg.prompt_config(), seed=1, prefix_share=False)
    w = ref.text_features()
    w_clip = clip_text(tiny_backbone, names, template)
    logits = tiny_backbone.model.logit_scale.exp() * x @ w.t()
    expected = F.cross_entropy(logits, y) + 3.0 * ((w - w_clip) ** 2).sum(dim=-1).mean()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    kg_part = 3.0 * ((w.detach() - w_clip) ** 2).sum(dim=-1).mean().item()
    assert kg_part > 0.05 * expected.item()  # the term is not negligible in this check
    torch.testing.assert_close(learner.ctx.grad, ref.ctx.grad, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ ProGrad
def test_prograd_rule_on_constructed_gradients():
    g_kl = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    agree = torch.tensor([[0.5, 2.0], [-1.0, 3.0]])
    assert torch.equal(prograd_gradient(agree, g_kl, 1.0), agree)
    orthogonal = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # g . g_kl = 0 counts as agreeing
    assert torch.equal(prograd_gradient(orthogonal, g_kl, 1.0), orthogonal)
    gen = torch.Generator().manual_seed(0)
    k = torch.randn(4, 8, generator=gen)
    g = torch.randn(4, 8, generator=gen)
    g = g - ((g * k).sum() / (k * k).sum() + 0.7) * k  # now g . k = -0.7 ||k||^2 < 0
    out = prograd_gradient(g, k, 1.0)
    expected = g - (g * k).sum() / (k * k).sum() * k
    torch.testing.assert_close(out, expected)
    assert abs(float((out * k).sum())) < 1e-5 * float(out.norm() * k.norm())
    half = prograd_gradient(g, k, 0.5)  # lambda < 1 removes that share of the conflicting component
    torch.testing.assert_close((half * k).sum(), 0.5 * (g * k).sum(), atol=1e-5, rtol=1e-5)
    assert torch.equal(prograd_gradient(g, torch.zeros_like(k), 1.0), g)  # no zero-shot direction: g_ce


def test_prograd_applied_gradient_never_opposes_the_zero_shot_direction(tmp_path, tiny_backbone, monkeypatch):
    """In real training: the gradient the optimiser applies has g . g_kl >= 0; it is g_ce where they agree and the
    orthogonal projection where they conflict; g_kl is the gradient of KL(zero-shot || prompted)."""
    import subpt.baselines as baselines

    seen, applied = [], []
    rule = baselines.prograd_gradient

    def spy(g_ce, g_kl, lam):
        seen.append((g_ce.detach().clone(), g_kl.detach().clone()))
        return rule(g_ce, g_kl, lam)

    step = torch.optim.SGD.step

    def capture(self, *a, **kw):
        applied.append(self.param_groups[0]["params"][0].grad.detach().clone())
        return step(self, *a, **kw)

    monkeypatch.setattr(baselines, "prograd_gradient", spy)
    monkeypatch.setattr(torch.optim.SGD, "step", capture)
    cfg = small_config(prompt_method="prograd", shots=4, epochs=4, lr=0.5, weight_decay=0.0, batch_size=8)
    train(cfg, tmp_path / "run", progress=False)
    assert len(seen) == len(applied) == 4 * 9
    conflicts = 0
    for (g_ce, g_kl), a in zip(seen, applied):
        a, g_ce, g_kl = a.reshape(-1), g_ce.reshape(-1), g_kl.reshape(-1)
        assert float(a @ g_kl) >= -1e-5 * float(a.norm() * g_kl.norm())
        if float(g_ce @ g_kl) >= 0:
            assert torch.equal(a, g_ce)
        else:
            conflicts += 1
            torch.testing.assert_close(a, g_ce - (g_ce @ g_kl) / (g_kl @ g_kl) * g_kl)
    assert 0 < conflicts < len(seen), f"{conflicts} conflicting steps: the test would not see both branches"

    # Step 1's g_kl, from scratch: KL(softmax(zero-shot logits) || softmax(prompted logits)) over the first batch.
    splits = prepare_data(cfg, tiny_backbone, progress=False)
    names, template = splits.base.classnames, splits.task.template
    ref = PromptLearner(tiny_backbone, names, cfg.prompt_config(), seed=1, prefix_share=False)
    feats, labels = splits.train
    idx = epoch_order(feats.shape[0], cfg.seed, 0, feats.device)[:8]
    scale = tiny_backbone.model.logit_scale.exp()
    zs = scale * feats[idx] @ clip_text(tiny_backbone, names, template).t()
    prompted = scale * feats[idx] @ ref.text_features().t()
    F.kl_div(
        F.log_softmax(prompted, -1), F.log_softmax(zs, -1), reduction="batchmean", log_target=True
    ).backward()
    torch.testing.assert_close(seen[0][1], ref.ctx.grad, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ SubPT
WIDTH, N_CTX = 128, 4


@pytest.mark.parametrize("method", ["coop", *METHODS, "cocoop"])
def test_subpt_projection_confines_every_method(tmp_path, method):
    cfg0 = small_config(shots=8, epochs=3, lr=0.5, prompt_method=method)
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(WIDTH * N_CTX, 5, generator=gen, dtype=torch.float64))
    meta = {
        "model": "subpt-tiny",
        "n_ctx": N_CTX,
        "width": WIDTH,
        "csc": False,
        "n_cls": 0,
        "seed": 1,
        "dataset": cfg0.dataset,
        "dataset_options": json.dumps(cfg0.dataset_options, sort_keys=True, separators=(",", ":")),
    }
    Basis(U=q.t().float().contiguous(), singular_values=torch.ones(5), mean=None, metadata=meta).save(
        tmp_path / "b.pt"
    )
    cfg = small_config(shots=8, epochs=3, lr=0.5, prompt_method=method, basis=str(tmp_path / "b.pt"))
    train(cfg, tmp_path / "run", progress=False)
    rows = TrajectoryStore.open(tmp_path / "run" / "trajectory").rows("snapshots", param="ctx")
    d = torch.from_numpy(rows[-1]).double() - torch.from_numpy(rows[0]).double()
    u = q.t()
    assert d.norm() > 1e-2, "the context hardly moved"
    # CoCoOp's context moves less (the meta-network takes part of the fit): fp32 rounding of ctx is a larger share
    assert (d - u.t() @ (u @ d)).norm() / d.norm() < (1e-5 if method == "cocoop" else 1e-6)


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("method", METHODS)
def test_resume_after_sigkill_is_bit_identical(tmp_path, method):
    """A `subpt train --method M --record` process killed with SIGKILL mid-run resumes to the uninterrupted end."""
    args = [
        "--dataset",
        "world-color-shape-36",
        "--shots",
        "4",
        "--n-ctx",
        "4",
        "--epochs",
        "10",
        "--record",
        "--method",
        method,
    ]
    train_full_and_killed(tmp_path, args, epochs=10, env={"OMP_NUM_THREADS": "1"})
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["prompt_method"] == method
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "killed"))
    for e in range(1, 11):
        a = torch.load(tmp_path / "full" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        b = torch.load(tmp_path / "killed" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        assert torch.equal(a, b), e
    sa, sb = (TrajectoryStore.open(tmp_path / d / "trajectory") for d in ("full", "killed"))
    for stream in ("grads", "snapshots"):
        assert (sa.rows(stream) == sb.rows(stream)).all()
        assert (sa.scalars(stream)["step"] == sb.scalars(stream)["step"]).all()


@pytest.mark.parametrize("method", METHODS)
def test_chunked_classes_give_the_same_training(tmp_path, method):
    """The two-pass chunked backward carries each method's term (KgCoOp) and pass (ProGrad's KL) unchanged."""
    a = train(small_config(prompt_method=method), tmp_path / "all", progress=False)
    b = train(small_config(prompt_method=method, text_chunk=5), tmp_path / "chunked", progress=False)
    torch.testing.assert_close(
        last_ctx(tmp_path / "chunked"), last_ctx(tmp_path / "all"), atol=1e-6, rtol=1e-5
    )
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-5


# ------------------------------------------------------------------------------------------------ DDP
@pytest.mark.parametrize("method", METHODS)
def test_two_gloo_processes_match_one(tmp_path, method):
    """ProGrad's rule needs both gradients all-reduced first: rank 0 of two processes ends where one process ends."""
    args = [
        "train",
        "--dataset",
        "world-color-shape-36",
        "--shots",
        "4",
        "--epochs",
        "2",
        "--n-ctx",
        "4",
        "--lr",
        "0.5",
        "--record",
        "--json",
        "--method",
        method,
    ]
    one_and_two_processes(tmp_path, args)
    a = torch.load(tmp_path / "one" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "ckpt" / "last.pt", weights_only=True)
    assert a["step"] == b["step"]
    # lr 0.5 (so that ProGrad's branches both occur) magnifies the fp32 summation-order differences of the all-reduce
    torch.testing.assert_close(b["ctx"], a["ctx"], atol=2e-5, rtol=1e-4)
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert len(one) == len(two) == 2
    for x, y in zip(one, two):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["base_acc"] - y["base_acc"]) < 0.5
    ga = TrajectoryStore.open(tmp_path / "one" / "trajectory").rows("grads")
    gb = TrajectoryStore.open(tmp_path / "two" / "trajectory").rows("grads")
    assert ga.shape == gb.shape
    torch.testing.assert_close(torch.from_numpy(gb), torch.from_numpy(ga), atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ CLI
FAST = ["--dataset", "world-color-shape-36", "--shots", "2", "--epochs", "1", "--n-ctx", "4"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "maple"], "--method must be one of coop, kgcoop, prograd, cocoop"),
        (["--method", "prograd", "--nfl"], "--method prograd cannot be combined with --nfl"),
        (
            ["--method", "kgcoop", "--method-lambda", "-1"],
            "--method-lambda must be a finite non-negative number",
        ),
        (["--method-lambda", "2"], "CoOp has none"),
    ],
)
def test_bad_method_input_is_one_line_exit_2(tmp_path, args, needle):
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "new"), *FAST, *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("method", METHODS)
def test_train_records_the_method_and_eval_agrees(tmp_path, method):
    from subpt._cli.subpt_app import app
    from typer.testing import CliRunner

    runner = CliRunner()
    out = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--out", str(out), *FAST, "--method", method, "--json"])
    assert trained.exit_code == 0, trained.output
    final = json.loads(trained.stdout)["final"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["prompt_method"] == method and saved["method_lambda"] is None
    evaluated = runner.invoke(app, ["eval", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout)
    assert result["base_acc"] == final["base_acc"] and result["novel_acc"] == final["novel_acc"]


@pytest.mark.parametrize("method", METHODS)
def test_class_specific_context_trains_with_each_method(tmp_path, method):
    """--csc: KgCoOp's term and ProGrad's rule are per class / on the flattened (n_cls, n_ctx, width) gradient."""
    metrics = train(small_config(prompt_method=method, csc=True, epochs=1), tmp_path / "csc", progress=False)
    assert last_ctx(tmp_path / "csc").shape == (18, 4, 128)
    assert math.isfinite(metrics[-1]["loss"]) and math.isnan(metrics[-1]["novel_acc"])
