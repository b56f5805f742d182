"""Registry commands: ``check``, ``search``, ``enrolled``, ``batch`` (with progress and summary)."""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._native import (
    IBRService,
)
from .batch_io import _count_lines, _format_of, _Output, _read_csv, _read_jsonl, _record_of, _Row
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MATCH,
    EXIT_OK,
    CLIError,
    _dump_json,
    _fmt_int,
    _unicode_ok,
    _use_color,
)
from .settings import _client

# ---- running checks: progress and summary ----------------------------------------------------


@dataclass
class _Summary:
    confirmed: int = 0
    possible: int = 0
    no_match: int = 0
    failed: int = 0
    identifiers: int = 0
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return self.confirmed + self.possible + self.no_match + self.failed

    def add(self, record: dict[str, Any]) -> None:
        result = record["result"]
        if record["state"] == "failed" or result is None:
            self.failed += 1
        elif result == "confirmed_match":
            self.confirmed += 1
        elif result == "possible_match":
            self.possible += 1
        else:
            self.no_match += 1
        self.identifiers += sum(1 for i in record["identifiers"] if i["status"] != "not_checked")


class _Progress:
    """A one-line progress bar on a terminal (stderr); silent when not a terminal."""

    def __init__(self, stream: IO[str], total: int | None, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled and bool(getattr(stream, "isatty", lambda: False)())
        self.unicode = _unicode_ok(stream)
        self.start = time.monotonic()
        self.last = self.start  # the first frame after a moment: no meaningless rate
        self.drawn = False

    def update(self, summary: _Summary, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.08:
            return
        self.last = now
        done = summary.total
        elapsed = max(now - self.start, 1e-6)
        rate = f"{summary.identifiers / elapsed:,.0f} ids/s"
        width = shutil.get_terminal_size((80, 24)).columns
        total = max(self.total or 0, done)
        if self.total:
            share = done / total if total else 1.0
            counts = f"{_fmt_int(done)}/{_fmt_int(total)}"
            tail = f" {share:4.0%}  {counts}  {rate}"
            bar_width = max(10, min(40, width - len(tail) - 16))
            filled = int(bar_width * share)
            full, empty = ("█", "░") if self.unicode else ("#", "-")
            bar = full * filled + empty * (bar_width - filled)
            text = f"  checking {bar}{tail}"
        else:
            text = f"  checking {_fmt_int(done)} registrants  {rate}"
        self.stream.write("\r" + text[: width - 1] + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self, summary: _Summary, keep: bool = True) -> None:
        if not self.enabled:
            return
        if keep:
            if self.total is not None:
                self.total = summary.total
            self.update(summary, force=True)
            self.stream.write("\n")
        elif self.drawn:
            self.stream.write("\r\x1b[K")
        self.stream.flush()


def _run_checks(
    service: IBRService,
    rows: Iterable[_Row],
    emit: Callable[[dict[str, Any], _Row], None],
    *,
    batch_size: int,
    concurrency: int,
    progress: _Progress,
    include_raw: bool = False,
) -> _Summary:
    """Streams ``rows`` through ``check_many`` (memory bounded by its window); every row, the
    malformed ones included, gives exactly one record, in input order."""
    summary = _Summary()
    pending: deque[_Row] = deque()

    def registrants() -> Iterator[tuple[int, list[tuple[str, str]]]]:
        for index, row in enumerate(rows):
            pending.append(row)
            # A malformed row is sent with no identifiers (nothing goes on the wire) to keep
            # its place in the order; its record carries the parse error.
            yield index, ([] if row.error is not None else row.identifiers)

    start = time.monotonic()
    try:
        for index, result in enumerate(
            service.check_many(registrants(), batch_size=batch_size, concurrency=concurrency)
        ):
            row = pending.popleft()
            if result.key != index:  # the native iterator promises input order
                raise CLIError(f"results out of order at line {row.line}", EXIT_FAILED)
            record = _record_of(row, None if row.error else result, include_raw)
            summary.add(record)
            emit(record, row)
            progress.update(summary)
    finally:
        summary.elapsed = time.monotonic() - start
    return summary


_LABELS = (
    ("confirmed", "confirmed match", "31"),
    ("possible", "possible match", "33"),
    ("no_match", "no match", "32"),
    ("failed", "failed", "35"),
)


def _summary_lines(
    summary: _Summary, *, color: bool, unicode: bool, batch_size: int, concurrency: int
) -> list[str]:
    """The summary table: counts and shares per outcome, then throughput."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    rule = "─" if unicode else "-"
    total = summary.total
    widths = (16, 11, 7)
    sep = "  " + "  ".join(rule * w for w in widths)
    lines = [
        "  "
        + "  ".join(
            (f"{'result':<{widths[0]}}", f"{'registrants':>{widths[1]}}", f"{'share':>{widths[2]}}")
        ),
        sep,
    ]
    for attr, label, code in _LABELS:
        count = int(getattr(summary, attr))
        share = f"{count / total:.1%}" if total else "-"
        cells = f"{label:<{widths[0]}}  {_fmt_int(count):>{widths[1]}}  {share:>{widths[2]}}"
        lines.append("  " + (paint(cells, code) if count else cells))
    lines.append(sep)
    share = "100.0%" if total else "-"
    lines.append(f"  {'total':<{widths[0]}}  {_fmt_int(total):>{widths[1]}}  {share:>{widths[2]}}")
    elapsed = max(summary.elapsed, 1e-6)
    dot, times = ("·", "\u00d7") if unicode else ("-", "x")
    lines.append("")
    lines.append(
        f"  {_fmt_int(summary.identifiers)} identifiers in {summary.elapsed:.2f} s {dot} "
        f"{summary.identifiers / elapsed:,.0f} identifiers/s {dot} "
        f"{total / elapsed:,.0f} registrants/s {dot} "
        f"batch {batch_size} {times} {concurrency} in flight"
    )
    return lines


# ---- commands: registry ----------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    service = IBRService(_client(args))
    result = service.check_duplication(args.ids)
    if args.json:
        data = result.to_dict()
        if not args.raw:
            data.pop("raw_responses", None)
        data.pop("key", None)
        _dump_json(data, sys.stdout)
    else:
        out = sys.stdout
        out.write(f"result    {result.result or 'failed'}\n")
        if result.matched_programs:
            out.write(f"programs  {', '.join(result.matched_programs)}\n")
        for o in result.outcomes:
            detail = f" ({o.record_count})" if o.status == "records" else ""
            reason = f": {o.reason}" if o.reason else ""
            out.write(f"  {o.id_type}={o.id_value}  {o.status}{detail}{reason}\n")
        for reason in result.reasons:
            out.write(f"reason    {reason}\n")
    sys.stdout.flush()
    if result.state == "failed":
        raise CLIError(f"the check failed: {'; '.join(result.reasons)}", EXIT_FAILED)
    return EXIT_MATCH if result.is_duplicate else EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    service = IBRService(_client(args))
    id_type, id_value = args.id
    records = service.search_beneficiary(id_type, id_value)
    data = [b.to_dict() for b in records]
    if not args.raw:
        for item in data:
            item.pop("raw", None)
    _dump_json(data, sys.stdout)
    return EXIT_OK


def _cmd_enrolled(args: argparse.Namespace) -> int:
    service = IBRService(_client(args))
    id_type, id_value = args.id
    status = service.get_enrollment_status(id_type, id_value)
    if not args.raw:
        for item in status.get("beneficiary_info") or []:
            if isinstance(item, dict):
                item.pop("raw", None)
    _dump_json(status, sys.stdout)
    return EXIT_MATCH if status.get("enrolled") else EXIT_OK


def _open_input(path: str, fmt: str) -> tuple[Iterator[_Row], Callable[[], None]]:
    try:
        raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    if fmt == "jsonl":
        return _read_jsonl(raw), lambda: None if path == "-" else raw.close()
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def close() -> None:
        if path == "-":
            text.detach()  # leave stdin open
        else:
            text.close()

    return _read_csv(text), close


def _cmd_batch(args: argparse.Namespace) -> int:
    in_fmt = _format_of(args.input, args.input_format, "input")
    out_path = args.output
    out_fmt = _format_of(out_path, args.format, "output")
    if (
        out_path != "-"
        and args.input != "-"
        and Path(out_path).resolve() == Path(args.input).resolve()
    ):
        raise CLIError("the output would overwrite the input: give another -o")
    service = IBRService(_client(args))
    rows, close_input = _open_input(args.input, in_fmt)
    try:  # a bad header is reported before the output file is created
        first = next(rows, None)
    except BaseException:
        close_input()
        raise
    rows = itertools.chain([first] if first is not None else [], rows)
    total = None
    if args.input != "-":
        lines = _count_lines(args.input)
        if lines is not None:
            total = max(lines - (1 if in_fmt == "csv" else 0), 0)
    try:
        stream: IO[str] = (
            sys.stdout if out_path == "-" else open(out_path, "w", encoding="utf-8", newline="")
        )
    except OSError as exc:
        close_input()
        raise CLIError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    output = _Output(stream, out_fmt)
    # No bar when the results themselves go to the terminal: it would garble them.
    results_on_terminal = out_path == "-" and sys.stdout.isatty()
    progress = _Progress(
        sys.stderr,
        total,
        enabled=not (args.no_progress or args.quiet or results_on_terminal),
    )
    summary = _Summary()
    try:
        summary = _run_checks(
            service,
            rows,
            lambda record, _row: output.write(record),
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            progress=progress,
            include_raw=args.include_raw,
        )
    except KeyboardInterrupt:
        progress.close(summary, keep=False)
        where = "" if out_path == "-" else f"; {out_path} holds the rows checked so far"
        raise CLIError("interrupted" + where, EXIT_INTERRUPTED) from None
    finally:
        close_input()
        stream.flush()
        if stream is not sys.stdout:
            stream.close()
    progress.close(summary)
    if not args.quiet:
        err = sys.stderr
        for line in _summary_lines(
            summary,
            color=_use_color(err),
            unicode=_unicode_ok(err),
            batch_size=args.batch_size,
            concurrency=args.concurrency,
        ):
            err.write(line + "\n")
        if out_path != "-":
            err.write(f"\n  results  {out_path}\n")
        err.flush()
    if summary.failed:
        raise CLIError(
            f"{_fmt_int(summary.failed)} of {_fmt_int(summary.total)} rows failed "
            "(their reasons are in the output)",
            EXIT_FAILED,
        )
    return EXIT_OK
