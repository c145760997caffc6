"""Helpers shared by the Typer apps: one-line user errors with exit code 2, JSON output."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from gradflow.errors import GradflowError

USER_ERROR_EXIT = 2
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the disk, not the program: one line, not a traceback
_USER_ERRORS: list[type[BaseException]] = [GradflowError]
F = TypeVar("F", bound=Callable[..., Any])


def defaults_of(cls: type) -> Callable[[str], Any]:
    """A function giving the default of a field of dataclass `cls`: the one place where a setting's default is
    stated is its config dataclass, and the command options take it from there."""
    table = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    def default(name: str) -> Any:
        return table[name]

    return default


def register_user_error(cls: type[BaseException]) -> type[BaseException]:
    """Treat exceptions of ``cls`` as user-facing: printed as one line, exit code 2 (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise TypeError(f"register_user_error needs an exception class, got {cls!r}")
    if cls not in _USER_ERRORS:
        _USER_ERRORS.append(cls)
    return cls


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes currently treated as user-facing."""
    return tuple(_USER_ERRORS)


def one_line(message: object) -> str:
    """Collapse a message to a single line."""
    return " ".join(str(message).split())


def fail(message: object) -> NoReturn:
    """Print ``error: <message>`` to stderr as one line and exit with code 2."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(USER_ERROR_EXIT)


def run_app(app: typer.Typer, prog_name: str, args: list[str] | None = None) -> None:
    """Run a Typer app as a console script. A usage error (an unknown command or option, a value that does not
    parse, a missing argument) is one stderr line naming the command's help and exit code 2, like every other
    bad input."""
    try:
        code = app(args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # Typer's usage and parameter errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {one_line(exc.format_message())}{where}", err=True)
        sys.exit(USER_ERROR_EXIT if ctx is not None else getattr(exc, "exit_code", 1))
    sys.exit(code if isinstance(code, int) else 0)


def run_guarded(fn: F) -> F:
    """Decorator for commands: a registered user error becomes one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_error_types() as exc:
            fail(exc)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            fail(f"{os.strerror(exc.errno)}{where}: free space (or choose another --out), then run the same command "
                 "with --resume; finished epochs are kept")

    return wrapper  # type: ignore[return-value]


def check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before any work, an output file (`option`, e.g. --out) that is a folder or lies under a file: one
    line and exit code 2 instead of a traceback after the work is done. None (the option not given) passes."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        fail(f"{option} {p} is a folder, not a file: give the path of a file to write")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        fail(f"{option} {p} lies under {parent}, which is a file, not a folder: choose another {option}")


def _jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths and non-finite floats to JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays/scalars, torch tensors
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` to stdout as JSON (numpy/torch values converted, NaN/inf as null)."""
    typer.echo(json.dumps(_jsonable(obj), indent=2))
