"""The settings of one training run, as a dataclass that round-trips through config.json.

It imports nothing heavy (the dataset catalogue only when a config is made), so the command layer reads its
defaults from here at start-up instead of restating them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from subpt.errors import SubptError

PRECISIONS = ("fp32", "bf16", "fp16")
STAMP_KEYS = ("_hash", "_basis_sha256")  # written by TrainConfig.save next to the settings, not settings
SUBSAMPLES = ("base", "all")
# The prompt-learning method of `subpt train --method` (docs/baselines.md): its display name and its default lambda.
PROMPT_METHODS = {
    "coop": ("CoOp", None), "kgcoop": ("KgCoOp", 8.0), "prograd": ("ProGrad", 1.0), "cocoop": ("CoCoOp", None),
}
# A method's published training settings, which the commands apply to the options the user did not give
# (`method_presets`); TrainConfig itself keeps what it is given, so config.json records what ran.
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "cocoop": {"ctx_init": "a photo of a", "n_ctx": 4, "batch_size": 1, "epochs": 10, "lr": 0.002},
}
CONTEXT_SHAPE = ("n_ctx", "ctx_init")  # a preset's context applies only when neither option is given
POSITIONS = ("end", "middle", "front")
# Augmented training views per image (docs/method.md, "Training views"): CoOp's random resized crop and flip,
# K views per training image computed once and cached. 16 for real CLIP models; 0 (the test view only) for the
# embedded tiny CLIP, whose shipped study and demo numbers were measured on the test view.
AUG_VIEWS_DEFAULT = 16
AUG_VIEWS_EMBEDDED = 0
EMBEDDED_MODEL = "subpt-tiny"  # subpt.embedded.model.MODEL_NAME, not imported here: this module stays light


def default_aug_views(model: str) -> int:
    """The number of cached augmented views per training image a run of `model` gets when --aug-views is not
    given: AUG_VIEWS_DEFAULT for real CLIP models, AUG_VIEWS_EMBEDDED for the embedded tiny CLIP."""
    return AUG_VIEWS_EMBEDDED if model == EMBEDDED_MODEL else AUG_VIEWS_DEFAULT


def method_presets(method: str, given: set[str] | frozenset[str]) -> dict[str, Any]:
    """The settings `method`'s paper uses (METHOD_PRESETS) for the options not in `given` (TrainConfig field names).

    Giving --n-ctx or --ctx-init shapes the context yourself: the preset's context (both fields) is then dropped."""
    preset = dict(METHOD_PRESETS.get(method, {}))
    if given & set(CONTEXT_SHAPE):
        for key in CONTEXT_SHAPE:
            preset.pop(key, None)
    return {k: v for k, v in preset.items() if k not in given}


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in a run's config.json, or a one-line SubptError naming the file and the fix."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise SubptError(f"{folder} is a file, not a run folder: pass the folder that `subpt train --out` wrote")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubptError(f"{path} is missing: is {folder} a run folder of `subpt train` or `subpt sweep`?") from None
    except json.JSONDecodeError as e:
        raise SubptError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): restore it or re-run") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"{path} cannot be read ({e.__class__.__name__}: {e}); check its permissions") from None
    if not isinstance(d, dict):
        raise SubptError(f"{path} holds a JSON {type(d).__name__}, not the object of settings `subpt train` writes")
    return d


def check_device(device: object) -> None:
    """Refuse a device name torch would fail on later with a traceback: one line naming --device."""
    if isinstance(device, str) and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise SubptError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")


@dataclass(frozen=True)
class PromptConfig:
    """How the context is shaped and initialised."""

    n_ctx: int = 16
    ctx_init: str | None = None  # e.g. "a photo of a": n_ctx becomes its token count
    csc: bool = False  # class-specific context
    class_token_position: str = "end"
    init_std: float = 0.02

    def validate(self) -> None:
        """Raise a clear error for impossible settings."""
        if self.ctx_init is None and self.n_ctx < 1:
            raise SubptError(f"--n-ctx must be at least 1, got {self.n_ctx}")
        if self.class_token_position not in POSITIONS:
            raise SubptError(f"--class-token-position must be one of {', '.join(POSITIONS)}, got {self.class_token_position!r}")
        if self.ctx_init is not None and not self.ctx_init.strip():
            raise SubptError("--ctx-init is empty: give a phrase such as 'a photo of a' or leave it out")


