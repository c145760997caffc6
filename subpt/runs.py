"""The run folder: the one module that knows its files, and answers every question about a run on disk.

A run folder (`subpt train --out RUN`) holds:
  config.json      every setting, with the hash and the basis digest the run started with (TrainConfig.save)
  zeroshot.json    zero-shot CLIP (dataset template) on the same base/novel test sets
  metrics.jsonl    one line per epoch: loss, lr, train acc, base / novel / HM test accuracy, seconds
  ckpt/ctx_EEE.pt  the context after each epoch (and CoCoOp's meta-network, "meta_net"); ckpt/last.pt adds the
                   optimiser state (for --resume)
  trajectory/      gradflow store: snapshots of every trained parameter after every epoch (and at init), per-step
                   gradients if recorded; ctx is the entry CTX_NAME, CoCoOp's meta-network its own entry
  .lock            the writer's lock: a second process writing the same folder is refused
A zero-shot folder of a sweep holds config.json (with "method": "zeroshot") and zeroshot.json.

Everything else asks this module: where a file is, whether a run is finished, whether it may be resumed
with a given config, and how to rebuild its prompt learner from a saved context.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from gradflow.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from subpt.backbone import Backbone, load_backbone
from subpt.cocoop import learner_for
from subpt.config import STAMP_KEYS, TrainConfig, read_config_file
from subpt.crashpoints import crash_point
from subpt.errors import SubptError
from subpt.evaluate import evaluate_run, zero_shot_metrics
from subpt.prompts import PromptLearner
from subpt.splits import prepare_data

CONFIG = "config.json"
METRICS = "metrics.jsonl"
ZEROSHOT = "zeroshot.json"
CKPT = "ckpt"
LAST = "last.pt"
TRAJECTORY = "trajectory"
LOCK = ".lock"  # held (flock) by the one process writing the run; the OS releases it when that process ends
RUN_FILES = (CONFIG, METRICS, ZEROSHOT, CKPT, TRAJECTORY)
CTX_NAME = "ctx"  # the name of the context parameter in the run's trajectory store
ZEROSHOT_METHOD = "zeroshot"  # the "method" marker in config.json of a zero-shot folder


# ---------------------------------------------------------------------------------------------- paths
def config_path(run_dir: str | Path) -> Path:
    """RUN/config.json."""
    return Path(run_dir) / CONFIG


def ckpt_path(run_dir: str | Path, epoch: int) -> Path:
    """RUN/ckpt/ctx_EEE.pt: the context after `epoch`."""
    return Path(run_dir) / CKPT / f"ctx_{epoch:03d}.pt"


def last_path(run_dir: str | Path) -> Path:
    """RUN/ckpt/last.pt: context, optimiser state and step of the last finished epoch."""
    return Path(run_dir) / CKPT / LAST


def trajectory_path(run_dir: str | Path) -> Path:
    """RUN/trajectory: the run's gradflow store."""
    return Path(run_dir) / TRAJECTORY


def holds_run(run_dir: str | Path) -> bool:
    """Whether the folder holds a run (its config.json exists)."""
    return config_path(run_dir).exists()


# ---------------------------------------------------------------------------------------------- config
def load_config(run_dir: str | Path) -> TrainConfig:
    """The run's TrainConfig (a clear SubptError when config.json is missing or broken)."""
    return TrainConfig.load(config_path(run_dir))


def save_config(run_dir: str | Path, cfg: TrainConfig) -> None:
    """Write config.json with the hash and basis digest of the run's start."""
    cfg.save(config_path(run_dir))


def saved_stamp(run_dir: str | Path) -> dict[str, str | None]:
    """The hash and basis digest config.json was saved with ({} when it cannot be read)."""
    return TrainConfig.saved_stamp(config_path(run_dir))


def read_run_config(run_dir: str | Path) -> tuple[TrainConfig, str | None]:
    """(TrainConfig, marker) of a run folder; marker is 'zeroshot' for a zero-shot folder, else None."""
    path = config_path(run_dir)
    d = read_config_file(path)
    marker = d.pop("method", None)
    d.pop("templates", None)
    for key in STAMP_KEYS:
        d.pop(key, None)
    return TrainConfig.from_dict(d, source=str(path)), marker


