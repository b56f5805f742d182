"""The ``sandbox`` and ``demo`` commands: the embedded IBR sandbox served, and checked against."""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._native import (
    IBRService,
)
from ..exceptions import DCIError

if TYPE_CHECKING:
    from ..sandbox import IBRSandbox

from .batch_io import _Output, _Row, _row_from_mapping
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    CLIError,
    _fmt_int,
    _one_line,
    _printable,
    _unicode_ok,
    _use_color,
)
from .registry import _Progress, _run_checks, _summary_lines
from .settings import _read_text_file

# ---- commands: sandbox and demo --------------------------------------------------------------


def _sandbox_class() -> type[IBRSandbox]:
    """``IBRSandbox``, imported only by the commands that serve one."""
    try:
        from ..sandbox import IBRSandbox
    except ImportError as exc:
        raise CLIError(
            f"the embedded IBR sandbox is not available in this installation ({exc})", EXIT_FAILED
        ) from None
    return IBRSandbox


def _json_option(text: str, what: str) -> Any:
    if text.startswith("@"):
        text = _read_text_file(text[1:], f"the {what} file")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}") from None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM while the block runs, handlers restored after.

    Installed before the sandbox announces itself, so that a signal sent as soon as "Press
    Ctrl-C" is read stops it cleanly (exit 0). Off the main thread only KeyboardInterrupt works.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    sandbox_cls = _sandbox_class()
    kwargs: dict[str, Any] = {
        "synthetic": 0 if args.records else args.synthetic,
        "seed": args.seed,
        "require_auth": not args.no_auth,
        "require_signatures": not args.no_signatures,
        "strict": not args.no_strict,
        "one_callback_url": args.one_callback_url,
        "host": args.host,
        "port": args.port,
    }
    if args.records:
        kwargs["records_file"] = args.records
    if args.prefix:
        kwargs["prefix"] = args.prefix
    if args.sender_id:
        kwargs["sender_id"] = args.sender_id
    if args.faults:
        faults = _json_option(args.faults, "--faults")
        if not isinstance(faults, dict):
            raise CLIError("--faults must be a JSON object")
        kwargs["faults"] = faults
    trusted: list[tuple[str, str]] = []  # (sender id, PEM/JWK/JWKS text) read by the core
    for item in args.trust or []:
        sender, sep, path = item.partition("=")
        if not sep or not sender.strip() or not path.strip():
            raise CLIError(f"--trust '{item}' is not SENDER_ID=KEYFILE")
        trusted.append((sender.strip(), _read_text_file(path.strip(), "the key file")))
    with _stop_on_signals() as stop:
        return _serve_sandbox(args, sandbox_cls, kwargs, trusted, stop)


def _serve_sandbox(
    args: argparse.Namespace,
    sandbox_cls: type[IBRSandbox],
    kwargs: dict[str, Any],
    trusted: list[tuple[str, str]],
    stop: threading.Event,
) -> int:
    try:
        sandbox = sandbox_cls(**kwargs)
    except (DCIError, ValueError, TypeError, OSError) as exc:
        raise CLIError(f"cannot create the sandbox: {exc}") from None
    try:
        sandbox.start()
    except (DCIError, OSError) as exc:
        raise CLIError(f"cannot start the sandbox: {exc}", EXIT_FAILED) from None
    try:
        for sender, key in trusted:
            try:
                sandbox.register_client_key(sender, key)
            except (DCIError, ValueError, TypeError) as exc:
                raise CLIError(f"cannot trust the key of {sender}: {exc}") from None
        out = sys.stdout
        what = (
            f"records from {args.records}"
            if args.records
            else f"{_fmt_int(args.synthetic)} synthetic beneficiaries (seed {args.seed})"
        )
        out.write(f"IBR sandbox running with {what}\n")
        secret = sandbox.client_secret if args.show_secret else "(hidden; --show-secret prints it)"
        for label, value in (
            ("url", sandbox.url),
            ("token url", sandbox.token_url),
            ("jwks url", sandbox.jwks_url),
            ("sender id", sandbox.sender_id),
            ("client id", sandbox.client_id),
            ("client secret", secret),
        ):
            out.write(f"  {label:<14} {value}\n")
        checks = [
            "bearer tokens" if not args.no_auth else "",
            "signatures" if not args.no_signatures else "",
            "the spec's schemas" if not args.no_strict else "",
        ]
        enforced = ", ".join(c for c in checks if c) or "nothing"
        out.write(f"  {'enforces':<14} {enforced}\n")
        for sender, _key in trusted:
            out.write(f"  {'trusts':<14} {sender}\n")
        out.write("Press Ctrl-C to stop.\n")
        out.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:  # off the main thread
            pass
    finally:
        sandbox.stop()
    sys.stdout.write("sandbox stopped\n")
    return EXIT_OK


