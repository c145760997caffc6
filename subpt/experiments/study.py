"""The robustness study: one fixed method setting over a grid of world variants x seeds, and how often each of
the paper's claims holds.

For every (variant, seed) the study runs zero-shot, CoOp (recording), CoOp+NFL, SubPT (early basis of the CoOp
run), SubPT+NFL (early basis of the CoOp+NFL run) and SubPT with the late basis of the CoOp run, into
OUT/<variant>/seed<S>/<method>/, and every baseline (a prompt-learning method of subpt.config.PROMPT_METHODS other
than CoOp: KgCoOp, ProGrad, ...) with the same setting into OUT/<variant>/seed<S>/<key>/ (kgcoop, prograd, ...).
Finished runs are kept when the study is started again, an interrupted one continues from its checkpoint.
OUT/study.json holds every number; OUT/study.md the tables.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from subpt.basis_plan import basis_rank, run_basis
from subpt.config import METHOD_PRESETS, PROMPT_METHODS, TrainConfig, method_presets
from subpt.errors import SubptError
from subpt.evaluate import harmonic_mean
from subpt.experiments.pipeline import train_stage
from subpt.runs import check_output_folder, read_metrics, read_zeroshot

# The one method setting of the miniature, for every variant: CoOp with 4 context vectors initialised from
# "a photo of a" (CoOp's init variant), 16 shots, CoOp's optimiser with lr 0.02 for 20 epochs: ten times CoOp's
# lr over a tenth of its 200 epochs, so a run takes seconds on 2 cores. SubPT's early window is the first 30 %
# of the epochs (the reference's 30 of 100) with the reference proportion of rank (10 of 30).
METHOD_SETTING: dict[str, Any] = {"shots": 16, "n_ctx": 4, "ctx_init": "a photo of a", "lr": 0.02, "epochs": 20}
EARLY_SHARE = 0.3

METHODS: tuple[str, ...] = ("CoOp", "CoOp+NFL", "SubPT", "SubPT+NFL", "SubPT (late basis)")
RUN_NAMES = {"CoOp": "coop", "CoOp+NFL": "coop_nfl", "SubPT": "subpt", "SubPT+NFL": "subpt_nfl",
             "SubPT (late basis)": "subpt_late"}

def baseline_names() -> list[str]:
    """Every prompt-learning method other than CoOp (subpt.config.PROMPT_METHODS): the study's default baselines."""
    return [p for p in PROMPT_METHODS if p != "coop"]


def check_baselines(baselines: Sequence[str]) -> list[str]:
    """The baselines as given, or a one-line SubptError for an unknown, repeated or CoOp entry."""
    known = baseline_names()
    for b in baselines:
        if b not in known:
            raise SubptError(f"--baselines: unknown baseline {b!r}; choose from {', '.join(known)} or 'none'")
    if len(set(baselines)) != len(baselines):
        raise SubptError(f"--baselines lists a method twice: {','.join(baselines)}")
    return list(baselines)


def baseline_label(prompt: str) -> str:
    """The study's name of a baseline's run: its display name (KgCoOp, ProGrad, ...)."""
    return PROMPT_METHODS[prompt][0]


def baseline_config(base: TrainConfig, prompt: str, epochs: int | None = None) -> TrainConfig:
    """The study's run of a baseline: the CoOp run's setting and context with the method, and the method's published
    schedule where it has one (`subpt.config.METHOD_PRESETS`: CoCoOp's batch 1, 10 epochs, lr 0.002), its epochs
    only unless the study was given --epochs."""
    given = {"n_ctx", "ctx_init"} | ({"epochs"} if epochs is not None else set())
    return replace(base, prompt_method=prompt, **method_presets(prompt, given))


@dataclass(frozen=True)
class Variant:
    """One member of the world family: a dataset and its task options."""

    name: str
    dataset: str = "world-objects"
    options: dict[str, Any] = field(default_factory=dict)


# The default grid: the default task, two random partitions, another class set, a spurious cue of each kind,
# another noise level and another class count; everything else at the dataset's defaults.
DEFAULT_GRID: tuple[Variant, ...] = (
    Variant("default"),
    Variant("partition-1", options={"partition_seed": 1}),
    Variant("partition-2", options={"partition_seed": 2}),
    Variant("classes-1", options={"class_seed": 1}),
    Variant("cue-mark", options={"cue": "mark"}),
    Variant("cue-background", options={"cue": "background"}),
    Variant("noise-20", options={"noise": 20.0}),
    Variant("classes-32", options={"n_classes": 32}),
)


