"""The real-CLIP path on one GPU, offline, in one script: precisions, SubPT's subspace, torchrun, memory, speed.

On a CUDA machine with no internet (random ViT-B-16 weights, a fake dataset in CoOp's DTD layout written by this
script), through the project's own code (subpt.train.train, subpt.basis_plan.run_basis, subpt.train.backward_step):
1. under fp32, bf16 and fp16 (with the grad scaler): CoOp with recording for a few epochs, its early basis, then
   SubPT+NFL from it; checks ctx - ctx0 of the SubPT+NFL run lies in span(U) to 1e-5 (relative);
2. a one-process `torchrun` of the same CoOp run: the process group (NCCL on a GPU, gloo on the CPU) is up, an
   all-reduce goes through it, and the run ends where the plain fp32 run ends;
3. peak GPU memory of one training step with 1,000 classes, all prompts at once vs --text-chunk 100 (the same
   gradient);
4. the CoOp epoch-time ratio of the image tower every step on fresh augmentations vs cached augmented views
   (benchmarks/aug_views.py);
5. the CoOp+NFL step against the CoOp step at 100 and 1,000 classes (benchmarks/prefix_share.py's nfl_bench).
Prints one table; exits 1 when a check fails. Sized for under 8 minutes on one GPU.

Usage: python benchmarks/gpu_check.py [--device cuda] [--out DIR]
CPU smoke test (tests/test_gpu_check.py): python benchmarks/gpu_check.py --device cpu --tiny
  (the embedded tiny CLIP, fp32 and bf16 only, 60 classes for the memory step, gloo for torchrun).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5  # ctx - ctx0 must lie in span(U) to this relative residual
CLASSES = [
    "banded",
    "blotchy",
    "braided",
    "bubbly",
    "bumpy",
    "chequered",
    "cobwebbed",
    "cracked",
    "crosshatched",
    "crystalline",
]


@dataclass(frozen=True)
class Size:
    """How big each part of the check is."""

    model: str
    pretrained: str
    classes: int  # of the fake dataset (half base, half novel)
    per_class: int  # images per class in each of train, val and test
    shots: int
    epochs: int
    window: str  # the early window of the basis (snapshots, centred)
    rank: int
    aug_views: int | None  # None: the model's default
    memory_classes: int
    chunk: int
    bench: dict
    nfl_classes: tuple[int, ...]  # class counts of the CoOp+NFL / CoOp step ratio


GPU = Size(
    "ViT-B-16",
    "random",
    classes=10,
    per_class=8,
    shots=4,
    epochs=5,
    window="epochs:1-4",
    rank=2,
    aug_views=None,
    memory_classes=1000,
    chunk=100,
    bench={"steps": 4, "batch": 32, "views": 16, "repeats": 3},
    nfl_classes=(100, 1000),
)
TINY = Size(
    "subpt-tiny",
    "embedded",
    classes=4,
    per_class=4,
    shots=2,
    epochs=4,
    window="epochs:1-4",
    rank=2,
    aug_views=2,
    memory_classes=60,
    chunk=16,
    bench={"steps": 1, "batch": 8, "views": 2, "repeats": 1},
    nfl_classes=(10,),
)


def make_dataset(root: Path, n_classes: int, per_class: int, seed: int = 0) -> None:
    """Write a fake DTD in CoOp's layout under `root`: dtd/images/<class>/*.jpg and split_zhou_DescribableTextures.json
    with train, val and test lists of [path, label, class name]."""
    rng = np.random.default_rng(seed)
    d = root / "dtd"
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    names = (CLASSES + [f"texture{i}" for i in range(len(CLASSES), n_classes)])[:n_classes]
    for label, name in enumerate(names):
        for part in split:
            for k in range(per_class):
                rel = f"{name}/{name}_{part}_{k:04d}.jpg"
                (d / "images" / name).mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
                pixels[..., label % 3] = 255 * (
                    label % 2
                )  # a class colour cue, so training has something to learn
                Image.fromarray(pixels).save(d / "images" / rel, format="JPEG")
                split[part].append([rel, label, name])
    (d / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))


def config(size: Size, root: Path, device: str, **kw):
    """The TrainConfig of a check run on the fake dataset."""
    from subpt.config import TrainConfig

    return TrainConfig(
        dataset="dtd",
        root=str(root),
        model=size.model,
        pretrained=size.pretrained,
        shots=size.shots,
        epochs=size.epochs,
        n_ctx=4,
        device=device,
        aug_views=size.aug_views,
        eval_every=size.epochs,
        **kw,
    )


def train_run(cfg, run: Path) -> None:
    """subpt.train.train into `run` (replacing it), with torch's generator seeded first: `--pretrained random`
    draws the model's weights from it, so every run of the check (and the torchrun child) has the same weights."""
    from subpt.train import train

    torch.manual_seed(0)
    train(cfg, run, overwrite=True, progress=False)


