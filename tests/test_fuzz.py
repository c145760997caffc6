"""A fuzz table of bad input across every command of `subpt` and `gradflow`: bad arguments and damaged or crafted
files. Each case must end with exit code 2, exactly one line on stderr, no traceback, and every watched folder (the
run or store it was given, the shared fixtures, and a sentinel file beside them) byte-identical afterwards.

The cases run in-process through typer's CliRunner; the shared run is trained once per module."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from subpt._cli.gradflow_app import app as gradflow_app
from subpt._cli.subpt_app import app as subpt_app
from test_cli_subpt import FAST
from test_gradflow_cli import run_dir as store_dir  # noqa: F401 - the synthetic trajectory fixture, reused
from typer.testing import CliRunner

from gradflow.subspace import Basis

runner = CliRunner()
APPS = {"subpt": subpt_app, "gradflow": gradflow_app}
TRAIN = [*FAST[:-4], "--epochs", "2", "--n-ctx", "4", "--record"]  # the smallest training with both streams
RESUME = ["train", *TRAIN, "--out", "{run}", "--resume"]  # resume the shared run's copy


# ---------------------------------------------------------------------------------------------- watching folders
def _read(path: Path) -> bytes:
    """A file's bytes read with os-level calls (so a test's patched `open` does not apply); b'' if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        return b"<unreadable>"
    try:
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def snapshot(*roots: Path) -> dict[str, object]:
    """Every entry under `roots`: its kind and permission bits, and a file's content hash (mtimes are ignored)."""
    out: dict[str, object] = {}
    for root in roots:
        entries = [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]
        for p in entries:
            st = p.lstat()
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir", st.st_mode)
            else:
                out[str(p)] = ("file", st.st_mode, hashlib.sha256(_read(p)).hexdigest())
    return out