def variants_by_name(names: Sequence[str] | None) -> list[Variant]:
    """The default grid, or the named subset of it (a clear error for an unknown name)."""
    if not names:
        return list(DEFAULT_GRID)
    known = {v.name: v for v in DEFAULT_GRID}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SubptError(f"unknown study variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def read_grid(path: Path) -> list[Variant]:
    """Variants from a JSON file: {"name": {"dataset": "world-objects", "options": {...}}, ...}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SubptError(f"--grid {path}: cannot read it ({e.strerror})") from e
    except UnicodeDecodeError:
        raise SubptError(f"--grid {path} is not a UTF-8 JSON file") from None
    except json.JSONDecodeError as e:
        raise SubptError(f"--grid {path} is not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict) or not data:
        raise SubptError(f"--grid {path} must map variant names to {{'dataset': ..., 'options': {{...}}}}")
    out = []
    for name, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("options", {}), dict) or set(spec) - {"dataset", "options"}:
            raise SubptError(f"--grid {path}: variant {name!r} must be {{'dataset': NAME, 'options': {{...}}}}")
        out.append(Variant(str(name), str(spec.get("dataset", "world-objects")), dict(spec.get("options", {}))))
    return out


def study_config(variant: Variant, seed: int, epochs: int | None = None, aug_views: int | None = None) -> TrainConfig:
    """The study's CoOp run of one variant and seed (recording gradients for the diagnostics); `aug_views` None
    is the model's default number of augmented training views."""
    setting = {**METHOD_SETTING, **({} if epochs is None else {"epochs": epochs})}
    return TrainConfig(dataset=variant.dataset, dataset_options=dict(variant.options), seed=seed, record_grads=True,
                       aug_views=aug_views, **setting)


def basis_plan(epochs: int) -> tuple[str, str, int]:
    """(early window, late window, rank) of the study's bases for runs of `epochs` epochs."""
    if epochs < 4:
        raise SubptError(f"the study needs at least 4 epochs to have early and late windows, got {epochs}")
    t = max(3, round(EARLY_SHARE * epochs))
    return f"epochs:1-{t}", f"epochs:{epochs - t + 1}-{epochs}", basis_rank(t)


def run_unit(base: TrainConfig, out: Path, resume: bool = True, progress: bool = False,
             baselines: Sequence[TrainConfig] = ()) -> dict[str, Path]:
    """Every method of one (variant, seed) into `out`, then each baseline's run (configs from `baseline_config`);
    returns method -> run folder."""
    out = Path(out)
    early, late, rank = basis_plan(base.epochs)
    runs = {m: out / RUN_NAMES[m] for m in METHODS}
    runs |= {baseline_label(b.prompt_method): out / b.prompt_method for b in baselines}

    def stage(cfg: TrainConfig, method: str) -> None:
        train_stage(cfg, runs[method], progress=progress, resume=resume, overwrite=True)

    stage(base, "CoOp")
    stage(replace(base, nfl=True), "CoOp+NFL")
    run_basis(runs["CoOp"], early, rank, out / "early.pt")
    run_basis(runs["CoOp"], late, rank, out / "late.pt")
    run_basis(runs["CoOp+NFL"], early, rank, out / "early_nfl.pt")
    stage(replace(base, basis=str(out / "early.pt")), "SubPT")
    stage(replace(base, basis=str(out / "early_nfl.pt"), nfl=True), "SubPT+NFL")
    stage(replace(base, basis=str(out / "late.pt")), "SubPT (late basis)")
    for b in baselines:
        stage(b, baseline_label(b.prompt_method))
    return runs


def unit_record(runs: dict[str, Path]) -> dict[str, Any]:
    """Final Base/Novel/HM of every method (and baseline) in `runs`, zero-shot, and CoOp's peaks, of one
    (variant, seed)."""
    zs = read_zeroshot(runs["CoOp"])
    rec: dict[str, Any] = {"zero-shot": {k: zs[k] for k in ("base_acc", "novel_acc", "hm")}}
    for m in runs:
        last = read_metrics(runs[m])[-1]
        rec[m] = {k: last[k] for k in ("base_acc", "novel_acc", "hm")}
    rec["coop_curve"] = coop_curve(runs["CoOp"])
    return rec


def coop_curve(run_dir: Path) -> dict[str, float]:
    """A CoOp run's base and novel peaks (value and epoch), finals, and final train accuracy."""
    ms = read_metrics(run_dir)
    peak_b = max(ms, key=lambda x: x["base_acc"])
    peak_n = max(ms, key=lambda x: x["novel_acc"])
    return {"base_peak": peak_b["base_acc"], "base_peak_epoch": peak_b["epoch"], "base_final": ms[-1]["base_acc"],
            "novel_peak": peak_n["novel_acc"], "novel_peak_epoch": peak_n["epoch"], "novel_final": ms[-1]["novel_acc"],
            "train_final": ms[-1]["train_acc"]}


# The paper's claims, each a test on one (variant, seed) record.
CLAIMS: dict[str, Callable[[dict], bool]] = {
    "CoOp novel < zero-shot novel": lambda r: r["CoOp"]["novel_acc"] < r["zero-shot"]["novel_acc"],
    "CoOp base peak - final >= 1": lambda r: r["coop_curve"]["base_peak"] - r["coop_curve"]["base_final"] >= 1.0,
    "SubPT HM > CoOp HM": lambda r: r["SubPT"]["hm"] > r["CoOp"]["hm"],
    "CoOp+NFL HM > CoOp HM": lambda r: r["CoOp+NFL"]["hm"] > r["CoOp"]["hm"],
    "SubPT+NFL HM > CoOp HM": lambda r: r["SubPT+NFL"]["hm"] > r["CoOp"]["hm"],
    "late basis HM < early basis HM": lambda r: r["SubPT (late basis)"]["hm"] < r["SubPT"]["hm"],
}


def baseline_claims(labels: Sequence[str]) -> dict[str, Callable[[dict], bool]]:
    """One claim per baseline: SubPT+NFL's HM above the baseline's, on one (variant, seed) record."""
    return {f"SubPT+NFL HM > {b} HM": (lambda r, b=b: r["SubPT+NFL"]["hm"] > r[b]["hm"]) for b in labels}


def summarise(records: list[dict], baselines: Sequence[str] = ()) -> dict[str, Any]:
    """How often each claim holds (those of CLAIMS, and SubPT+NFL against each baseline label), and per method
    (zero-shot, METHODS, baselines) Base/Novel/HM: the mean over all (variant, seed) records, and the std over
    seeds of the per-seed averages over the variants. HM of a mean is 2BN/(B+N) of the averaged Base and Novel
    (its std: that of each seed's 2BN/(B+N)); mean_hm is the mean of the records' own HM."""
    n = len(records)
    tests = {**CLAIMS, **baseline_claims(baselines)}
    claims = {name: {"holds": sum(bool(test(r)) for r in records), "of": n} for name, test in tests.items()}
    seeds = sorted({r.get("seed", 0) for r in records})
    means = {}
    for m in ("zero-shot", *METHODS, *baselines):
        b = statistics.fmean(r[m]["base_acc"] for r in records)
        nv = statistics.fmean(r[m]["novel_acc"] for r in records)
        per_seed = []
        for s in seeds:
            mine = [r[m] for r in records if r.get("seed", 0) == s]
            bs, ns = statistics.fmean(x["base_acc"] for x in mine), statistics.fmean(x["novel_acc"] for x in mine)
            per_seed.append((bs, ns, harmonic_mean(bs, ns)))
        std = [statistics.stdev(col) if len(col) > 1 else 0.0 for col in zip(*per_seed)]
        means[m] = {"base_acc": b, "novel_acc": nv, "hm": harmonic_mean(b, nv),
                    "mean_hm": statistics.fmean(r[m]["hm"] for r in records),
                    "base_std": std[0], "novel_std": std[1], "hm_std": std[2]}
    return {"pairs": n, "seeds": len(seeds), "claims": claims, "means": means}


def run_study(
    out: Path,
    variants: Sequence[Variant] = DEFAULT_GRID,
    seeds: Sequence[int] = (1, 2, 3),
    epochs: int | None = None,
    resume: bool = True,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    aug_views: int | None = None,
    baselines: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the grid into `out` (keeping finished runs when `resume`) and write study.json and study.md; `aug_views`
    None is the model's default number of augmented training views; `baselines` (keys of PROMPT_METHODS other than
    coop) None: every baseline, () none."""
    out = Path(out)
    check_output_folder(out)
    if not variants or not seeds:
        raise SubptError("the study needs at least one variant and one seed")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SubptError(f"variant names must be unique, got {', '.join(names)}")
    chosen = check_baselines(baseline_names() if baselines is None else baselines)
    configs = [(v, s, study_config(v, s, epochs, aug_views)) for v in variants for s in seeds]
    extra = {(v.name, s): [baseline_config(cfg, b, epochs) for b in chosen] for v, s, cfg in configs}
    for v, s, cfg in configs:  # every setting is checked before the first run starts
        for c in (cfg, *extra[(v.name, s)]):
            c.validate()
        basis_plan(cfg.epochs)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = []
    bar = tqdm(configs, desc="study", unit="variant-seed", disable=not progress or None)
    for v, s, cfg in bar:
        bar.set_postfix_str(f"{v.name} seed {s}")
        runs = run_unit(cfg, out / v.name / f"seed{s}", resume=resume, baselines=extra[(v.name, s)])
        records.append({"variant": v.name, "dataset": v.dataset, "options": v.options, "seed": s, **unit_record(runs)})
    labels = [baseline_label(b) for b in chosen]
    result = {"setting": {**METHOD_SETTING, **({} if epochs is None else {"epochs": epochs}),
                          "aug_views": configs[0][2].aug_views},
              "baselines": {baseline_label(b): {"method": b, "lambda": PROMPT_METHODS[b][1],
                                                **{k: getattr(c, k) for k in METHOD_PRESETS.get(b, {})
                                                   if k not in ("n_ctx", "ctx_init")}}
                            for b, c in zip(chosen, extra[(configs[0][0].name, configs[0][1])])},
              "bases": dict(zip(("early", "late", "rank"), basis_plan(configs[0][2].epochs))),
              "records": records, **summarise(records, labels), "seconds": round(time.time() - t0, 1)}
    (out / "study.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "study.md").write_text(to_markdown(result))
    echo(to_markdown(result))
    return result


def _pm(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The study's tables: claims, every method's Base/Novel/HM (mean ± std over seeds of the average over the
    variants), and one row per (variant, seed)."""
    seeds = result.get("seeds", 1)
    lines = [f"# Study: {result['pairs']} (variant, seed) pairs, one method setting", "",
             "| claim | holds in |", "|---|---|"]
    for name, c in result["claims"].items():
        lines.append(f"| {name} | {c['holds']}/{c['of']} ({100.0 * c['holds'] / c['of']:.0f} %) |")
    n_var = result["pairs"] // max(seeds, 1)
    lines += ["", f"Mean over the {n_var} variant(s), ± std over {seeds} seed(s) of the per-seed averages; HM is "
              "2BN/(B+N) of the averaged Base and Novel.", "",
              "| method | Base | Novel | HM |", "|---|---|---|---|"]
    for m, v in result["means"].items():
        lines.append(f"| {m} | {_pm(v['base_acc'], v.get('base_std', 0.0), seeds)} "
                     f"| {_pm(v['novel_acc'], v.get('novel_std', 0.0), seeds)} | {_pm(v['hm'], v.get('hm_std', 0.0), seeds)} |")
    if result.get("baselines"):
        lines.append("")
    for label, b in result.get("baselines", {}).items():
        kept = ", ".join(f"{k} {v}" for k, v in b.items() if k not in ("method", "lambda"))
        lam = f", lambda {b['lambda']:g}" if b.get("lambda") is not None else ""
        lines.append(f"- {label}: --method {b['method']}{lam}"
                     + (f"; its own {kept}" if kept else "; the study's setting") + ".")
    cols = ("zero-shot", *METHODS, *result.get("baselines", {}))
    lines += ["", "Base / Novel / HM of the final epoch; CoOp's base and novel peak (epoch) and final.", "",
              "| variant | seed | " + " | ".join(cols) + " | CoOp base peak -> final | CoOp novel peak -> final |",
              "|---|---|" + "---|" * (len(cols) + 2)]
    for r in result["records"]:
        cells = [f"{r[m]['base_acc']:.1f} / {r[m]['novel_acc']:.1f} / {r[m]['hm']:.1f}" for m in cols]
        c = r["coop_curve"]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells)
                     + f" | {c['base_peak']:.1f} ({c['base_peak_epoch']}) -> {c['base_final']:.1f}"
                     + f" | {c['novel_peak']:.1f} ({c['novel_peak_epoch']}) -> {c['novel_final']:.1f} |")
    return "\n".join(lines) + "\n"
