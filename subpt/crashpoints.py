"""Named points of a run's commit sequence where a test can end the process as a SIGKILL would.

`SUBPT_CRASH_AT=NAME` ends the process (exit 137, nothing flushed or cleaned) the first time it reaches the point
NAME; `NAME@N` the N-th time. Unset, a point costs one dictionary lookup. The points, in the order of an epoch:
  epoch-flushed       the epoch's trajectory rows are on disk, its checkpoint is not
  checkpoint-saved    ckpt/last.pt holds the epoch, metrics.jsonl does not yet
"""

from __future__ import annotations

import os

ENV = "SUBPT_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """End the process here if SUBPT_CRASH_AT names this point (and this is the requested hit)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os._exit(137)
