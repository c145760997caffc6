"""The proposals of a `DenseSource`: those read from its file, or the label-free generator's (from the pixels
alone), computed once per process and source and remembered for the few most recent sources."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from subpt.dense.proposals import Proposals, propose
from subpt.dense.settings import ProposalParams
from subpt.dense.source import DenseSource

REMEMBERED = 3  # sources whose generated proposals stay in memory (about 0.5 MB per scene of 128 px)
_MEMO: OrderedDict[str, list[Proposals]] = OrderedDict()


def source_id(source: DenseSource, params: ProposalParams) -> str:
    """A short id of a source and its proposal settings (the source's name and key, the parameters)."""
    h = hashlib.sha256(repr((sorted(source.key.items(), key=str), sorted(params.key().items()))).encode())
    return f"{source.name}-{h.hexdigest()[:20]}"


def source_proposals(source: DenseSource, params: ProposalParams | None = None) -> Sequence[Proposals]:
    """One `Proposals` per scene of `source`: its own (from a file) or `propose(scene.image, params)`."""
    if source.proposals is not None:
        if len(source.proposals) != len(source.scenes):
            raise ValueError(
                f"{source.name}: {len(source.proposals)} proposal sets for {len(source.scenes)} scenes"
            )
        return source.proposals
    params = params or ProposalParams()
    sid = source_id(source, params)
    if sid not in _MEMO:
        _MEMO[sid] = [propose(source.scenes[i].image, params) for i in range(len(source.scenes))]
        while len(_MEMO) > REMEMBERED:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(sid)
    return _MEMO[sid]