@dataclass
class TrainConfig:
    """Every setting needed to reproduce a run (CoOp, SubPT, NFL and their combinations)."""

    dataset: str = "world-objects"
    root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str = "subpt-tiny"
    pretrained: str = "embedded"
    shots: int = 16
    seed: int = 1
    subsample: str = "base"  # train on the base half (base-to-novel) or on all classes
    # CoOp
    n_ctx: int = 16
    ctx_init: str | None = None
    csc: bool = False
    class_token_position: str = "end"
    # optimisation (CoOp's defaults)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    # the prompt-learning method (docs/baselines.md) and the weight of its own term (None: its paper's default)
    prompt_method: str = "coop"
    method_lambda: float | None = None
    # SubPT and NFL
    basis: str | None = None
    nfl: bool = False
    nfl_names: str = "novel"  # 'novel', 'imagenet100' or a text file with one name per line
    nfl_lambda: float = 1.0
    # recording (gradflow)
    record_grads: bool = False
    record_every: int = 1
    record_dtype: str = "float32"
    # execution
    device: str = "cpu"
    precision: str = "fp32"
    eval_every: int = 1
    text_chunk: int | None = None  # encode class prompts this many at a time (bounds memory)
    # training views: K cached augmented views per training image, one per epoch (0: the test view only);
    # None resolves to the model's default when the config is made, so config.json records the number
    aug_views: int | None = None

    def __post_init__(self) -> None:
        self.check_types()
        if self.aug_views is None:
            self.aug_views = default_aug_views(self.model)
        # A task is named in full: every option of the dataset, the defaults filled in, so config.json reproduces
        # the task even if a default changes later.
        from subpt.data.catalogue import (
            resolve_options,  # the catalogue loads every dataset module: not at import
        )

        self.dataset_options = resolve_options(self.dataset, dict(self.dataset_options or {}))

    def check_types(self) -> None:
        """Raise a one-line SubptError for a setting of the wrong type (config.json read back, or a caller's)."""
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = [t.strip() for t in str(f.type).split("|")]
            kinds = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}
            ok = any(
                isinstance(value, dict) if t.startswith("dict") else
                isinstance(value, kinds[t]) and (t == "bool" or not isinstance(value, bool))
                for t in allowed
            )
            if not ok:
                raise SubptError(f"setting {f.name!r} must be {' or '.join(allowed)}, got {value!r}")
        if not 0 <= self.seed < 2**63:
            raise SubptError(f"--seed must lie in [0, 2^63), got {self.seed}")

    def prompt_config(self) -> PromptConfig:
        """The prompt-learner part of the config."""
        return PromptConfig(
            n_ctx=self.n_ctx, ctx_init=self.ctx_init, csc=self.csc, class_token_position=self.class_token_position
        )

    def validate(self) -> None:
        """Raise a one-line SubptError for any impossible setting, before anything is written."""
        self.prompt_config().validate()
        self.validate_method()
        for name in ("lr", "momentum", "weight_decay", "warmup_lr", "nfl_lambda"):
            if not math.isfinite(getattr(self, name)):
                raise SubptError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")
        checks = [
            (self.weight_decay >= 0, f"--weight-decay must be non-negative, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"--momentum must lie in [0, 1), got {self.momentum}"),
            (self.warmup_lr >= 0, f"--warmup-lr must be non-negative, got {self.warmup_lr}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.shots >= 1, f"--shots must be at least 1, got {self.shots}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.subsample in SUBSAMPLES, f"--subsample must be one of {', '.join(SUBSAMPLES)}"),
            (self.record_every >= 1, f"--record-every must be at least 1, got {self.record_every}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (not (self.nfl and self.csc), "--nfl needs a shared context: it cannot be combined with --csc"),
            (self.nfl_lambda >= 0, f"--nfl-lambda must be non-negative, got {self.nfl_lambda}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be non-negative, got {self.warmup_epochs}"),
            (self.text_chunk is None or self.text_chunk >= 1, f"--text-chunk must be at least 1, got {self.text_chunk}"),
            (self.aug_views is None or self.aug_views >= 0,
             f"--aug-views must be 0 (the test view only) or a number of views such as 16, got {self.aug_views}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SubptError(msg)
        if self.basis is not None and not Path(self.basis).is_file():
            raise SubptError(f"--basis {self.basis}: no such file; create one with `gradflow spectrum RUN -o FILE`")
        from gradflow.manifest import DTYPES

        if self.record_dtype not in DTYPES:
            raise SubptError(f"--record-dtype must be one of {', '.join(DTYPES)}, got {self.record_dtype!r}")
        check_device(self.device)
        if self.precision != "fp32" and self.device == "cpu" and self.precision == "fp16":
            raise SubptError("--precision fp16 needs a GPU (--device cuda); use bf16 or fp32 on the CPU")

    def validate_method(self) -> None:
        """Raise a one-line SubptError for an unknown --method, a bad --method-lambda or a refused combination."""
        if self.prompt_method not in PROMPT_METHODS:
            raise SubptError(f"--method must be one of {', '.join(PROMPT_METHODS)}, got {self.prompt_method!r}")
        lam = self.method_lambda
        if lam is not None:
            if self.prompt_method in ("coop", "cocoop"):
                name = PROMPT_METHODS[self.prompt_method][0]
                raise SubptError(f"--method-lambda weighs a baseline's own term; {name} has none: drop it or pick "
                                 "--method kgcoop or prograd")
            if not math.isfinite(lam) or lam < 0:
                raise SubptError(f"--method-lambda must be a finite non-negative number, got {lam}")
        if self.prompt_method == "prograd":
            if self.nfl:
                raise SubptError("--method prograd cannot be combined with --nfl: ProGrad's rule is defined on the "
                                 "cross-entropy gradient alone (docs/baselines.md); use --method coop or kgcoop with --nfl")
            if self.precision == "fp16":
                raise SubptError("--method prograd needs --precision fp32 or bf16: its KL gradient is not loss-scaled")
        if self.prompt_method == "cocoop":
            if self.nfl:
                raise SubptError("--method cocoop cannot be combined with --nfl: NFL's text-only student has no image "
                                 "to condition CoCoOp's prompt on (docs/baselines.md); use --method coop or kgcoop")
            if self.csc:
                raise SubptError("--method cocoop learns one shared context that each image shifts: drop --csc")

    @property
    def method_weight(self) -> float:
        """The weight of the method's own term: --method-lambda, or its paper's default (0 for CoOp)."""
        if self.method_lambda is not None:
            return float(self.method_lambda)
        return float(PROMPT_METHODS.get(self.prompt_method, ("", None))[1] or 0.0)

    @property
    def method(self) -> str:
        """Human-readable method name: CoOp, SubPT, CoOp+NFL, SubPT+NFL; KgCoOp, SubPT(KgCoOp)+NFL, ProGrad, ..."""
        base = PROMPT_METHODS.get(self.prompt_method, (self.prompt_method, None))[0]
        if self.basis:
            name = "SubPT" if self.prompt_method == "coop" else f"SubPT({base})"
        else:
            name = base
        return name + ("+NFL" if self.nfl else "")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all settings."""
        return asdict(self)

    def basis_sha256(self) -> str | None:
        """SHA-256 of the basis file's content (None without a basis or when the file cannot be read)."""
        if not self.basis:
            return None
        try:
            return hashlib.sha256(Path(self.basis).read_bytes()).hexdigest()
        except OSError:
            return None

    def hash(self) -> str:
        """Hash of everything that changes the numbers: not where the data lives nor the device it runs on, but
        the basis file's content, not only its path."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("root", "device")}
        if d["prompt_method"] == "coop" and d["method_lambda"] is None:  # runs from before --method keep their hash
            del d["prompt_method"], d["method_lambda"]
        if d.get("aug_views") == 0:  # the test view only: hashes as runs did before --aug-views existed
            d.pop("aug_views")
        if self.basis:
            d["basis_sha256"] = self.basis_sha256()
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict, naming unknown fields clearly."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SubptError(f"{source}: unknown setting(s) {', '.join(map(repr, unknown))}")
        if "aug_views" not in d:  # saved before --aug-views existed: that run trained on the test view
            d = {**d, "aug_views": 0}
        try:
            return cls(**d)
        except SubptError as e:
            raise SubptError(f"{source}: {e}; fix the field or re-create the run") from None

    def save(self, path: Path) -> None:
        """Write config.json, with the hash and the basis file's digest at the time the run starts."""
        from gradflow.atomic import atomic_write_text

        stamp = {"_hash": self.hash(), "_basis_sha256": self.basis_sha256()}
        atomic_write_text(path, json.dumps({**self.to_dict(), **stamp}, indent=2, sort_keys=True) + "\n", fsync=True)

    @staticmethod
    def saved_stamp(path: Path) -> dict[str, str | None]:
        """The hash and basis digest that config.json was saved with ({} when it cannot be read)."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(d, dict):
            return {}
        return {"hash": d.get("_hash"), "basis_sha256": d.get("_basis_sha256")}

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read config.json written by `save`."""
        d = read_config_file(Path(path))
        for key in STAMP_KEYS:
            d.pop(key, None)
        return cls.from_dict(d, source=str(path))