# ---------------------------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, store_dir: Path) -> dict[str, Path]:  # noqa: F811
    """A trained and recorded run, a synthetic store, and a valid basis of that store's dimension (built once)."""
    root = tmp_path_factory.mktemp("fuzz-shared")
    run = root / "run"
    result = runner.invoke(subpt_app, ["train", *TRAIN, "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    basis = Basis(torch.eye(2, 48), torch.ones(2)).save(root / "bases" / "good.pt")
    return {"run": run, "store": store_dir, "basis": basis}


# ---------------------------------------------------------------------------------------------- damage
@dataclass
class Env:
    """What a damage function may use: the case's paths (to fill placeholders such as {sentinel}) and a monkeypatch."""

    places: dict[str, str]
    mp: pytest.MonkeyPatch

    def fill(self, value: object) -> object:
        """`value` with its placeholders filled when it is a string."""
        return value.format(**self.places) if isinstance(value, str) else value


Damage = Callable[[Path, Env], None]


def write(rel: str, content: bytes | str) -> Damage:
    """Replace the file `rel` of the copied folder with `content`."""

    def damage(folder: Path, env: Env) -> None:
        data = content.encode() if isinstance(content, str) else content
        (folder / rel).write_bytes(data)

    return damage


def edit_json(rel: str, change: Callable[[object], object]) -> Damage:
    """Rewrite the JSON file `rel` of the copied folder through `change`."""

    def damage(folder: Path, env: Env) -> None:
        path = folder / rel
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def set_field(rel: str, key: str, value: object) -> Damage:
    """Set the top-level field `key` of the JSON object `rel`."""
    return edit_json(rel, lambda d: {**d, key: value})


def set_chunk(rel: str, stream: str, key: str, value: object) -> Damage:
    """Set `key` of the first chunk entry of `stream` in the manifest `rel`."""

    def damage(folder: Path, env: Env) -> None:
        path = folder / rel
        d = json.loads(path.read_text())
        d["streams"][stream]["chunks"][0][key] = env.fill(value)
        path.write_text(json.dumps(d))

    return damage


def truncate(rel: str, keep: int = -100) -> Damage:
    """Cut the file `rel` short."""

    def damage(folder: Path, env: Env) -> None:
        path = folder / rel
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def unreadable(rel: str) -> Damage:
    """Make `rel` unreadable: mode 000, and, for root (who reads anything), `open` raising EACCES on that path."""

    def damage(folder: Path, env: Env) -> None:
        target = (folder / rel).resolve()
        target.chmod(0)
        if os.geteuid() != 0:
            return
        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and Path(os.fsdecode(file)).resolve() == target:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
            return real_open(file, *args, **kwargs)

        env.mp.setattr(builtins, "open", guarded_open)
        env.mp.setattr(io, "open", guarded_open)

    return damage


def both(*damages: Damage) -> Damage:
    """Apply several damages in order."""

    def damage(folder: Path, env: Env) -> None:
        for d in damages:
            d(folder, env)

    return damage


CHUNK = "trajectory/grads/chunk_000000.npy"
MANIFEST = "trajectory/manifest.json"
GARBAGE = b"\x80\x04\x95 not a file of this kind \xff\xfe" * 8


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    """One bad invocation: the app, its arguments with placeholders, and the damage done to a copy of `copy`."""

    id: str
    app: str
    args: tuple[str, ...]
    copy: str | None = (
        None  # "run" or "store": the case gets its own copy of that fixture, damaged by `damage`
    )
    damage: Damage | None = None
    needle: str = ""  # a fragment the error line must contain


def C(
    id: str, app: str, *args: str, copy: str | None = None, damage: Damage | None = None, needle: str = ""
) -> Case:  # noqa: A002, N802
    """Shorthand for a Case."""
    return Case(id, app, tuple(args), copy, damage, needle)


NEW = "{tmp}/new"
PIPE = [*TRAIN[:-1], "--epochs", "4", "--t-early", "3"]  # a pipeline whose basis window is possible
CASES = [
    # subpt train: every setting is checked before a run folder exists
    C("train-lr-nan", "subpt", "train", *TRAIN, "--out", NEW, "--lr", "nan", needle="--lr"),
    C("train-lr-minus-inf", "subpt", "train", *TRAIN, "--out", NEW, "--lr", "-inf", needle="--lr"),
    C("train-lr-zero", "subpt", "train", *TRAIN, "--out", NEW, "--lr", "0", needle="--lr"),
    C(
        "train-wd-inf",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--weight-decay",
        "inf",
        needle="--weight-decay",
    ),
    C(
        "train-wd-negative",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--weight-decay",
        "-0.5",
        needle="--weight-decay",
    ),
    C("train-epochs-0", "subpt", "train", *TRAIN, "--out", NEW, "--epochs", "0", needle="--epochs"),
    C("train-epochs-negative", "subpt", "train", *TRAIN, "--out", NEW, "--epochs", "-2", needle="--epochs"),
    C("train-batch-0", "subpt", "train", *TRAIN, "--out", NEW, "--batch-size", "0", needle="--batch-size"),
    C("train-shots-0", "subpt", "train", *TRAIN, "--out", NEW, "--shots", "0", needle="--shots"),
    C("train-n-ctx-negative", "subpt", "train", *TRAIN, "--out", NEW, "--n-ctx", "-1", needle="--n-ctx"),
    C(
        "train-record-every-0",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--record-every",
        "0",
        needle="--record-every",
    ),
    C(
        "train-warmup-negative",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--warmup-epochs",
        "-1",
        needle="--warmup-epochs",
    ),
    C(
        "train-nfl-lambda-negative",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--nfl",
        "--nfl-lambda",
        "-1",
        needle="--nfl-lambda",
    ),
    C(
        "train-nfl-lambda-nan",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--nfl",
        "--nfl-lambda",
        "nan",
        needle="--nfl-lambda",
    ),
    C("train-precision", "subpt", "train", *TRAIN, "--out", NEW, "--precision", "fp64", needle="--precision"),
    C("train-subsample", "subpt", "train", *TRAIN, "--out", NEW, "--subsample", "half", needle="--subsample"),
    C(
        "train-token-position",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--class-token-position",
        "left",
        needle="--class-token-position",
    ),
    C("train-device", "subpt", "train", *TRAIN, "--out", NEW, "--device", "gpu", needle="--device"),
    C(
        "train-record-dtype",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--record-dtype",
        "int8",
        needle="--record-dtype",
    ),
    C("train-seed-negative", "subpt", "train", *TRAIN, "--out", NEW, "--seed", "-1", needle="--seed"),
    C("train-seed-2^63", "subpt", "train", *TRAIN, "--out", NEW, "--seed", str(2**63), needle="--seed"),
    C(
        "train-text-chunk-0",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--text-chunk",
        "0",
        needle="--text-chunk",
    ),
    C(
        "train-ctx-init-blank",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--ctx-init",
        "   ",
        needle="--ctx-init",
    ),
    C(
        "train-basis-missing",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--basis",
        "{tmp}/none.pt",
        needle="--basis",
    ),
    C("train-basis-garbage", "subpt", "train", *TRAIN, "--out", NEW, "--basis", "{file}", needle="file"),
    C("train-basis-folder", "subpt", "train", *TRAIN, "--out", NEW, "--basis", "{dir}", needle="--basis"),
    C("train-out-is-a-file", "subpt", "train", *TRAIN, "--out", "{file}", needle="not a folder"),
    C("train-out-under-a-file", "subpt", "train", *TRAIN, "--out", "{file}/run", needle="not writable"),
    C(
        "train-resume-without-run",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        "{dir}",
        "--resume",
        needle="holds no run",
    ),
    C(
        "train-dataset",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--dataset",
        "no-such-data",
        needle="no-such-data",
    ),
    C("train-model", "subpt", "train", *TRAIN, "--out", NEW, "--model", "NoSuchNet", needle="NoSuchNet"),
    C(
        "train-cue-strength-nan",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--cue-strength",
        "nan",
        needle="cue",
    ),
    C("train-noise-negative", "subpt", "train", *TRAIN, "--out", NEW, "--noise", "-5", needle="noise"),
    C(
        "train-nfl-names-missing",
        "subpt",
        "train",
        *TRAIN,
        "--out",
        NEW,
        "--nfl",
        "--nfl-names",
        "{tmp}/names.txt",
        needle="names.txt",
    ),
    C("train-existing-run", "subpt", "train", *TRAIN, "--out", "{run}", needle="already holds a run"),
    C(
        "train-resume-other-settings",
        "subpt",
        *RESUME,
        "--lr",
        "0.1",
        needle="settings differ",
    ),
    # subpt train --resume of a damaged run folder: one line, the folder untouched
    C(
        "resume-config-null",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("config.json", "null"),
        needle="config.json",
    ),
    C(
        "resume-config-list",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("config.json", "[1, 2]"),
        needle="config.json",
    ),
    C(
        "resume-config-wrong-type",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_field("config.json", "epochs", "two"),
        needle="epochs",
    ),
    C(
        "resume-config-null-field",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_field("config.json", "lr", None),
        needle="lr",
    ),
    C(
        "resume-config-unknown-field",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_field("config.json", "turbo", True),
        needle="turbo",
    ),
    C(
        "resume-config-garbage",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("config.json", GARBAGE),
        needle="config.json",
    ),
    C(
        "resume-config-truncated",
        "subpt",
        *RESUME,
        copy="run",
        damage=truncate("config.json", 40),
        needle="config.json",
    ),
    C(
        "resume-config-unreadable",
        "subpt",
        *RESUME,
        copy="run",
        damage=unreadable("config.json"),
        needle="config.json",
    ),
    C(
        "resume-metrics-garbage",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("metrics.jsonl", "garbage\n{not json\n" + '{"epoch": 2}\n'),
        needle="metrics.jsonl",
    ),
    C(
        "resume-metrics-not-records",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("metrics.jsonl", "[1, 2]\n[3]\n"),
        needle="metrics.jsonl",
    ),
    C(
        "resume-metrics-unreadable",
        "subpt",
        *RESUME,
        copy="run",
        damage=unreadable("metrics.jsonl"),
        needle="metrics.jsonl",
    ),
    C(
        "resume-last-ckpt-garbage",
        "subpt",
        *RESUME,
        copy="run",
        damage=write("ckpt/last.pt", GARBAGE),
        needle="last.pt",
    ),
    C(
        "resume-manifest-dim-string",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_field(MANIFEST, "dim", "x"),
        needle="manifest.json",
    ),
    C(
        "resume-manifest-garbage",
        "subpt",
        *RESUME,
        copy="run",
        damage=write(MANIFEST, GARBAGE),
        needle="manifest.json",
    ),
    C(
        "resume-chunk-absolute-path",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_chunk(MANIFEST, "grads", "file", "{sentinel}"),
        needle="manifest.json",
    ),
    C(
        "resume-chunk-dotdot-path",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_chunk(MANIFEST, "grads", "file", "grads/../../../sentinel.txt"),
        needle="manifest.json",
    ),
    C(
        "resume-chunk-truncated",
        "subpt",
        *RESUME,
        copy="run",
        damage=truncate(CHUNK),
        needle="chunk_000000.npy",
    ),
    C(
        "resume-chunk-garbage",
        "subpt",
        *RESUME,
        copy="run",
        damage=write(CHUNK, GARBAGE),
        needle="chunk_000000.npy",
    ),
    C(
        "resume-rows-not-integer",
        "subpt",
        *RESUME,
        copy="run",
        damage=set_chunk(MANIFEST, "grads", "rows", "3"),
        needle="rows",
    ),
    # subpt pipeline: every setting checked before stage 1 trains
    C(
        "pipeline-t-early-0",
        "subpt",
        "pipeline",
        *TRAIN[:-1],
        "--out",
        NEW,
        "--t-early",
        "0",
        needle="--t-early",
    ),
    C("pipeline-rank-0", "subpt", "pipeline", *PIPE, "--out", NEW, "--rank", "0", needle="--rank"),
    C("pipeline-source", "subpt", "pipeline", *PIPE, "--out", NEW, "--source", "weights", needle="--source"),
    C("pipeline-epochs-0", "subpt", "pipeline", *PIPE, "--out", NEW, "--epochs", "0", needle="--epochs"),
    C("pipeline-seed-2^64", "subpt", "pipeline", *PIPE, "--out", NEW, "--seed", str(2**64), needle="--seed"),
    C("pipeline-out-is-a-file", "subpt", "pipeline", *PIPE, "--out", "{file}", needle="is a file"),
    # subpt data check
    C("data-check-missing-root", "subpt", "data", "check", "--root", "{tmp}/none", needle="does not exist"),
    # subpt eval
    C("dense-scenes-0", "subpt", "dense", "eval", "--scenes", "0", needle="--scenes"),
    C("dense-seed-negative", "subpt", "dense", "eval", "--seed", "-1", needle="--seed"),
    C("dense-run-missing", "subpt", "dense", "eval", "--run", "{tmp}/none", needle="--run"),
    C("dense-run-empty-folder", "subpt", "dense", "eval", "--run", "{dir}", needle="config.json"),
    C("dense-threshold-2", "subpt", "dense", "eval", "--threshold", "2", needle="--threshold"),
    C("dense-canvas-10", "subpt", "dense", "eval", "--canvas", "10", needle="--canvas"),
    C("dense-n-classes-1", "subpt", "dense", "eval", "--n-classes", "1", needle="--n-classes"),
    C("dense-noise-negative", "subpt", "dense", "eval", "--noise", "-1", needle="--noise"),
    C("dense-context-0", "subpt", "dense", "eval", "--context", "0", needle="--context"),
    C("dense-epoch-without-run", "subpt", "dense", "eval", "--epoch", "5", needle="--run"),
    C("dense-out-is-a-folder", "subpt", "dense", "eval", "--out", "{dir}", needle="is a folder"),
    C("dense-device", "subpt", "dense", "eval", "--device", "gpu", needle="--device"),
    C("eval-missing", "subpt", "eval", "{tmp}/none", needle="config.json"),
    C("eval-a-file", "subpt", "eval", "{file}", needle="not a run folder"),
    C("eval-empty-folder", "subpt", "eval", "{dir}", needle="config.json"),
    C("eval-epoch-99", "subpt", "eval", "{run}", "--epoch", "99", needle="ctx_099.pt"),
    C("eval-epoch-negative", "subpt", "eval", "{run}", "--epoch", "-1", needle="--epoch"),
    C("eval-device", "subpt", "eval", "{run}", "--device", "tpu", needle="--device"),
    C(
        "eval-config-dataset-options-list",
        "subpt",
        "eval",
        "{run}",
        copy="run",
        damage=set_field("config.json", "dataset_options", [1, 2]),
        needle="dataset_options",
    ),
    C(
        "eval-config-unreadable",
        "subpt",
        "eval",
        "{run}",
        copy="run",
        damage=unreadable("config.json"),
        needle="config.json",
    ),
    C(
        "eval-ctx-garbage",
        "subpt",
        "eval",
        "{run}",
        copy="run",
        damage=write("ckpt/ctx_002.pt", GARBAGE),
        needle="ctx_002.pt",
    ),
    C(
        "eval-seed-field-huge",
        "subpt",
        "eval",
        "{run}",
        copy="run",
        damage=set_field("config.json", "seed", 2**64),
        needle="seed",
    ),
    # subpt basis
    C("basis-out-is-a-folder", "subpt", "basis", "{run}", "--out", "{dir}", needle="is a folder"),
    C("basis-out-under-a-file", "subpt", "basis", "{run}", "--out", "{file}/b.pt", needle="--out"),
    C(
        "basis-t-early-negative",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--t-early",
        "-1",
        needle="--t-early",
    ),
    C("basis-rank-0", "subpt", "basis", "{run}", "--out", "{tmp}/b.pt", "--rank", "0", needle="--rank"),
    C(
        "basis-source",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--source",
        "weights",
        needle="--source",
    ),
    C(
        "basis-t-early-beyond-run",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--t-early",
        "99",
        needle="99",
    ),
    C(
        "basis-rank-too-big",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--t-early",
        "2",
        "--rank",
        "5",
        needle="rank",
    ),
    C("basis-missing-run", "subpt", "basis", "{tmp}/none", "--out", "{tmp}/b.pt", needle="config.json"),
    C(
        "basis-damaged-manifest",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--t-early",
        "2",
        "--rank",
        "1",
        copy="run",
        damage=set_field(MANIFEST, "chunk_rows", 1.5),
        needle="manifest.json",
    ),
    C(
        "basis-truncated-snapshots",
        "subpt",
        "basis",
        "{run}",
        "--out",
        "{tmp}/b.pt",
        "--t-early",
        "2",
        "--rank",
        "1",
        copy="run",
        damage=truncate("trajectory/snapshots/chunk_000001.npy"),
        needle="truncated",
    ),
    # subpt zeroshot
    C("zeroshot-dataset", "subpt", "zeroshot", "--dataset", "no-such-data", needle="no-such-data"),
    C("zeroshot-template", "subpt", "zeroshot", "--dataset", FAST[1], "--template", "no slot", needle="'{}'"),
    C("zeroshot-device", "subpt", "zeroshot", "--dataset", FAST[1], "--device", "tpu", needle="--device"),
    C("zeroshot-seed", "subpt", "zeroshot", "--dataset", FAST[1], "--seed", "-5", needle="--seed"),
    # subpt demo / study / sweep / table
    C("demo-seeds-0", "subpt", "demo", "--out", NEW, "--seeds", "0", needle="--seeds"),
    C("demo-seeds-negative", "subpt", "demo", "--out", NEW, "--seeds", "-1", needle="--seeds"),
    C("demo-epochs-0", "subpt", "demo", "--out", NEW, "--epochs", "0", needle="epochs"),
    C("demo-out-is-a-file", "subpt", "demo", "--out", "{file}", needle="not a folder"),
    C("study-seeds-words", "subpt", "study", "--out", NEW, "--seeds", "x,y", needle="--seeds"),
    C("study-seeds-empty", "subpt", "study", "--out", NEW, "--seeds", ",", needle="--seeds"),
    C(
        "study-variants",
        "subpt",
        "study",
        "--out",
        NEW,
        "--variants",
        "no-such-variant",
        needle="no-such-variant",
    ),
    C("study-grid-missing", "subpt", "study", "--out", NEW, "--grid", "{tmp}/grid.json", needle="grid.json"),
    C("study-grid-garbage", "subpt", "study", "--out", NEW, "--grid", "{file}", needle="file"),
    C(
        "study-grid-and-variants",
        "subpt",
        "study",
        "--out",
        NEW,
        "--grid",
        "{file}",
        "--variants",
        "a",
        needle="--grid",
    ),
    C("study-epochs-0", "subpt", "study", "--out", NEW, "--epochs", "0", needle="epochs"),
    C("sweep-protocol", "subpt", "sweep", "--out", NEW, "--protocol", "nope", needle="nope"),
    C("sweep-rank-0", "subpt", "sweep", "--out", NEW, "--datasets", FAST[1], "--rank", "0", needle="--rank"),
    C(
        "sweep-t-early-0",
        "subpt",
        "sweep",
        "--out",
        NEW,
        "--datasets",
        FAST[1],
        "--t-early",
        "0",
        needle="--t-early",
    ),
    C(
        "sweep-seeds",
        "subpt",
        "sweep",
        "--out",
        NEW,
        "--datasets",
        FAST[1],
        "--seeds",
        "abc",
        needle="--seeds",
    ),
    C(
        "sweep-methods",
        "subpt",
        "sweep",
        "--out",
        NEW,
        "--datasets",
        FAST[1],
        "--methods",
        "magic",
        needle="magic",
    ),
    C("sweep-shots-0", "subpt", "sweep", "--out", NEW, "--datasets", FAST[1], "--shots", "0", needle="shots"),
    C(
        "sweep-epochs-negative",
        "subpt",
        "sweep",
        "--out",
        NEW,
        "--datasets",
        FAST[1],
        "--epochs",
        "-1",
        needle="epochs",
    ),
    C("sweep-datasets", "subpt", "sweep", "--out", NEW, "--datasets", "no-such-data", needle="no-such-data"),
    C(
        "sweep-out-under-a-file",
        "subpt",
        "sweep",
        "--out",
        "{file}/sweep",
        "--datasets",
        FAST[1],
        needle="not writable",
    ),
    C("table-missing-root", "subpt", "table", "{tmp}/none", needle="none"),
    C("table-out-is-a-folder", "subpt", "table", "{dir}", "--out", "{dir}", needle="--out"),
    C("table-csv-under-a-file", "subpt", "table", "{dir}", "--csv", "{file}/t.csv", needle="--csv"),
    # subpt build-embedded: checked before any pretraining
    C(
        "build-embedded-steps-0",
        "subpt",
        "build-embedded",
        "--steps",
        "0",
        "--out",
        "{tmp}/m.pt",
        needle="--steps",
    ),
    C(
        "build-embedded-out-folder",
        "subpt",
        "build-embedded",
        "--steps",
        "1",
        "--out",
        "{dir}",
        needle="--out",
    ),
    # subpt report
    C(
        "report-missing-run",
        "subpt",
        "report",
        "{tmp}/none",
        "--out",
        "{tmp}/r.html",
        needle="does not exist",
    ),
    C("report-a-file", "subpt", "report", "{file}", "--out", "{tmp}/r.html", needle="not a folder"),
    C("report-rank-0", "subpt", "report", "{run}", "--out", "{tmp}/r.html", "--rank", "0", needle="--rank"),
    C(
        "report-early-nan",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--early",
        "nan",
        needle="--early",
    ),
    C(
        "report-early-above-1",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--early",
        "1.5",
        needle="--early",
    ),
    C(
        "report-early-window-syntax",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--early-window",
        "epochs:x",
        needle="epochs:x",
    ),
    C(
        "report-early-window-outside",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--no-model",
        "-q",
        "--early-window",
        "epochs:50-60",
        needle="--early-window",
    ),
    C(
        "report-epochs-words",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--epochs",
        "a,b",
        needle="--epochs",
    ),
    C("report-out-under-a-file", "subpt", "report", "{run}", "--out", "{file}/r.html", needle="--out"),
    C("report-out-is-a-folder", "subpt", "report", "{run}", "--out", "{dir}", needle="--out"),
    C(
        "report-window-0",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--window",
        "0",
        needle="--window",
    ),
    C(
        "report-metric",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--metric",
        "manhattan",
        needle="--metric",
    ),
    C(
        "report-source",
        "subpt",
        "report",
        "{run}",
        "--out",
        "{tmp}/r.html",
        "--source",
        "weights",
        needle="source",
    ),
    # gradflow spectrum
    C("spectrum-missing", "gradflow", "spectrum", "{tmp}/none", needle="does not exist"),
    C("spectrum-a-file", "gradflow", "spectrum", "{file}", needle="not a trajectory store"),
    C("spectrum-window-syntax", "gradflow", "spectrum", "{store}", "-w", "epochs:x", needle="not understood"),
    C(
        "spectrum-window-outside",
        "gradflow",
        "spectrum",
        "{store}",
        "-w",
        "epochs:500-600",
        needle="selects no rows",
    ),
    C("spectrum-rank-0", "gradflow", "spectrum", "{store}", "--rank", "0", needle="rank"),
    C("spectrum-rank-negative", "gradflow", "spectrum", "{store}", "--rank", "-3", needle="rank"),
    C("spectrum-energy-nan", "gradflow", "spectrum", "{store}", "--energy", "nan", needle="energy"),
    C("spectrum-energy-above-1", "gradflow", "spectrum", "{store}", "--energy", "1.5", needle="energy"),
    C("spectrum-source", "gradflow", "spectrum", "{store}", "--source", "weights", needle="--source"),
    C("spectrum-method", "gradflow", "spectrum", "{store}", "--method", "fast", needle="fast"),
    C("spectrum-output-is-a-folder", "gradflow", "spectrum", "{store}", "-o", "{dir}", needle="is a folder"),
    C(
        "spectrum-output-under-a-file",
        "gradflow",
        "spectrum",
        "{store}",
        "-o",
        "{file}/b.pt",
        needle="--output",
    ),
    C("spectrum-plot-is-a-folder", "gradflow", "spectrum", "{store}", "--plot", "{dir}", needle="--plot"),
    C(
        "spectrum-manifest-dim-infinite",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=write(MANIFEST, '{"format": "gradflow-trajectory", "version": 1, "dim": Infinity}'),
        needle="manifest",
    ),
    C(
        "spectrum-manifest-list",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=write(MANIFEST, "[]"),
        needle="manifest.json",
    ),
    C(
        "spectrum-manifest-chunks-not-list",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=edit_json(
            MANIFEST, lambda d: {**d, "streams": {"grads": {"chunks": 7}, "snapshots": {"chunks": []}}}
        ),
        needle="manifest.json",
    ),
    C(
        "spectrum-chunk-absolute",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=set_chunk(MANIFEST, "grads", "file", "{sentinel}"),
        needle="manifest.json",
    ),
    C(
        "spectrum-chunk-dotdot",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=set_chunk(MANIFEST, "grads", "file", "../sentinel.txt"),
        needle="manifest.json",
    ),
    C(
        "spectrum-rows-float",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=set_chunk(MANIFEST, "grads", "rows", 16.5),
        needle="rows",
    ),
    C(
        "spectrum-param-shape-strings",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=edit_json(MANIFEST, lambda d: {**d, "params": [{**d["params"][0], "shape": ["4", "12"]}]}),
        needle="manifest.json",
    ),
    C(
        "spectrum-metadata-list",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=set_field(MANIFEST, "metadata", [1]),
        needle="metadata",
    ),
    C(
        "spectrum-chunk-truncated",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=truncate(CHUNK),
        needle="truncated",
    ),
    C(
        "spectrum-scalars-garbage",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=write("trajectory/grads/chunk_000000.scalars.npy", GARBAGE),
        needle="scalars",
    ),
    C(
        "spectrum-chunk-missing",
        "gradflow",
        "spectrum",
        "{store}",
        copy="store",
        damage=lambda folder, env: (folder / CHUNK).unlink(),
        needle="missing",
    ),
    # gradflow compare
    C("compare-missing-bases", "gradflow", "compare", "{tmp}/a.pt", "{tmp}/b.pt", needle="does not exist"),
    C("compare-garbage-basis", "gradflow", "compare", "{basis}", "{file}", needle="corrupt"),
    C("compare-basis-folder", "gradflow", "compare", "{basis}", "{dir}", needle="does not exist"),
    C(
        "compare-windows-with-bases",
        "gradflow",
        "compare",
        "{basis}",
        "{basis}",
        "--window-a",
        "epochs:1-2",
        needle="--window-a",
    ),
    C(
        "compare-run-one-window",
        "gradflow",
        "compare",
        "{store}",
        "--window-a",
        "epochs:1-2",
        needle="--window-b",
    ),
    C(
        "compare-run-rank-0",
        "gradflow",
        "compare",
        "{store}",
        "--window-a",
        "epochs:1-5",
        "--window-b",
        "epochs:6-10",
        "--rank",
        "0",
        needle="rank",
    ),
    C("compare-plot-folder", "gradflow", "compare", "{basis}", "{basis}", "--plot", "{dir}", needle="--plot"),
    # gradflow record: `subpt train` underneath, same checks
    C(
        "record-every-0",
        "gradflow",
        "record",
        *TRAIN[:-1],
        "--out",
        NEW,
        "--every",
        "0",
        needle="--record-every",
    ),
    C(
        "record-dtype",
        "gradflow",
        "record",
        *TRAIN[:-1],
        "--out",
        NEW,
        "--dtype",
        "int8",
        needle="--record-dtype",
    ),
    C("record-out-is-a-file", "gradflow", "record", *TRAIN[:-1], "--out", "{file}", needle="not a folder"),
    # gradflow report
    C(
        "gradflow-report-missing",
        "gradflow",
        "report",
        "{tmp}/none",
        "--out",
        "{tmp}/r.html",
        needle="does not exist",
    ),
    C(
        "gradflow-report-empty-folder",
        "gradflow",
        "report",
        "{dir}",
        "--out",
        "{tmp}/r.html",
        needle="not a trajectory store",
    ),
    C(
        "gradflow-report-rank-0",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{tmp}/r.html",
        "--rank",
        "0",
        needle="--rank",
    ),
    C(
        "gradflow-report-early-nan",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{tmp}/r.html",
        "--early",
        "nan",
        needle="--early",
    ),
    C(
        "gradflow-report-late-window-outside",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{tmp}/r.html",
        "-q",
        "--late-window",
        "epochs:500-600",
        needle="--late-window",
    ),
    C(
        "gradflow-report-window-0",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{tmp}/r.html",
        "--window",
        "0",
        needle="--window",
    ),
    C(
        "gradflow-report-source",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{tmp}/r.html",
        "--source",
        "weights",
        needle="source",
    ),
    C(
        "gradflow-report-out-under-a-file",
        "gradflow",
        "report",
        "{store}",
        "--out",
        "{file}/r.html",
        needle="--out",
    ),
    C("gradflow-report-out-is-a-folder", "gradflow", "report", "{store}", "--out", "{dir}", needle="--out"),
]


def test_the_table_is_large_and_covers_every_command() -> None:
    """At least 60 cases, and every command of both apps has one."""
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    commands = {(c.app, c.args[0]) for c in CASES}
    for name, app in APPS.items():
        import typer.main

        group = typer.main.get_command(app)
        wanted = {(name, cmd) for cmd in group.commands if cmd not in ("datasets", "data")}
        assert wanted <= commands, wanted - commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    case: Case, shared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("outside every run folder\n")
    (tmp_path / "file").write_bytes(GARBAGE)
    (tmp_path / "dir").mkdir()
    places = {
        "tmp": str(tmp_path),
        "file": str(tmp_path / "file"),
        "dir": str(tmp_path / "dir"),
        "run": str(shared["run"]),
        "store": str(shared["store"]),
        "basis": str(shared["basis"]),
        "sentinel": str(sentinel),
    }
    if case.copy is not None:
        copy = tmp_path / case.copy
        shutil.copytree(shared[case.copy], copy)
        places[case.copy] = str(copy)
        if case.damage is not None:
            case.damage(copy, Env(places, monkeypatch))
    args = [a.format(**places) for a in case.args]
    watched = [tmp_path, shared["run"], shared["store"], shared["basis"].parent]
    before = snapshot(*watched)
    result = runner.invoke(APPS[case.app], args)
    text = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), "".join(
        traceback.format_exception(*result.exc_info)
    )
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.needle in lines[0], lines[0]
    assert snapshot(*watched) == before


def test_the_watch_sees_a_change(tmp_path: Path) -> None:
    """The byte-for-byte watch is not blind: a changed byte, a new file and a mode change each show."""
    (tmp_path / "a").write_bytes(b"x")
    before = snapshot(tmp_path)
    (tmp_path / "a").write_bytes(b"y")
    assert snapshot(tmp_path) != before
    (tmp_path / "a").write_bytes(b"x")
    assert snapshot(tmp_path) == before
    (tmp_path / "b").mkdir()
    assert snapshot(tmp_path) != before
    (tmp_path / "b").rmdir()
    assert snapshot(tmp_path) == before
    (tmp_path / "a").chmod(0)
    assert snapshot(tmp_path) != before


# ---------------------------------------------------------------------------------------------- resume, reports
def test_resume_with_a_damaged_chunk_leaves_the_folder_unchanged(
    shared: dict[str, Path], tmp_path: Path
) -> None:
    """A run killed after its last checkpoint and before the metrics line (the resume would restore that line) with
    a truncated trajectory chunk: `--resume` fails with one line before it rewrites anything."""
    run = tmp_path / "run"
    shutil.copytree(shared["run"], run)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]))
    truncate(CHUNK)(run, Env({}, pytest.MonkeyPatch()))
    before = snapshot(tmp_path)
    result = runner.invoke(subpt_app, ["train", *TRAIN, "--out", str(run), "--resume"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "chunk_000000.npy" in lines[0] and "truncated" in lines[0], result.stderr
    assert snapshot(tmp_path) == before


def _one_warning(stderr: str, *needles: str) -> str:
    """The single stderr line of a report that skipped something: a warning naming `needles`."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_gradflow_report_of_a_damaged_store_says_what_it_skipped(
    shared: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(shared["store"], store)
    truncate("trajectory/grads/chunk_000002.npy")(store, Env({}, pytest.MonkeyPatch()))
    out = tmp_path / "r.html"
    result = runner.invoke(gradflow_app, ["report", str(store), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    _one_warning(result.stderr, "chunk_000002.npy", str(out))
    html = out.read_text()
    assert "chunk_000002.npy" in html and "left out" in html
    clean = runner.invoke(
        gradflow_app, ["report", str(shared["store"]), "--out", str(tmp_path / "ok.html"), "-q"]
    )
    assert clean.exit_code == 0 and clean.stderr.strip() == "", clean.stderr  # nothing skipped: no warning


def test_subpt_report_of_a_damaged_run_says_what_it_skipped(shared: dict[str, Path], tmp_path: Path) -> None:
    """A garbage context checkpoint and a truncated chunk: the report is written, names both, and warns once."""
    run = tmp_path / "run"
    shutil.copytree(shared["run"], run)
    write("ckpt/ctx_002.pt", GARBAGE)(run, Env({}, pytest.MonkeyPatch()))
    truncate(CHUNK)(run, Env({}, pytest.MonkeyPatch()))
    out = tmp_path / "r.html"
    result = runner.invoke(subpt_app, ["report", str(run), "--out", str(out), "--quiet", "--epochs", "1,2"])
    assert result.exit_code == 0, result.output
    _one_warning(result.stderr, "ctx_002.pt", "chunk_000000.npy")
    html = out.read_text()
    assert "ctx_002.pt" in html and "chunk_000000.npy" in html
