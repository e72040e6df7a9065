"""Progress bars that suit where they are written: a live bar in a terminal, lines in a log."""

from __future__ import annotations

import sys
from typing import Any
from typing import TextIO


LOG_INTERVAL_S = 5.0
"""Seconds between two progress lines when stderr is not a terminal."""


class _Lines:
    """A file for tqdm that turns each carriage-return refresh into one line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self._stream.write(text + "\n")

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(*, total: int, desc: str, disable: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar on stderr; written to a file or pipe, one line every few seconds instead of
    one ever-growing line of carriage returns.

    Example:
        >>> with progress_bar(total=3, desc="steps", disable=True) as bar:
        ...     _ = bar.update(3)
    """
    from tqdm.auto import tqdm

    stream = sys.stderr
    if not disable and not stream.isatty():
        kwargs = {"file": _Lines(stream), "mininterval": LOG_INTERVAL_S, "ascii": True, **kwargs}
        kwargs.setdefault("leave", True)
    return tqdm(total=total, desc=desc, disable=disable, **kwargs)
