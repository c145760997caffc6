"""The kill-and-resume fixture of the resume tests: one `subpt train` run to the end, a second one killed with
SIGKILL after an early epoch's context is saved and resumed to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from subpt.runs import read_metrics


def train_full_and_killed(tmp_path: Path, args: list[str], epochs: int, env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Run `subpt train ARGS` into tmp_path/full; run it again into tmp_path/killed, SIGKILL it once ctx_003.pt
    exists, and resume it; returns (full, killed). Fails if the kill came too late to test anything."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, "-m", "subpt._cli.subpt_app", "train", *args]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([*cmd, "--out", str(full), "--json"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(killed), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed / "ckpt" / "ctx_003.pt"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_metrics(killed))
    # The kill lands after ctx_003.pt: before or after last.pt and the epoch's metrics line are written.
    assert 2 <= done < epochs, f"the kill came too late to test anything ({done} epochs done)"
    subprocess.run([*cmd, "--out", str(killed), "--resume", "--json"], check=True, env=env, capture_output=True)
    return full, killed
