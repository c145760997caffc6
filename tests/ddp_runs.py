"""One `subpt` command run as one process and as two torchrun (gloo, CPU) processes, for the DDP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "subpt._cli.subpt_app"]


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_and_two_processes(tmp_path: Path, args: list[str]) -> tuple[Path, Path]:
    """Run `subpt ARGS --out ONE` in one process and under torchrun with two; the two run folders (one, two)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([*CLI, *args, "--out", str(one)], check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), "-m", "subpt._cli.subpt_app"]
    done = subprocess.run([*launch, *args, "--out", str(two)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return one, two
