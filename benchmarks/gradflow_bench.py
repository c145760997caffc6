"""gradflow benchmark: recorder overhead per training step, and compute_spectrum time and memory.

Run ``python benchmarks/gradflow_bench.py`` (full size: 10,000 steps x 8,192 dims) or with
``--quick`` (1,000 x 2,048). Everything printed is measured in this run.

(a) Recorder overhead: a synthetic training loop whose only trainable tensor is a (16, 512) context
    feeding a small frozen MLP; seconds per step with and without a GradientRecorder (every step,
    float32, 256-row chunks, including the final flush), interleaved over several rounds, median.
    :func:`measure_recorder_overhead` takes any ``step_fn(step)`` so other loops can reuse it.
(b) compute_spectrum on a trajectory written to a TrajectoryStore on disk, each path in its own
    subprocess: "exact" loads all rows into memory and runs the exact method; "streaming" runs the
    randomised method over ``store.iter_chunks`` without loading all rows. Peak memory is the growth
    of the child's peak resident set size (resource.getrusage ru_maxrss) from after its imports to the
    end, so for the exact path it includes the loaded rows themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gradflow.recorder import GradientRecorder  # noqa: E402
from gradflow.trajectory import TrajectoryStore  # noqa: E402


def measure_recorder_overhead(
    step_fn: Callable[[int], object],
    params: Sequence[tuple[str, torch.nn.Parameter]],
    steps: int,
    *,
    rounds: int = 5,
    warmup: int = 20,
    every: int = 1,
    dtype: str = "float32",
    chunk_rows: int = 256,
    workdir: str | Path | None = None,
) -> dict[str, float]:
    """Seconds per step of ``step_fn`` alone and followed by ``GradientRecorder.record``; median over rounds.

    ``step_fn(step)`` must run one full training step (zero_grad, forward, backward, optimiser step)
    and leave the parameters' ``.grad`` populated. Rounds alternate between no recording and
    recording into a fresh store. Reported: the steady-state loop ratio (recording loop only) and the
    end-to-end ratio that also charges creating the store and the final flush/close to the steps.
    """
    for s in range(warmup):
        step_fn(s)
    base, loop, total, close = [], [], [], []
    root = Path(tempfile.mkdtemp(prefix="gradflow-overhead-", dir=workdir))
    try:
        for r in range(rounds):
            t0 = time.perf_counter()
            for s in range(steps):
                step_fn(s)
            base.append((time.perf_counter() - t0) / steps)
            path = root / f"round{r}"
            t0 = time.perf_counter()
            rec = GradientRecorder(params, path, every=every, dtype=dtype, chunk_rows=chunk_rows)
            t1 = time.perf_counter()
            for s in range(steps):
                step_fn(s)
                rec.record(s, epoch=0)
            t2 = time.perf_counter()
            rec.close()
            t3 = time.perf_counter()
            loop.append((t2 - t1) / steps)
            total.append((t3 - t0) / steps)
            close.append(t3 - t2)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    b, lp, tt = statistics.median(base), statistics.median(loop), statistics.median(total)
    return {
        "steps": steps,
        "rounds": rounds,
        "baseline_s_per_step": b,
        "recorded_s_per_step": lp,
        "ratio": lp / b,
        "overhead_s_per_step": lp - b,
        "end_to_end_s_per_step": tt,
        "end_to_end_ratio": tt / b,
        "close_s": statistics.median(close),
    }


def synthetic_step_fn(seed: int = 0) -> tuple[Callable[[int], object], list[tuple[str, torch.nn.Parameter]]]:
    """A CoOp-like toy: a trainable (16, 512) context feeding a frozen 2-layer MLP, batch 32, SGD."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.nn.Parameter(0.02 * torch.randn(16, 512, generator=g))
    mlp = torch.nn.Sequential(torch.nn.Linear(16 * 512 // 64, 256), torch.nn.GELU(), torch.nn.Linear(256, 10))
    for p in mlp.parameters():
        p.requires_grad_(False)
    x = torch.randn(32, 512, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    opt = torch.optim.SGD([ctx], lr=0.002, momentum=0.9)

    def step(_: int) -> float:
        opt.zero_grad(set_to_none=False)
        h = torch.tanh(x @ ctx.T)  # (32, 16)
        h = (h.unsqueeze(-1) * ctx[:, :8].unsqueeze(0)).reshape(32, -1)  # (32, 128)
        loss = torch.nn.functional.cross_entropy(mlp(h), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step, [("ctx", ctx)]


def write_trajectory(path: Path, n: int, dim: int, rank: int = 32, seed: int = 0) -> float:
    """Write n rows of a decaying-spectrum signal plus noise to a store; returns seconds taken."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)
    scales = np.geomspace(10.0, 0.5, rank).astype(np.float32)
    t0 = time.perf_counter()
    with TrajectoryStore.create(path, [("ctx", (dim // 512, 512) if dim % 512 == 0 else (dim,))]) as store:
        block = 256
        for start in range(0, n, block):
            m = min(block, n - start)
            rows = (rng.standard_normal((m, rank), dtype=np.float32) * scales) @ basis
            rows += 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
            for i in range(m):
                store.append("grads", rows[i], step=start + i, epoch=(start + i) // 100)
    return time.perf_counter() - t0


def _status_kib(field: str) -> int | None:
    """A memory field of /proc/self/status in KiB (None where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux clear_refs) and return it in KiB.

    Without /proc the import-time peak is kept (ru_maxrss), which can hide small growth.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        rss = _status_kib("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kib() -> int:
    """Peak RSS since the last reset, in KiB."""
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(path_kind: str, store_path: str, k: int, out: str) -> None:
    """Subprocess body: run one compute_spectrum path and write timings, memory and results."""
    from gradflow.spectrum import compute_spectrum

    rss0 = _reset_peak_rss()
    store = TrajectoryStore.open(store_path)
    t0 = time.perf_counter()
    load_s = 0.0
    if path_kind == "exact":
        rows = store.rows("grads")
        load_s = time.perf_counter() - t0
        spec = compute_spectrum(rows, k=k, method="exact")
    else:
        spec = compute_spectrum(lambda: store.iter_chunks("grads"), k=k, method="randomized")
    total_s = time.perf_counter() - t0
    rss1 = _peak_rss_kib()
    np.save(out + ".components.npy", spec.components[:k])
    Path(out).write_text(
        json.dumps(
            {
                "path": path_kind,
                "seconds": total_s,
                "load_seconds": load_s,
                "peak_rss_growth_mib": (rss1 - rss0) / 1024.0,
                "n_rows": spec.n_rows,
                "dim": spec.dim,
                "singular_values": spec.singular_values[:k].tolist(),
                "evr": spec.explained_variance_ratio[:k].tolist(),
            }
        )
    )


def run_child(path_kind: str, store_path: Path, k: int, workdir: Path, threads: int) -> dict:
    """Run :func:`child` in a fresh interpreter with ``threads`` BLAS threads and return its report."""
    out = workdir / f"{path_kind}.json"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        path_kind,
        "--store",
        str(store_path),
        "--k",
        str(k),
        "--out",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    subprocess.run(cmd, check=True, env=env)
    report = json.loads(out.read_text())
    report["components"] = np.load(str(out) + ".components.npy")
    return report


def main() -> None:
    """Parse arguments and run the benchmark (or one child measurement)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (1,000 x 2,048) for a fast check")
    ap.add_argument("--k", type=int, default=10, help="components computed by compute_spectrum")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/torch threads (default 1: on a shared machine oversubscribed BLAS threads are far slower)",
    )
    ap.add_argument("--workdir", default=None, help="folder for the temporary store (default: system temp)")
    ap.add_argument("--child", choices=["exact", "streaming"], help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.store, args.k, args.out)
        return

    n, dim, steps = (1000, 2048, 256) if args.quick else (10_000, 8192, 1024)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} torch/BLAS thread(s), load average before start {os.getloadavg()[0]:.2f}"
    )
    step_fn, params = synthetic_step_fn()
    ov = measure_recorder_overhead(step_fn, params, steps, workdir=args.workdir)
    print(
        f"(a) recorder overhead, ctx (16, 512) -> frozen MLP, batch 32, {steps} steps x {ov['rounds']} rounds:"
    )
    print(
        f"    no recording {1e3 * ov['baseline_s_per_step']:.3f} ms/step, recording every step "
        f"{1e3 * ov['recorded_s_per_step']:.3f} ms/step, ratio {ov['ratio']:.3f} "
        f"(+{1e6 * ov['overhead_s_per_step']:.1f} us/step, steady state)"
    )
    print(
        f"    end to end incl. creating the store and the final close ({1e3 * ov['close_s']:.0f} ms, "
        f"writes and fsyncs the last chunk): ratio {ov['end_to_end_ratio']:.3f}"
    )

    work = Path(tempfile.mkdtemp(prefix="gradflow-bench-", dir=args.workdir))
    try:
        store_path = work / "trajectory"
        write_s = write_trajectory(store_path, n, dim)
        size = sum(f.stat().st_size for f in store_path.rglob("*.npy")) / 2**20
        print(
            f"(b) store: {n} rows x {dim} float32 written in {write_s:.1f} s ({size:.0f} MiB on disk, "
            f"{1e6 * write_s / n:.0f} us/row incl. data generation)"
        )
        reports = {
            kind: run_child(kind, store_path, args.k, work, args.threads) for kind in ("exact", "streaming")
        }
        for kind, r in reports.items():
            extra = f" (of which loading rows {r['load_seconds']:.1f} s)" if kind == "exact" else ""
            print(
                f"    {kind:9s}: {r['seconds']:.1f} s{extra}, peak RSS growth {r['peak_rss_growth_mib']:.0f} MiB"
            )
        from gradflow.subspace import principal_angles

        e, s = reports["exact"], reports["streaming"]
        angles = principal_angles(e["components"], s["components"])
        rel = np.abs(np.array(s["singular_values"]) - e["singular_values"]) / np.array(e["singular_values"])
        print(
            f"    streaming vs exact, top {args.k}: max principal angle {angles.max():.3g} deg, "
            f"max relative singular-value error {rel.max():.2e}, "
            f"explained variance {sum(s['evr']):.4f} vs {sum(e['evr']):.4f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