def write_zeroshot_run(run_dir: Path, cfg: TrainConfig, result: dict, templates: list[str]) -> None:
    """A zero-shot folder: config.json (method "zeroshot"), then zeroshot.json (written last)."""
    config = {**cfg.to_dict(), "method": ZEROSHOT_METHOD, "templates": templates}
    atomic_write_json(config_path(run_dir), config, mkdir=True, indent=2, sort_keys=True)
    atomic_write_json(Path(run_dir) / ZEROSHOT, result, mkdir=True, indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------------- results
def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run (complete lines only: a torn last line, as a kill leaves it, is skipped).

    An unreadable file, or a line that is no epoch record and not the torn last line, is a one-line SubptError
    naming the file and the line: a damaged history is never silently cut short."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"{path} cannot be read ({type(e).__name__}: {e}); check its permissions or restore it, "
                         "or start the run again with --overwrite") from None
    out = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                break  # a torn last line from a crash
            raise SubptError(f"{path} line {i + 1} is not JSON: the file is damaged; restore it, or start the run "
                             "again with --overwrite") from None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise SubptError(f"{path} line {i + 1} is not an epoch record (an object with an integer 'epoch' >= 1); "
                             "restore the file, or start the run again with --overwrite")
        out.append(record)
    return out


def metrics_lines(run_dir: str | Path) -> int:
    """How many non-empty lines metrics.jsonl holds (complete or not)."""
    path = Path(run_dir) / METRICS
    try:
        return len([ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]) if path.is_file() else 0
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"{path} cannot be read ({type(e).__name__}: {e}); check its permissions") from None


def write_metrics(run_dir: str | Path, rows: list[dict]) -> None:
    """Replace metrics.jsonl with `rows` atomically: a kill during a resume's rewrite cannot cut the history short."""
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(m) + "\n" for m in rows), fsync=True)


def append_metrics(run_dir: str | Path, record: dict) -> None:
    """Append one epoch's record to metrics.jsonl and flush it to disk."""
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_zeroshot(run_dir: str | Path) -> dict:
    """zeroshot.json of the run (FileNotFoundError or json.JSONDecodeError when absent or broken)."""
    return json.loads((Path(run_dir) / ZEROSHOT).read_text())


def write_zeroshot(run_dir: str | Path, result: dict) -> None:
    """Write zeroshot.json of a training run (atomically)."""
    atomic_write_text(Path(run_dir) / ZEROSHOT, json.dumps(result, indent=2) + "\n")


def has_zeroshot(run_dir: str | Path) -> bool:
    """Whether zeroshot.json exists."""
    return (Path(run_dir) / ZEROSHOT).is_file()


def final_metrics(run_dir: Path) -> dict:
    """The last evaluated epoch's record of a run."""
    rows = [m for m in read_metrics(run_dir) if "base_acc" in m]
    if not rows:
        raise SubptError(f"{run_dir}/metrics.jsonl has no evaluated epoch yet")
    return rows[-1]


def is_finished(metrics: list[dict], epochs: int) -> bool:
    """Whether a run of `epochs` epochs with these metrics records is finished: every epoch done, the last
    evaluated."""
    return len(metrics) == epochs and "base_acc" in metrics[-1]


