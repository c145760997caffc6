"""Silencing open_clip's expected warnings for the duration of one call, without touching any logger's level."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextmanager
def quiet_open_clip() -> Iterator[None]:
    """Drop the warnings open_clip logs (on its own logger and on the root logger) inside the block.

    A filter is attached for the block and removed after it: the levels of the application's loggers stay
    as the application set them.
    """
    loggers = [logging.getLogger(), logging.getLogger("open_clip")]
    for lg in loggers:
        lg.addFilter(_errors_only)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(_errors_only)
