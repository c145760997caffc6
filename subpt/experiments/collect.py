"""Finding and reading the run folders of `subpt sweep` for `subpt table`: which runs exist, which were planned
(sweep.json), and the columns each finished run fills (with the reason for every one it cannot)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from subpt.errors import SubptError
from subpt.experiments.protocols import (
    BASE2NOVEL,
    COOP_11,
    FEWSHOT,
    IMAGENET_VARIANTS,
    PROTOCOLS,
    ZEROSHOT,
    Protocol,
    get_protocol,
    transfer_path,
)
from subpt.experiments.sweep_plan import MANIFEST, run_names

_SHOTS = re.compile(r"^shots(\d+)$")
_SEED = re.compile(r"^seed(\d+)$")

Key = tuple[str, int, int, str]  # dataset, shots, seed, run folder name (sweep_plan.run_name)


@dataclass
class RunResult:
    """The numbers of one run by column, and the reason for every column it cannot fill."""

    path: Path
    values: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def resolve_roots(roots: list[Path], protocol: str | None = None) -> dict[str, list[Path]]:
    """Protocol folders by protocol: a root is OUT/<protocol> (or holds sweep.json) or an OUT with several."""
    if protocol is not None:
        get_protocol(protocol)
    found: dict[str, list[Path]] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise SubptError(f"{root}: no such folder")
        name = _protocol_of(root)
        if name is None:
            subs = [root / p for p in PROTOCOLS if (root / p).is_dir()]
            if subs:
                for sub in subs:
                    p = _protocol_of(sub) or sub.name
                    if protocol is None or p == protocol:
                        found.setdefault(p, []).append(sub)
                continue
            if protocol is None:
                raise SubptError(
                    f"{root} is not a sweep folder (no {MANIFEST}, not named after a protocol): pass OUT/<protocol> "
                    f"of `subpt sweep`, or --protocol ({', '.join(PROTOCOLS)})"
                )
            name = protocol
        if protocol is not None and name != protocol:
            raise SubptError(f"{root} holds protocol {name}, not {protocol}")
        found.setdefault(name, []).append(root)
    if not found:
        raise SubptError(f"no runs of protocol {protocol} under {', '.join(map(str, roots))}")
    return found


def _protocol_of(folder: Path) -> str | None:
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            p = json.loads(manifest.read_text()).get("protocol")
        except json.JSONDecodeError as e:
            raise SubptError(f"{manifest} is not valid JSON ({e.msg} at line {e.lineno})") from e
        if p in PROTOCOLS:
            return p
    return folder.name if folder.name in PROTOCOLS else None


def _discover(root: Path) -> dict[Key, Path]:
    names = run_names()
    out: dict[Key, Path] = {}
    for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for shots_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and _SHOTS.match(p.name)):
            for seed_dir in sorted(p for p in shots_dir.iterdir() if p.is_dir() and _SEED.match(p.name)):
                for run in sorted(p for p in seed_dir.iterdir() if p.is_dir() and p.name in names):
                    k = int(_SHOTS.match(shots_dir.name).group(1))  # type: ignore[union-attr]
                    s = int(_SEED.match(seed_dir.name).group(1))  # type: ignore[union-attr]
                    out[(dataset_dir.name, k, s, run.name)] = run
    return out


def read_run(spec: Protocol, path: Path, method: str, targets: list[str]) -> RunResult:
    """The columns one run fills, with the reason for each it cannot (missing, unfinished, not evaluated)."""
    from subpt import runs

    columns = spec.columns(targets)
    res = RunResult(path)

    def all_missing(reason: str) -> RunResult:
        res.missing = {c: reason for c in columns}
        return res

    if not path.is_dir():
        return all_missing("not run")
    if method == ZEROSHOT:
        if not runs.has_zeroshot(path):
            return all_missing("no zeroshot.json (unfinished)")
        try:
            m = runs.read_zeroshot(path)
        except json.JSONDecodeError:
            return all_missing("zeroshot.json is damaged")
    else:
        try:
            cfg = runs.load_config(path)
        except SubptError as e:
            return all_missing(f"unreadable config ({' '.join(str(e).split())})")
        expected = run_names().get(method, (method, "coop"))[1]
        if (
            cfg.prompt_method != expected
        ):  # config.json decides; one written before --method existed reads as coop
            return all_missing(
                f"holds a {cfg.method} run (prompt_method {cfg.prompt_method!r}), not one of "
                f"{expected!r} as its folder name says"
            )
        metrics = runs.read_metrics(path)
        if not runs.is_finished(metrics, cfg.epochs):
            return all_missing(f"unfinished: {len(metrics)}/{cfg.epochs} epochs")
        m = metrics[-1]
    if spec.kind == BASE2NOVEL:
        res.values = {"Base": m["base_acc"], "Novel": m["novel_acc"], "HM": m["hm"]}
        for c, v in list(res.values.items()):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                del res.values[c]
                res.missing[c] = "no value (was it trained with subsample 'all'?)"
        return res
    if spec.kind == FEWSHOT:
        res.values = {"Accuracy": m["base_acc"]}
        return res
    res.values = {"Source": m["base_acc"]}
    for t in targets:
        tp = transfer_path(path, t)
        try:
            res.values[t] = json.loads(tp.read_text())["acc"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            res.missing[t] = f"transfer to {t} not evaluated"
    return res


def _dataset_order(name: str) -> tuple[int, str]:
    known = [*COOP_11, *IMAGENET_VARIANTS]
    return (known.index(name) if name in known else len(known), name)


@dataclass
class Collected:
    """Every run of one protocol found under its roots, and the grid the table expects."""

    spec: Protocol
    roots: list[Path]
    runs: dict[Key, RunResult]
    datasets: list[str]
    shots: dict[str, list[int]]  # per dataset
    seeds: list[int]
    methods: list[str]
    targets: dict[str, list[str]]  # per source dataset


def collect(protocol: str, roots: list[Path]) -> Collected:
    """Read every run of `protocol` under `roots` and the grid of expected runs (manifests + folders)."""
    spec = get_protocol(protocol)
    found: dict[Key, Path] = {}
    planned: set[Key] = set()
    targets: dict[str, list[str]] = {}
    for root in roots:
        for key, path in _discover(root).items():
            if key in found:
                raise SubptError(f"run {'/'.join(map(str, key))} is in two roots: {found[key]} and {path}")
            found[key] = path
        manifest = root / MANIFEST
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            planned |= {(d, int(k), int(s), meth) for d, k, s, meth in m.get("jobs", [])}
            for d, ts in m.get("targets", {}).items():
                targets[d] = list(dict.fromkeys([*targets.get(d, []), *ts]))
    keys = planned | set(found)
    if not keys:
        raise SubptError(
            f"no runs under {', '.join(map(str, roots))} (expected <dataset>/shots<K>/seed<S>/<method>/)"
        )
    datasets = sorted({k[0] for k in keys}, key=_dataset_order)
    shots = {d: sorted({k[1] for k in keys if k[0] == d}) for d in datasets}
    seeds = sorted({k[2] for k in keys})
    methods = [m for m in run_names() if any(k[3] == m for k in keys)]  # zero-shot, then method by method
    if spec.is_transfer:
        for (d, *_), path in found.items():
            extra = (
                sorted(p.stem for p in (path / "transfer").glob("*.json"))
                if (path / "transfer").is_dir()
                else []
            )
            targets[d] = list(dict.fromkeys([*targets.get(d, []), *extra]))
    runs: dict[Key, RunResult] = {}
    for d in datasets:
        for k in shots[d]:
            for s in seeds:
                for m in methods:
                    key = (d, k, s, m)
                    path = found.get(key, roots[0] / d / f"shots{k}" / f"seed{s}" / m)
                    runs[key] = read_run(spec, path, m, targets.get(d, []))
    return Collected(spec, list(roots), runs, datasets, shots, seeds, methods, targets)
