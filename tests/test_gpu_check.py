"""benchmarks/gpu_check.py, the GPU check, as a CPU smoke test (--device cpu --tiny), so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_on_the_cpu(tmp_path):
    """Every check of the script runs at tiny size on the CPU and passes: SubPT+NFL stays in span(U) under fp32 and
    bf16, a one-process torchrun joins a gloo group and matches the plain run, chunked classes give the same
    gradient, and the cached-views benchmark reports a ratio."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SUBPT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["check"]: r for r in report["rows"]}
    assert all(r["ok"] for r in rows.values())
    for precision in ("fp32", "bf16"):
        assert rows[f"{precision}: CoOp -> basis -> SubPT+NFL"]["residual"] <= 1e-5
    assert "backend gloo" in rows["torchrun, 1 process"]["result"]
    assert any(r["check"].startswith("60 classes, --text-chunk") for r in report["rows"])
    assert [r["ratio"] for r in report["rows"] if "ratio" in r][0] > 0
    assert rows["CoOp+NFL step / CoOp step"]["ratios"][0] > 0
    assert "torchrun, 1 process" in done.stdout and "ok" in done.stdout