def span_residual(run: Path, basis_file: Path) -> float:
    """||(I - U^T U)(ctx - ctx0)|| / ||ctx - ctx0|| of a run's final context, in float64."""
    from gradflow.subspace import Basis
    from gradflow.trajectory import TrajectoryStore

    u = Basis.load(basis_file).U.double()
    ctx0 = torch.as_tensor(
        TrajectoryStore.open(run / "trajectory").rows("snapshots", epochs=(0, 0))[0]
    ).double()
    ctx = torch.load(run / "ckpt" / "last.pt", weights_only=True)["ctx"].double().flatten()
    d = ctx - ctx0
    return float((d - u.T @ (u @ d)).norm() / d.norm())


def check_precision(size: Size, root: Path, out: Path, device: str, precision: str) -> dict:
    """CoOp (recording) -> early basis -> SubPT+NFL under `precision`; the span check of the SubPT+NFL run."""
    from subpt.basis_plan import run_basis
    from subpt.runs import read_metrics

    t0 = time.perf_counter()
    coop, subpt, basis = (
        out / f"coop-{precision}",
        out / f"subpt_nfl-{precision}",
        out / f"early-{precision}.pt",
    )
    train_run(config(size, root, device, precision=precision, record_grads=True), coop)
    run_basis(coop, size.window, size.rank, basis)
    train_run(config(size, root, device, precision=precision, basis=str(basis), nfl=True), subpt)
    residual = span_residual(subpt, basis)
    last = read_metrics(subpt)[-1]
    finite = all(np.isfinite(m["loss"]) for m in read_metrics(coop) + read_metrics(subpt))
    return {
        "check": f"{precision}: CoOp -> basis -> SubPT+NFL",
        "ok": finite and residual <= TOLERANCE,
        "result": f"ctx - ctx0 off span(U): {residual:.1e} (<= {TOLERANCE:.0e}); SubPT+NFL base "
        f"{last['base_acc']:.1f} novel {last['novel_acc']:.1f}; losses finite: {finite}",
        "seconds": time.perf_counter() - t0,
        "residual": residual,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_torchrun(size: Size, root: Path, out: Path, device: str) -> dict:
    """A one-process torchrun of the fp32 CoOp run (this script as the child); compares it with the plain run."""
    t0 = time.perf_counter()
    run = out / "coop-torchrun"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(Path(__file__).resolve()),
        "--ddp-child",
        "--device",
        device,
        "--root",
        str(root),
        "--out",
        str(run),
        *(["--tiny"] if size is TINY else []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {
            "check": "torchrun, 1 process",
            "ok": False,
            "result": f"exit {done.returncode}: {tail[-300:]}",
            "seconds": time.perf_counter() - t0,
        }
    child = json.loads((run / "ddp.json").read_text())
    a = torch.load(out / "coop-fp32" / "ckpt" / "last.pt", weights_only=True)["ctx"]
    b = torch.load(run / "ckpt" / "last.pt", weights_only=True)["ctx"]
    diff = float((a - b).abs().max())
    want = "nccl" if device.startswith("cuda") else "gloo"
    tol = (
        1e-4 if device.startswith("cuda") else 0.0
    )  # the CPU is bit-identical; GPU kernels may round differently
    ok = child["backend"] == want and child["all_reduce"] == 2.0 and diff <= tol
    return {
        "check": "torchrun, 1 process",
        "ok": ok,
        "result": f"backend {child['backend']} (want {want}), all-reduce ok: {child['all_reduce'] == 2.0}; "
        f"ctx vs the plain fp32 run: max |diff| {diff:.1e} (<= {tol:.0e})",
        "seconds": time.perf_counter() - t0,
    }


def ddp_child(size: Size, root: Path, out: Path, device: str) -> None:
    """Under torchrun: train the fp32 CoOp run, then report the process group's backend and one all-reduce."""
    import torch.distributed as dist

    train_run(config(size, root, device, precision="fp32", record_grads=True), out)
    backend = dist.get_backend() if dist.is_initialized() else "none"
    t = torch.full((1,), 2.0, device=torch.device(device) if dist.is_initialized() else "cpu")
    if dist.is_initialized():
        dist.all_reduce(t)
        dist.destroy_process_group()
    (out / "ddp.json").write_text(json.dumps({"backend": backend, "all_reduce": float(t.item())}))


def check_memory(size: Size, device: str) -> dict:
    """One training step with `size.memory_classes` classes, all prompts at once and in chunks: peak GPU memory of
    each and how far their gradients differ."""
    import torch.nn.functional as F

    from subpt.backbone import load_backbone
    from subpt.config import PromptConfig, TrainConfig
    from subpt.prompts import PromptLearner
    from subpt.train import backward_step

    t0 = time.perf_counter()
    dev = torch.device(device)
    torch.manual_seed(0)
    bb = load_backbone(size.model, size.pretrained, dev)
    n = size.memory_classes
    learner = PromptLearner(bb, [f"class number {i}" for i in range(n)], PromptConfig(n_ctx=16), seed=1)
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(32, bb.embed_dim, generator=gen), dim=-1).to(dev)
    y = torch.randint(n, (32,), generator=gen).to(dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    peaks, grads = {}, {}
    for chunk in (None, size.chunk):
        learner.ctx.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
        backward_step(learner, x, y, 32, None, TrainConfig(text_chunk=chunk), scaler)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            peaks[chunk] = (torch.cuda.max_memory_allocated(dev) - before) / 2**20
        grads[chunk] = learner.ctx.grad.detach().double().clone()
    rel = float((grads[None] - grads[size.chunk]).norm() / grads[None].norm())
    if peaks:
        mem = (
            f"peak +{peaks[None]:,.0f} MiB all at once / +{peaks[size.chunk]:,.0f} MiB in chunks of {size.chunk} "
            f"(x{peaks[None] / peaks[size.chunk]:.1f})"
        )
    else:
        mem = "peak GPU memory: not measured on the CPU"
    return {
        "check": f"{n:,} classes, --text-chunk {size.chunk}",
        "ok": rel <= 1e-4,
        "result": f"{mem}; gradients differ by {rel:.1e} relative",
        "seconds": time.perf_counter() - t0,
        "peak_mib": {str(k): v for k, v in peaks.items()},
    }


def check_speed(size: Size, device: str) -> dict:
    """benchmarks/aug_views.py at this size: the epoch-time ratio of the image tower every step to cached views."""
    sys.path.insert(0, str(HERE))
    import aug_views  # benchmarks/aug_views.py

    t0 = time.perf_counter()
    args = argparse.Namespace(
        model=size.model, pretrained=size.pretrained, device=device, classes=32, image_size=64, **size.bench
    )
    r = aug_views.bench(args)
    ok = np.isfinite(r["ratio"]) and r["ratio"] > 0
    return {
        "check": f"CoOp epoch, {size.bench['views']} cached views vs image tower",
        "ok": bool(ok),
        "result": f"x{r['ratio']:.1f} slower without the cache ({r['tower_epoch_s']:.3f} s / "
        f"{r['cached_epoch_s']:.3f} s per epoch of {size.bench['steps']} x {size.bench['batch']}); "
        f"views encoded once in {r['encode_views_s']:.2f} s",
        "seconds": time.perf_counter() - t0,
        "ratio": r["ratio"],
    }


def check_nfl_cost(size: Size, device: str) -> dict:
    """benchmarks/prefix_share.py's CoOp+NFL step against the CoOp step, NFL with as many names as classes."""
    sys.path.insert(0, str(HERE))
    import prefix_share  # benchmarks/prefix_share.py

    from subpt.backbone import load_backbone

    t0 = time.perf_counter()
    backbone = load_backbone(size.model, size.pretrained, device)
    parts, ratios = [], []
    for n in size.nfl_classes:
        r = prefix_share.nfl_bench(backbone, n, size.bench["steps"])
        ratios.append(r["ours_nfl"] / r["ours"])
        parts.append(
            f"{n} classes: x{ratios[-1]:.2f} (two passes x{r['ours_nfl_two_pass'] / r['ours']:.2f}, "
            f"{prefix_share.NFL_FEWSHOT} names x{r['ours_nfl100'] / r['ours']:.2f})"
        )
    return {
        "check": "CoOp+NFL step / CoOp step",
        "ok": all(np.isfinite(x) and x > 0 for x in ratios),
        "result": "; ".join(parts),
        "seconds": time.perf_counter() - t0,
        "ratios": ratios,
    }


def print_table(rows: list[dict], header: str) -> None:
    """The results as one plain-text table."""
    print(header)
    width = max(len(r["check"]) for r in rows)
    print(f"{'check':<{width}}  {'ok':<4}  {'s':>6}  result")
    print("-" * (width + 60))
    for r in rows:
        print(f"{r['check']:<{width}}  {'ok' if r['ok'] else 'FAIL':<4}  {r['seconds']:>6.1f}  {r['result']}")


def main(argv: list[str] | None = None) -> int:
    """Run every check, print the table, write OUT/gpu_check.json; 0 when every check passed, else 1."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--tiny", action="store_true", help="tiny sizes (the embedded tiny CLIP): the CPU smoke test"
    )
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = TINY if args.tiny else GPU
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "error: --device cuda: no CUDA GPU is visible; run with --device cpu --tiny for the CPU smoke test",
            file=sys.stderr,
        )
        return 2
    if args.ddp_child:
        ddp_child(size, args.root, args.out, args.device)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="subpt-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SUBPT_CACHE", str(out / "cache"))  # the torchrun child inherits it
    root = out / "data"
    make_dataset(root, size.classes, size.per_class)
    t0 = time.perf_counter()
    precisions = ["fp32", "bf16", "fp16"] if args.device.startswith("cuda") else ["fp32", "bf16"]
    rows = [check_precision(size, root, out, args.device, p) for p in precisions]
    if "fp16" not in precisions:
        rows.append(
            {
                "check": "fp16: CoOp -> basis -> SubPT+NFL",
                "ok": True,
                "seconds": 0.0,
                "result": "skipped: fp16 with the grad scaler needs a GPU",
            }
        )
    rows.append(check_torchrun(size, root, out, args.device))
    rows.append(check_memory(size, args.device))
    rows.append(check_speed(size, args.device))
    rows.append(check_nfl_cost(size, args.device))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print_table(
        rows,
        f"gpu_check: {size.model} ({size.pretrained} weights) on {device_name}, torch {torch.__version__}, "
        f"{time.perf_counter() - t0:.0f} s in all",
    )
    (out / "gpu_check.json").write_text(
        json.dumps({"device": device_name, "model": size.model, "rows": rows}, indent=2)
    )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