# ---------------------------------------------------------------------------------------------- checkpoints
def save_epoch(run_dir: Path, ctx: torch.Tensor, optimizer: torch.optim.Optimizer, epoch: int, step: int,
               config_hash: str, record: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Checkpoint first, then the metrics line. The checkpoint also holds the epoch's metrics record, so a crash
    between the two loses nothing: resume restores the line from the checkpoint. `extra` names the trained
    parameters besides ctx (CoCoOp's meta-network), saved next to it in both files."""
    values = {"ctx": ctx.detach().cpu().clone(), **{k: v.detach().cpu().clone() for k, v in (extra or {}).items()}}
    atomic_torch_save({**values, "epoch": epoch}, ckpt_path(run_dir, epoch))
    atomic_torch_save(
        {**values, "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step, "config_hash": config_hash,
         "record": record},
        last_path(run_dir),
    )
    crash_point("checkpoint-saved")
    append_metrics(run_dir, record)


def load_last(run_dir: Path) -> dict | None:
    """The content of ckpt/last.pt, or None when there is none."""
    path = last_path(run_dir)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SubptError(f"checkpoint {path} is corrupt ({type(e).__name__}); delete it to restart the run from scratch") from e


def checkpoint_tensor(blob: dict, name: str, where: str | Path) -> torch.Tensor:
    """The trained parameter `name` of a loaded checkpoint, or a one-line SubptError naming the file."""
    value = blob.get(name)
    if not isinstance(value, torch.Tensor):
        raise SubptError(f"checkpoint in {where} holds no {name!r}: it was not written by this method's run; "
                         "start the run again with --overwrite")
    return value


def load_ctx(run_dir: Path, epoch: int | None = None) -> tuple[torch.Tensor, int]:
    """The context saved after `epoch` (default: the last saved epoch) and that epoch."""
    blob, ep = load_params(run_dir, epoch)
    return blob["ctx"], ep


def load_params(run_dir: Path, epoch: int | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """The trained parameters saved after `epoch` (default: the last saved epoch) by name ("ctx", and CoCoOp's
    "meta_net"), and that epoch."""
    ckpt = Path(run_dir) / CKPT
    files = sorted(ckpt.glob("ctx_*.pt"))
    if not files:
        raise SubptError(f"{ckpt} holds no ctx_*.pt checkpoints: has the run finished an epoch?")
    if epoch is not None and epoch < 1:
        raise SubptError(f"--epoch must be at least 1, got {epoch}; saved epochs: {', '.join(f.stem[4:] for f in files)}")
    path = files[-1] if epoch is None else ckpt_path(run_dir, epoch)
    if not path.is_file():
        raise SubptError(f"{path} is missing; saved epochs: {', '.join(f.stem[4:] for f in files)}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)} | {"ctx": blob["ctx"]}, int(blob["epoch"])
    except Exception as e:
        raise SubptError(f"checkpoint {path} is corrupt or not a subpt checkpoint ({type(e).__name__})") from e


def saved_ctx_epochs(run_dir: Path) -> set[int]:
    """The epochs with a ckpt/ctx_EEE.pt."""
    return {int(f.stem[4:]) for f in (Path(run_dir) / CKPT).glob("ctx_*.pt") if f.stem[4:].isdigit()}


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file atomically (a temporary name in the destination folder, then renamed)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_run(src: Path, dst: Path, cfg: TrainConfig | None) -> None:
    """Make `dst` hold a copy of the finished run in `src` (a sweep reusing another protocol's run): its files
    (not its transfer results), config.json written last, so a copy cut short is a folder without a run. A trained
    run's config.json is written from `cfg` (the same settings, with `dst`'s own basis path); a zero-shot folder's
    is copied as it is (`cfg` None)."""
    src, dst = Path(src), Path(dst)
    clear_run(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        path = src / name
        if name == CONFIG or not path.exists():
            continue
        if path.is_dir():
            shutil.copytree(path, dst / name)
        else:
            copy_file(path, dst / name)
    if cfg is None:
        copy_file(config_path(src), config_path(dst))
    else:
        save_config(dst, cfg)


# ---------------------------------------------------------------------------------------------- starting and resuming
def check_output_folder(folder: Path) -> None:
    """Refuse an output folder (a run's, a sweep's, the demo's or the study's) that is a file, lies under a file, or
    cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SubptError(f"output {folder} exists and is not a folder; choose another --out")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is a file")
        probe = tempfile.mkdtemp(dir=parent, prefix=".subpt-write-probe-")
        os.rmdir(probe)
    except OSError as e:
        raise SubptError(f"output folder {folder} is not writable ({e}); choose another --out") from e


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output that is a file, holds another run (without --resume/--overwrite), or is not writable."""
    check_output_folder(run_dir)
    has_run = holds_run(run_dir)
    if has_run and not (resume or overwrite):
        raise SubptError(f"run folder {run_dir} already holds a run: pass --resume to continue it or --overwrite")
    if resume and not has_run:
        raise SubptError(f"--resume: {run_dir} holds no run (config.json missing); start it without --resume")


_HELD: dict[Path, list] = {}  # run folder -> [its open lock file, how many holders in this process]


class RunLock:
    """A hold on a run folder's exclusive writer lock; `close` lets go (the last holder in the process unlocks)."""

    def __init__(self, key: Path) -> None:
        self.key = key
        self.closed = False

    def close(self) -> None:
        """Release this hold (idempotent)."""
        if self.closed:
            return
        self.closed = True
        entry = _HELD[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _HELD[self.key]


def lock_run_dir(run_dir: Path, wait: bool = False) -> RunLock:
    """Create the run folder if needed and take its exclusive writer lock, held until every hold of this process is
    closed or the process ends (a crash leaves no stale lock). Another process holding it is a one-line error, or,
    with `wait`, waited for (a sweep claiming its next job). Holds within one process nest."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key not in _HELD:
        handle = open(run_dir / LOCK, "a+")  # noqa: SIM115 - held open for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            raise SubptError(
                f"another process is writing {run_dir} (it holds {run_dir / LOCK}): wait for it to end or choose "
                "another --out"
            ) from None
        _HELD[key] = [handle, 0]
    _HELD[key][1] += 1
    return RunLock(key)


def clear_run(run_dir: Path) -> None:
    """Delete a run's files (for --overwrite), keeping the folder, its lock and anything that is not the run's."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def check_trajectory(run_dir: Path) -> None:
    """Read-only check of a run's trajectory store before a resume writes anything: a damaged manifest or chunk is a
    one-line error and the folder is left as it was. A run without a store (or one killed before its manifest was
    first written) passes: the recorder starts the store afresh."""
    from gradflow.errors import GradflowError
    from gradflow.manifest import MANIFEST
    from gradflow.trajectory import TrajectoryStore

    path = trajectory_path(run_dir)
    if not (path / MANIFEST).is_file():
        return
    try:
        TrajectoryStore.open(path, mode="r")
    except GradflowError as e:
        raise SubptError(f"--resume: the trajectory of {run_dir} is damaged: {e}") from None


def basis_changed(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether `cfg` names a basis whose content differs from the one the run in `run_dir` started with."""
    return bool(cfg.basis) and saved_stamp(run_dir).get("basis_sha256") != cfg.basis_sha256()


def same_settings(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether the run in `run_dir` was started with exactly these settings (hash, basis content included)."""
    return saved_stamp(run_dir).get("hash") == cfg.hash()


def check_resume(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse `--resume` of `run_dir` with `cfg` unless it is the same run: same settings and basis content."""
    load_config(run_dir)  # a clear error when it is unreadable
    if basis_changed(run_dir, cfg):
        raise SubptError(f"--resume: the basis file {cfg.basis} has changed since {run_dir} started; resume with "
                         "the basis it was trained with, or start the run again with --overwrite")
    if not same_settings(run_dir, cfg):
        raise SubptError(f"--resume: the settings differ from {config_path(run_dir)}; resume with the same settings")


def can_resume(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether `run_dir` holds this very run (same settings and basis content) with a checkpoint to resume from."""
    return last_path(run_dir).is_file() and same_settings(run_dir, cfg)


# ---------------------------------------------------------------------------------------------- rebuilding
def learner_with_ctx(backbone: Backbone, classnames: list[str], cfg: TrainConfig, ctx: torch.Tensor,
                     where: str, extra: dict[str, torch.Tensor] | None = None) -> PromptLearner:
    """The run's prompt learner over `classnames` holding the saved context `ctx` and, for CoCoOp, the saved
    meta-network in `extra` (from `load_params`; `where` names the run in errors)."""
    learner = learner_for(backbone, classnames, cfg)
    saved = [("ctx", learner.ctx, ctx)]
    for name, param in learner.extra_parameters():
        if extra is None or name not in extra:
            raise SubptError(f"{where}: a {cfg.method} run's prompts also need its saved {name!r}, which this command "
                             "does not read; evaluate the run with `subpt eval`")
        saved.append((name, param, extra[name]))
    for name, param, value in saved:
        if tuple(value.shape) != tuple(param.shape):
            raise SubptError(f"{where}: saved {name} has shape {tuple(value.shape)} but its config gives "
                             f"{tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(value.to(param.device))
    return learner


def zeroshot_templates(run_dir: str | Path) -> list[str]:
    """The templates a zero-shot folder was evaluated with (its config.json's "templates")."""
    path = config_path(run_dir)
    templates = read_config_file(path).get("templates")
    if not (isinstance(templates, list) and templates and all(isinstance(t, str) and "{}" in t for t in templates)):
        raise SubptError(f"{path}: 'templates' must be a non-empty list of prompt templates with '{{}}'; restore the "
                         "file or run the sweep again")
    return templates


def evaluate_saved_run(run_dir: Path, epoch: int | None = None, device: str = "cpu", progress: bool = True) -> dict:
    """Rebuild a run's model and data from config.json and evaluate a saved context; a sweep's zero-shot folder is
    evaluated again with zero-shot CLIP and the templates it records."""
    run_dir = Path(run_dir)
    cfg, marker = read_run_config(run_dir)
    cfg.device = device
    if marker is not None and marker != ZEROSHOT_METHOD:
        raise SubptError(f"{config_path(run_dir)}: unknown method {marker!r} (a sweep's zero-shot folder says "
                         f"{ZEROSHOT_METHOD!r}); restore the file or run the sweep again")
    if marker == ZEROSHOT_METHOD:
        if epoch is not None:
            raise SubptError(f"--epoch: {run_dir} is a zero-shot folder of a sweep, which has no epochs; leave it out")
        templates = zeroshot_templates(run_dir)
        backbone = load_backbone(cfg.model, cfg.pretrained, device, seed=cfg.seed)
        splits = prepare_data(cfg, backbone, progress=progress, augment=False)
        zs = zero_shot_metrics(backbone, splits, templates)
        return {"run": str(run_dir), "method": "Zero-shot CLIP", "epoch": None,
                **{k: zs[k] for k in ("base_acc", "novel_acc", "hm")}}
    saved, ep = load_params(run_dir, epoch)
    backbone = load_backbone(cfg.model, cfg.pretrained, device, seed=cfg.seed)
    splits = prepare_data(cfg, backbone, progress=progress, augment=False)
    learner = learner_with_ctx(backbone, splits.base.classnames, cfg, saved["ctx"], str(run_dir), extra=saved)
    return {"run": str(run_dir), "method": cfg.method, "epoch": ep, **evaluate_run(learner, splits, cfg.text_chunk)}
