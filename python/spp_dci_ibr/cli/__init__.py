"""The ``spp-dci-ibr`` command line: duplication checks, keys, signatures, the sandbox and a demo.

Subcommands: ``check`` (one registrant), ``batch`` (CSV/JSONL in and out), ``search``,
``enrolled``, ``doctor`` (every first-hour step against a registry), ``keygen``, ``jwk-to-pem``,
``verify`` (``--explain``: how), ``sandbox`` and ``demo``. Run
``spp-dci-ibr <command> --help`` for each one's options.

Registry commands (``check``, ``batch``, ``search``, ``enrolled``, ``doctor``) are configured by flags,
``SPP_DCI_*`` environment variables or a TOML file (``--config`` / ``SPP_DCI_CONFIG``), in that
order of precedence. Secrets (client secret, bearer token) are read from the environment, the
config file or a file named by a flag — never from a flag itself, which any user of the machine can
see — and never appear in any output. Options are never abbreviated (``--client-secret`` is not
``--client-secret-file``), and the values of unknown options are not repeated in errors.

Key files (``verify --key``, ``--registry-keys-file``, ``sandbox --trust``) hold a public key (one
PEM block, a JWK or a JWKS); a file holding a private key anywhere is refused. ``batch`` CSV output
writes a cell that a spreadsheet would run as a formula (it starts with ``= + - @``, a tab, CR…)
with a leading apostrophe.

Exit codes (stable; scripts may rely on them):

- 0: success. ``check``: no duplicate. ``enrolled``: not enrolled. ``verify``: valid signature.
  ``doctor``: every step passed (or did not apply).
- 1: ``check``: a duplicate was found (confirmed or possible match). ``enrolled``: enrolled.
  ``doctor``: a step warned, none failed.
- 2: usage or configuration error: a bad flag or setting, an unreadable file or key.
- 3: the check could not be decided, the registry's answer decides nothing (``enrolled``: not
  exactly yes/no), or the registry or transport failed (fail closed).
  ``batch``: at least one row failed (every row is still written to the output).
  ``doctor``: a step failed.
- 4: ``verify``: the signature is not valid (invalid, expired, malformed, unknown key, …).
- 130: interrupted (Ctrl-C). 141: the output pipe was closed.

Errors are one line on stderr: ``spp-dci-ibr: error: …``. ``SPP_DCI_DEBUG=1`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from ..exceptions import ConfigError, DCIError, KeyFormatError
from .common import (
    _SECRETS,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_SIGNATURE,
    EXIT_MATCH,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CLIError,
    _error,
)
from .demo import _cmd_demo, _cmd_sandbox
from .doctor import _cmd_doctor
from .keys import _cmd_jwk_to_pem, _cmd_keygen, _cmd_verify
from .registry import _cmd_batch, _cmd_check, _cmd_enrolled, _cmd_search
from .settings import (
    _HELP_FORMATTER,
    _add_registry_options,
    _ArgumentParser,
    _identifier,
    _non_negative_int,
    _positive_int,
    _unrecognized,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_SIGNATURE",
    "EXIT_MATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "main",
]

# ---- the parser ------------------------------------------------------------------------------


_EXIT_CODES = """\
exit codes:
  0    success; check: no duplicate; enrolled: not enrolled; verify: valid;
       doctor: every step passed
  1    check: duplicate found (confirmed or possible match); enrolled: enrolled;
       doctor: a step warned, none failed
  2    usage or configuration error
  3    check failed or enrolled answer undecided (fail closed), or registry/transport error;
       batch: at least one row failed; doctor: a step failed
  4    verify: signature not valid
  130  interrupted
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="DCI client for the Integrated Beneficiary Registry (IBR): duplication "
        "checks, keys and signatures, an embedded sandbox registry.",
        epilog=_EXIT_CODES + f"\nStart with '{PROG} demo'. Each command has --help.",
        formatter_class=_HELP_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # -q/-v go before or after the command; the command's parser sets them only when given.
    common = _ArgumentParser(add_help=False)
    for target, default in ((parser, None), (common, argparse.SUPPRESS)):
        target.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=False if default is None else default,
            help="no progress bar, summary or warnings",
        )
        target.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0 if default is None else default,
            help="log to stderr (-vv: debug)",
        )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=_EXIT_CODES,
            parents=[common],
            formatter_class=_HELP_FORMATTER,
        )
        return p

    p = command(
        "check",
        "check one registrant for duplicates",
        "Checks one registrant's identifiers against the IBR and prints the result.\n"
        "Exit 0: no match; 1: confirmed or possible match; 3: the check failed.",
    )
    p.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=_identifier,
        required=True,
        metavar="TYPE=VALUE",
        help="an identifier of the registrant (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--raw", action="store_true", help="with --json: include the raw answers")
    _add_registry_options(p)
    p.set_defaults(func=_cmd_check)

    p = command(
        "batch",
        "check many registrants from a CSV or JSONL file",
        "Checks every registrant of INPUT and writes one result row per input row, in order.\n"
        "CSV input: a header with 'key' and 'id_type','id_value' or 'identifiers' "
        "(TYPE=VALUE;TYPE=VALUE).\nJSONL input: objects with the same members; "
        "'identifiers' may also be a list.\nA malformed row becomes a failed result row "
        "with the reason. A progress bar is drawn on a terminal;\nthe summary goes to stderr. "
        "Exit 0: every row was decided; 3: some rows failed.\n"
        "CSV output: a cell starting (perhaps after blanks) with = + - @ (or their full-width "
        "forms),\na tab, CR, LF or NUL gets a leading apostrophe, so that a spreadsheet shows it "
        "as text\n(OWASP CSV injection).",
    )
    p.add_argument("input", metavar="INPUT", help="the registrants (.csv, .jsonl; '-': stdin)")
    p.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="OUTPUT",
        help="the results (.csv or .jsonl; default '-': JSONL on stdout)",
    )
    p.add_argument("--input-format", choices=("csv", "jsonl"), help="default: from the name")
    p.add_argument("--format", choices=("csv", "jsonl"), help="output format (default: from -o)")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=100,
        help="identifiers per request envelope (1-1000, default 100)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="requests in flight (1-64, default 4)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--include-raw", action="store_true", help="JSONL output: add the registry's raw answers"
    )
    _add_registry_options(p)
    p.set_defaults(func=_cmd_batch)

    p = command(
        "search",
        "print the beneficiary records of one identifier",
        "Searches the IBR for one identifier and prints the records found as JSON.",
    )
    p.add_argument("--id", required=True, type=_identifier, metavar="TYPE=VALUE")
    p.add_argument("--raw", action="store_true", help="include each raw record")
    _add_registry_options(p)
    p.set_defaults(func=_cmd_search)

    p = command(
        "enrolled",
        "print the enrolment status of one identifier",
        "Asks the IBR whether an identifier is enrolled (its sync/enrolled call when offered,\n"
        "search otherwise) and prints the answer as JSON. Exit 0: not enrolled; 1: enrolled;\n"
        "3: the answer does not say (anything but exactly yes/no is never 'not enrolled').",
    )
    p.add_argument("--id", required=True, type=_identifier, metavar="TYPE=VALUE")
    p.add_argument("--raw", action="store_true", help="include each raw record")
    _add_registry_options(p)
    p.set_defaults(func=_cmd_enrolled)

    p = command(
        "keygen",
        "create a signing key and its JWKS",
        "Creates a private signing key (PEM, mode 0600) and a JWKS file to publish.\n"
        "The kid is <sender-id>|<key-id>|<algorithm>.",
    )
    p.add_argument("--algorithm", choices=("ed25519", "rs256"), default="ed25519")
    p.add_argument("--bits", type=int, help="rs256 modulus size (2048-4096, default 2048)")
    p.add_argument("--sender-id", help="our sender id [env SPP_DCI_SENDER_ID]")
    p.add_argument("--key-id", help="the key id [env SPP_DCI_KEY_ID; default key-YYYYMMDD]")
    p.add_argument(
        "--private-key",
        default="dci-signing-key.pem",
        metavar="PATH",
        help="where to write the private key (default dci-signing-key.pem)",
    )
    p.add_argument(
        "--jwks",
        default="dci-jwks.json",
        metavar="PATH",
        help="where to write the JWKS (default dci-jwks.json)",
    )
    p.add_argument("--append", action="store_true", help="add the key to an existing JWKS")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=_cmd_keygen)

    p = command(
        "jwk-to-pem",
        "convert a public JWK to PEM",
        "Prints the SubjectPublicKeyInfo PEM of a public Ed25519 or RSA JWK (or of one key of "
        "a JWKS).",
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="the JWK ('-': stdin)")
    p.add_argument("--kid", help="the key to convert when FILE is a JWKS")
    p.add_argument("-o", "--output", metavar="PATH", help="write the PEM there")
    p.set_defaults(func=_cmd_jwk_to_pem)

    p = command(
        "verify",
        "verify the signature of an envelope",
        "Checks the 'signature' of a DCI envelope ({signature, header, message}) against a\n"
        "public key and prints the outcome. Exit 0 only when it is valid; 4 otherwise.\n"
        "An envelope with a key twice in one object, NaN or Infinity, or text that is not UTF-8\n"
        "is refused (exit 2), as is a key file that holds a private key.",
    )
    p.add_argument("envelope", metavar="ENVELOPE", help="the envelope JSON file ('-': stdin)")
    p.add_argument(
        "--key",
        required=True,
        metavar="FILE",
        help="the signer's public key: one PEM block, a JWK or a JWKS (never a private key)",
    )
    p.add_argument("--now", type=int, help="check at this Unix time (default: now)")
    p.add_argument("--max-skew", type=_non_negative_int, default=60, help="seconds (default 60)")
    p.add_argument(
        "--max-lifetime", type=_positive_int, default=3600, help="seconds (default 3600)"
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument(
        "--explain",
        action="store_true",
        help="show how: the canonical bytes' SHA-256, the signing string, the key tried for the "
        "kid, each normalised header form tried and why none verified",
    )
    p.set_defaults(func=_cmd_verify)

    p = command(
        "doctor",
        "check every step of talking to a registry, and say what to change",
        "Runs, against the configured registry, every step a first call depends on: base URL\n"
        "reachable, TLS verified (and why not), token obtained (expiry, scope), the registry's\n"
        "JWKS fetched, our public key published (with --our-jwks-url), clock skew, a signed test\n"
        "search accepted, its answer signed, verified and bound to the request, and every answer\n"
        "valid against the IBR spec. Each step says what it found and what to change; no token\n"
        "or secret is printed. Exit 0: every step passed (or did not apply); 1: a step warned;\n"
        "3: a step failed; 2: the configuration cannot be used.",
    )
    p.add_argument(
        "--our-jwks-url",
        metavar="URL",
        help="where our public key (JWKS) is published for the registry: checked that it holds "
        "our kid and key [env SPP_DCI_OUR_JWKS_URL]",
    )
    p.add_argument(
        "--id",
        type=_identifier,
        metavar="TYPE=VALUE",
        help="identifier of the test search (default: UIN and a value nobody has)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    _add_registry_options(p)
    p.set_defaults(func=_cmd_doctor)

    p = command(
        "sandbox",
        "serve an embedded IBR sandbox until interrupted",
        "Serves a protocol-faithful IBR on loopback (OAuth2, JWKS, signed answers) until Ctrl-C.\n"
        "Prints its URLs and client id; the client secret only with --show-secret.",
    )
    p.add_argument("--synthetic", type=_non_negative_int, default=1000, help="beneficiaries")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and faults")
    p.add_argument("--records", metavar="FILE", help="serve the records of a JSON or CSV file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_non_negative_int, default=0, help="default: a free port")
    p.add_argument("--prefix", default="", help="path prefix of the registry routes")
    p.add_argument("--sender-id", help="the sandbox's sender id")
    p.add_argument("--no-auth", action="store_true", help="do not require bearer tokens")
    p.add_argument("--no-signatures", action="store_true", help="do not require signed requests")
    p.add_argument(
        "--no-strict", action="store_true", help="accept requests that do not conform to the spec"
    )
    p.add_argument(
        "--one-callback-url",
        action="store_true",
        help="post every callback to the request's sender_uri as given",
    )
    p.add_argument(
        "--trust",
        action="append",
        metavar="SENDER_ID=KEYFILE",
        help="accept requests signed by this sender's public key (PEM, JWK or JWKS); repeatable",
    )
    p.add_argument("--faults", metavar="JSON|@FILE", help="fault injection settings")
    p.add_argument("--show-secret", action="store_true", help="print the client secret")
    p.set_defaults(func=_cmd_sandbox)

    p = command(
        "demo",
        "check generated registrants against the sandbox",
        "Starts the embedded sandbox with a synthetic registry, checks a generated mix of\n"
        "registrants with check_many, prints a summary table and where the results are.",
    )
    p.add_argument("--beneficiaries", type=_positive_int, default=20000, help="default 20000")
    p.add_argument("--registrants", type=_positive_int, default=10000, help="default 10000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="PATH", help="results file (default: a temporary directory)")
    p.add_argument("--batch-size", type=_positive_int, default=100)
    p.add_argument("--concurrency", type=_positive_int, default=4)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)
    return parser


def _setup_logging(verbose: int) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("spp_dci_ibr")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return EXIT_OK
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Never raises for a usage, configuration, registry or signature problem: the error is one line
    on stderr and the exit code says what happened (see the module docstring).
    """
    _SECRETS.clear()
    debug = os.environ.get("SPP_DCI_DEBUG", "") not in ("", "0")
    try:
        parser = _build_parser()
        args, extras = parser.parse_known_args(argv)
        if extras:
            raise _unrecognized(extras, args.command)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        _setup_logging(args.verbose)
        return int(args.func(args))
    except CLIError as exc:
        _error(exc.message)
        return exc.code
    except SystemExit as exc:  # --help, --version
        return _exit_code(exc)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:  # keep the interpreter from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return EXIT_BROKEN_PIPE
    except (ConfigError, KeyFormatError) as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return EXIT_USAGE
    except DCIError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc} (SPP_DCI_DEBUG=1 shows the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