_DEMO_MIX = (  # share of the registrants per kind
    ("active", 0.30),
    ("suspended", 0.10),
    ("graduated", 0.15),
    ("deceased", 0.05),
    ("unknown", 0.30),
)
_DEMO_MALFORMED = (
    "{value}",  # no TYPE=
    "UIN=",  # empty value
    "={value}",  # empty type
    "",  # no identifiers at all
    "UIN={value}\x07",  # a control character: refused by the client, never sent
)


def _demo_rows(sandbox: IBRSandbox, count: int, seed: int) -> list[_Row]:
    """A shuffled mix of registrants: enrolled (active, suspended), graduated, deceased,
    unknown and malformed, some with a second identifier."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not security)
    malformed = count - sum(int(count * share) for _, share in _DEMO_MIX)
    specs: list[str] = []
    extra_unknown = iter(sandbox.sample_identifiers("unknown", count * 2)[count:])
    for kind, share in _DEMO_MIX:
        n = int(count * share)
        ids = sandbox.sample_identifiers(kind, n)
        if len(ids) < n:  # a small registry: fill with unknown identifiers
            ids += sandbox.sample_identifiers("unknown", count)[: n - len(ids)]
        for k, (id_type, value) in enumerate(ids):
            text = f"{id_type}={value}"
            if k % 4 == 3:  # a registrant known by two identifiers
                t2, v2 = next(extra_unknown)
                text += f";{t2}={v2}"
            specs.append(text)
    for k in range(malformed):
        specs.append(_DEMO_MALFORMED[k % len(_DEMO_MALFORMED)].format(value=f"UIN-4{k:07d}"))
    rng.shuffle(specs)
    rows = []
    for n, text in enumerate(specs, 1):
        row = _row_from_mapping(n, {"key": f"R{n:05d}", "identifiers": text}, key_required=True)
        row.source = text
        rows.append(row)
    return rows


def _cmd_demo(args: argparse.Namespace) -> int:
    sandbox_cls = _sandbox_class()
    out = sys.stdout
    color, unicode = _use_color(out), _unicode_ok(out)
    dash = "—" if unicode else "-"

    def bold(text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if color else text

    if args.out:
        out_path = Path(args.out)
    else:
        out_path = Path(tempfile.mkdtemp(prefix="spp-dci-ibr-demo-")) / "results.jsonl"
    try:
        stream = open(out_path, "w", encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    examples: dict[str, tuple[_Row, dict[str, Any]]] = {}

    def emit(record: dict[str, Any], row: _Row) -> None:
        output.write(record)
        examples.setdefault(record["result"] or "failed", (row, record))

    out.write(
        bold(f"{PROG} demo {dash} duplication checks against an embedded IBR sandbox") + "\n\n"
    )
    output = _Output(stream, "jsonl")
    try:
        with sandbox_cls(synthetic=args.beneficiaries, seed=args.seed) as sandbox:
            client = sandbox.client()
            service = IBRService(client)
            rows = _demo_rows(sandbox, args.registrants, args.seed)
            out.write(
                f"  registry     {_fmt_int(args.beneficiaries)} synthetic beneficiaries "
                f"(seed {args.seed}) at {sandbox.url}\n"
                f"  client       {client.sender_id}: signed requests, OAuth2, signed answers "
                "verified\n"
                f"  registrants  {_fmt_int(len(rows))}: enrolled (active, suspended), graduated, "
                "deceased, unknown and malformed\n\n"
            )
            out.flush()
            progress = _Progress(sys.stderr, len(rows), enabled=not args.no_progress)
            summary = _run_checks(
                service,
                rows,
                emit,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                progress=progress,
            )
            progress.close(summary)
    except KeyboardInterrupt:
        raise CLIError("interrupted", EXIT_INTERRUPTED) from None
    finally:
        stream.close()
    if progress.enabled:
        sys.stderr.write("\n")
    for line in _summary_lines(
        summary,
        color=color,
        unicode=unicode,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
    ):
        out.write(line + "\n")
    out.write("\n  examples\n")
    for label in ("confirmed_match", "possible_match", "no_match", "failed"):
        if label not in examples:
            continue
        row, record = examples[label]
        ids = (
            row.source
            if row.source is not None
            else ";".join(f"{t}={v}" for t, v in row.identifiers)
        )
        if record["state"] == "failed":
            detail = "; ".join(record["reasons"])
        else:
            detail = ", ".join(record["matched_programs"])
        shown = _one_line(_printable(ids) or '""', 34)
        line = f"    {row.key}  {shown:<34}  {label.replace('_', ' '):<15}  {_one_line(detail, 70)}"
        out.write(line.rstrip() + "\n")
    out.write(f"\n  results      {out_path}\n")
    out.flush()
    return EXIT_OK
