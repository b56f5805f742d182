"""Exit codes, the CLI error, and output hygiene: secrets redacted, text made printable."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import IO, Any

PROG = "spp-dci-ibr"

EXIT_OK = 0
EXIT_MATCH = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_INVALID_SIGNATURE = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CLIError(Exception):
    """An error reported as one line on stderr, with the exit code to return."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---- output hygiene --------------------------------------------------------------------------

# Secret values of the current run (client secret, bearer token): scrubbed from every message.
_SECRETS: set[str] = set()


def _remember_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def _redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _one_line(text: str, limit: int = 600) -> str:
    text = _printable(" ".join(_redact(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")
    sys.stderr.flush()


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {_one_line(message)}\n")


def _clean_text(text: str) -> str:
    """Text read with ``surrogateescape`` made printable (undecodable bytes become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _use_color(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _unicode_ok(stream: IO[str]) -> bool:
    return "utf" in (getattr(stream, "encoding", None) or "").lower()


def _printable(text: str) -> str:
    """Control characters shown as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _utc(ts: int | None) -> str:
    if ts is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _dump_json(value: Any, stream: IO[str]) -> None:
    text = json.dumps(value, ensure_ascii=not _unicode_ok(stream), indent=2, default=str)
    stream.write(text + "\n")
