"""`subpt` command line: bad input is one line on stderr with exit code 2, and run folders stay untouched."""

from __future__ import annotations

import importlib
import json
import sys

import pytest
from subpt._cli.subpt_app import app
from typer.testing import CliRunner

runner = CliRunner()
FAST = ["--dataset", "world-color-shape-36", "--shots", "2", "--epochs", "1", "--n-ctx", "4"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = invoke("train", *FAST, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return out


def snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_train_json_and_eval_agree(finished_run):
    result = invoke("eval", str(finished_run), "--json")
    assert result.exit_code == 0, result.output
    ev = json.loads(result.stdout)
    last = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert ev["epoch"] == 1
    for k in ("base_acc", "novel_acc", "hm"):
        assert ev[k] == pytest.approx(last[k], abs=1e-9)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--dataset", "no-such-data"], ["unknown dataset", "no-such-data"]),
        (["--n-ctx", "0"], ["--n-ctx must be at least 1"]),
        (["--shots", "100000"], ["--shots 100000", "512"]),
        (["--model", "NoSuchNet"], ["unknown model", "NoSuchNet"]),
        (["--pretrained", "/nonexistent/weights.pt"], ["no such file"]),
        (["--basis", "/nonexistent/early.pt"], ["--basis", "no such file"]),
        (["--precision", "fp8"], ["--precision"]),
        (["--csc", "--nfl"], ["--nfl", "--csc"]),
        (["--lr", "inf"], ["--lr must be a finite number"]),
        (["--lr", "nan"], ["--lr must be a finite number"]),
        (["--weight-decay", "nan"], ["--weight-decay must be a finite number"]),
        (["--weight-decay", "-1"], ["--weight-decay must be non-negative"]),
        (["--nfl", "--nfl-lambda", "inf"], ["--nfl-lambda must be a finite number"]),
        (["--seed", str(2**64)], ["--seed"]),
        (["--device", "tpu"], ["--device must be cpu, cuda"]),
        (["--record", "--record-dtype", "float8"], ["--record-dtype must be one of"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, needles):
    out = tmp_path / "new"
    result = invoke("train", "--out", str(out), *FAST, *args)
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_existing_run_is_left_untouched(finished_run):
    before = snapshot(finished_run)
    assert_one_line_error(invoke("train", *FAST, "--out", str(finished_run)), "already holds a run", "--resume")
    assert_one_line_error(invoke("train", *FAST, "--n-ctx", "8", "--out", str(finished_run), "--resume"), "settings differ")
    assert snapshot(finished_run) == before


def test_corrupt_checkpoint_is_named(finished_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "ckpt" / "last.pt").write_bytes(b"not a checkpoint")
    before = snapshot(run)
    assert_one_line_error(invoke("train", *FAST, "--out", str(run), "--resume"), "last.pt", "corrupt")
    (run / "ckpt" / "ctx_001.pt").write_bytes(b"garbage")
    assert_one_line_error(invoke("eval", str(run)), "ctx_001.pt", "corrupt")
    assert snapshot(run) == {**before, run / "ckpt" / "ctx_001.pt": b"garbage"}


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("train", *FAST, "--out", str(blocker / "run")), "not writable")
    assert_one_line_error(invoke("train", *FAST, "--out", "/proc/subpt-run"), "not writable")


def test_zeroshot_template_and_ensemble():
    one = json.loads(invoke("zeroshot", "--dataset", "world-color-shape-36", "--json").stdout)
    ens = json.loads(invoke("zeroshot", "--dataset", "world-color-shape-36", "--ensemble", "--json").stdout)
    assert one["templates"] == ["a photo of a {}."] and len(ens["templates"]) > 1
    assert 0 <= one["hm"] <= 100 and 0 <= ens["hm"] <= 100
    assert_one_line_error(invoke("zeroshot", "--template", "no placeholder"), "no '{}'")


@pytest.mark.parametrize(
    "field, value, needle",
    [("lr", "fast", "'lr' must be float"), ("epochs", None, "'epochs' must be int"),
     ("dataset_options", [1, 2], "'dataset_options' must be dict"), ("csc", 1, "'csc' must be bool")],
)
def test_eval_of_a_config_with_a_wrongly_typed_field(finished_run, tmp_path, field, value, needle):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    config = json.loads((run / "config.json").read_text())
    config[field] = value
    (run / "config.json").write_text(json.dumps(config))
    assert_one_line_error(invoke("eval", str(run)), "config.json", needle)


def test_eval_and_basis_of_a_file_or_a_config_that_is_no_object(finished_run, tmp_path):
    import shutil

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line_error(invoke("eval", str(a_file)), "is a file, not a run folder")
    assert_one_line_error(invoke("basis", str(a_file), "-o", str(tmp_path / "b.pt")), "is a file, not a run folder")
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text("[1, 2]")
    assert_one_line_error(invoke("eval", str(run)), "config.json holds a JSON list")


def test_basis_rank_and_window_of_zero_are_refused(finished_run, tmp_path):
    out = tmp_path / "b.pt"
    assert_one_line_error(invoke("basis", str(finished_run), "--t-early", "0", "-o", str(out)), "--t-early must be at least 1")
    assert_one_line_error(invoke("basis", str(finished_run), "--rank", "0", "-o", str(out)), "--rank must be at least 1")
    assert not out.exists()


def test_eval_of_a_folder_that_is_no_run(tmp_path):
    assert_one_line_error(invoke("eval", str(tmp_path)), "config.json")


def hold_lock_in_another_process(run):
    """A child process holding the run folder's writer lock, as another `subpt train` on it would."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from subpt.runs import lock_run_dir; "
         "h = lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)", str(run)],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_of_a_run_folder_is_refused(finished_run):
    before = snapshot(finished_run)
    child = hold_lock_in_another_process(finished_run)
    try:
        for flags in (["--resume"], ["--overwrite"]):
            assert_one_line_error(invoke("train", *FAST, "--out", str(finished_run), *flags), "another process is writing")
    finally:
        child.kill()
        child.wait()
    assert snapshot(finished_run) == before


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    from subpt.errors import SubptError
    from subpt.runs import lock_run_dir

    run = tmp_path / "run"
    child = hold_lock_in_another_process(run)
    try:
        with pytest.raises(SubptError, match="another process is writing"):
            lock_run_dir(run)
    finally:
        child.kill()  # SIGKILL: no clean-up runs in the child
        child.wait()
    first = lock_run_dir(run)  # the kernel released the dead writer's lock
    second = lock_run_dir(run)  # holds within one process nest
    first.close()
    second.close()


def test_a_full_disk_is_one_line_leaves_no_temporary_file_and_resumes(tmp_path, monkeypatch):
    import errno

    import subpt.runs
    from gradflow.atomic import TMP_MARK, atomic_open

    real_save, calls = subpt.runs.atomic_torch_save, []

    def disk_fills_up(obj, path, **kw):
        calls.append(path)
        if len(calls) < 3:
            return real_save(obj, path, **kw)
        with atomic_open(path, "wb") as fh:  # the temporary file exists when the disk runs out
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    run = tmp_path / "run"
    args = ["train", *FAST[:-4], "--n-ctx", "4", "--epochs", "3", "--record", "--out", str(run)]
    monkeypatch.setattr(subpt.runs, "atomic_torch_save", disk_fills_up)
    assert_one_line_error(invoke(*args), "No space left on device", "--resume")
    assert not [p for p in run.rglob("*") if TMP_MARK in p.name]
    monkeypatch.setattr(subpt.runs, "atomic_torch_save", real_save)
    assert invoke(*args, "--resume").exit_code == 0
    full = tmp_path / "full"
    assert invoke(*args[:-1], str(full)).exit_code == 0
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    from subpt.runs import read_metrics

    assert strip(read_metrics(run)) == strip(read_metrics(full))


@pytest.mark.parametrize("command", [["demo", "--epochs", "4"], ["study", "--epochs", "4"],
                                     ["sweep", "--datasets", "world-color-shape-36", "--methods", "coop", "--shots", "1"]])
def test_an_output_folder_that_is_a_file_or_lies_under_one_is_one_line(tmp_path, command):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line_error(invoke(*command, "--out", str(a_file)), "is not a folder")
    assert_one_line_error(invoke(*command, "--out", str(a_file / "sub")), "is not writable")
    assert a_file.read_text() == "x"


@pytest.mark.parametrize(
    "prog, args, needle",
    [
        ("subpt", ["train", "--epochs", "abc"], "'--epochs'"),
        ("subpt", ["nosuch"], "No such command 'nosuch'"),
        ("subpt", ["train", "--nosuch", "1"], "--nosuch"),
        ("gradflow", ["spectrum"], "Missing argument"),
    ],
)
def test_a_usage_error_of_the_console_script_is_one_line(monkeypatch, capsys, prog, args, needle):
    """What Typer itself cannot parse goes through the console-script entry point: one line, exit code 2."""
    module = importlib.import_module(f"subpt._cli.{prog}_app")
    monkeypatch.setattr(sys, "argv", [prog, *args])
    with pytest.raises(SystemExit) as exited:
        module.main()
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and needle in lines[0] and f"`{prog} " in lines[0]


def test_the_console_script_prints_help_without_arguments(monkeypatch, capsys):
    """No arguments or --help: the help on stdout and exit code 0."""
    module = importlib.import_module("subpt._cli.subpt_app")
    for argv in (["subpt"], ["subpt", "--help"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exited:
            module.main()
        assert exited.value.code == 0
        assert "Usage" in capsys.readouterr().out
