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
import contextlib
import csv
import datetime as dt
import io
import itertools
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from ._native import (
    JWKS,
    DCIClient,
    DuplicationResult,
    IBRService,
    SigningKey,
    canonical_json,
    check_signature,
    doctor,
    explain_signature,
    jwk_to_pem,
)
from .exceptions import CanonicalJSONError, ConfigError, DCIError, KeyFormatError

if TYPE_CHECKING:
    from .sandbox import IBRSandbox

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_SIGNATURE",
    "EXIT_MATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

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


# ---- argument parsing ------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors raised as one-line ``CLIError``s (exit code 2), and no option
    abbreviations: ``--client-secret X`` must never become ``--client-secret-file X``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)


# Options a user may try for a secret, and where the secret goes instead.
_SECRET_FLAG_HINTS = {
    "--client-secret": "SPP_DCI_CLIENT_SECRET, 'client_secret' in --config or --client-secret-file",
    "--bearer-token": "SPP_DCI_BEARER_TOKEN, 'bearer_token' in --config or --bearer-token-file",
}


def _unrecognized(extras: Sequence[str], command: str | None) -> CLIError:
    """The usage error for arguments no option takes. The values of unknown options are not
    repeated: they may be secrets (``--client-secret X``)."""
    shown: list[str] = []
    hidden = 0
    after_option = False
    for arg in extras:
        if arg.startswith("-") and len(arg) > 1 and not after_option:
            name, has_value, _ = arg.partition("=")
            shown.append(name)
            hidden += bool(has_value)
            after_option = not has_value
        elif after_option:
            hidden += 1
            after_option = False
        else:
            shown.append(arg)
    text = f"unrecognized arguments: {' '.join(shown)}"
    if hidden:
        text += f" ({hidden} value{'s' if hidden > 1 else ''} not shown)"
    for flag, where in _SECRET_FLAG_HINTS.items():
        if flag in shown:
            text += f"; secrets are never taken from a flag: use {where}"
    help_of = f"{PROG} {command}" if command else PROG
    return CLIError(f"{text} (see '{help_of} --help')", EXIT_USAGE)


_HELP_FORMATTER = argparse.RawDescriptionHelpFormatter


def _identifier(text: str) -> tuple[str, str]:
    """``TYPE=VALUE`` → ``(type, value)``; argparse ``type=``."""
    id_type, sep, value = text.partition("=")
    if not sep or not id_type.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not TYPE=VALUE (e.g. UIN=12345)")
    return id_type.strip(), value.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


# ---- registry configuration: flags > env > TOML file ----------------------------------------


@dataclass(frozen=True)
class _Setting:
    key: str  # the config-file key and argparse dest; env SPP_DCI_<KEY>, flag --<key>
    kind: str  # str | int | float | bool | path
    help: str
    choices: tuple[str, ...] | None = None
    has_flag: bool = True  # False for secrets: env and config file only

    @property
    def env(self) -> str:
        return "SPP_DCI_" + self.key.upper()

    @property
    def flag(self) -> str | None:
        if not self.has_flag:
            return None
        return "--no-verify-tls" if self.key == "verify_tls" else "--" + self.key.replace("_", "-")


# fmt: off
_SETTINGS: tuple[_Setting, ...] = (
    _Setting("base_url", "str", "the registry's base URL"),
    _Setting("sender_id", "str", "our sender id"),
    _Setting("receiver_id", "str", "the registry's id (default: its host)"),
    _Setting("auth", "str", "authentication (default: oauth2 when a token URL or client id is "
             "set, bearer when a token is set, else none)", ("none", "bearer", "oauth2")),
    _Setting("token_url", "str", "OAuth2 token URL"),
    _Setting("client_id", "str", "OAuth2 client id"),
    _Setting("client_secret", "str", "OAuth2 client secret", has_flag=False),
    _Setting("client_secret_file", "path", "a file holding the OAuth2 client secret"),
    _Setting("bearer_token", "str", "static bearer token", has_flag=False),
    _Setting("bearer_token_file", "path", "a file holding a static bearer token"),
    _Setting("scope", "str", "OAuth2 scope"),
    _Setting("credentials_location", "str", "where the OAuth2 credentials go",
             ("body", "basic", "query")),
    _Setting("key_file", "path", "our private signing key (PEM, see keygen)"),
    _Setting("key_id", "str", "the key id published in our JWKS"),
    _Setting("unsigned", "bool", "send unsigned requests (explicit opt-in)"),
    _Setting("registry_jwks_url", "str", "the registry's JWKS URL: its answers are verified"),
    _Setting("registry_keys_file", "path", "the registry's public key(s): PEM, JWK or JWKS file"),
    _Setting("allow_insecure_jwks", "bool", "allow an http:// registry JWKS URL (loopback)"),
    _Setting("accept_unverified_answers", "bool", "read the registry's answers unverified when "
             "it has no keys (explicit opt-in; results say verified: false)"),
    _Setting("timeout", "float", "request timeout in seconds"),
    _Setting("connect_timeout", "float", "connect timeout in seconds"),
    _Setting("verify_tls", "bool", "do not verify the registry's TLS certificate"),
    _Setting("ca_bundle", "path", "CA bundle (PEM) to trust"),
    _Setting("max_retries", "int", "retries of refused connections, 429 and 503"),
)
# fmt: on

_SETTING_BY_KEY = {s.key: s for s in _SETTINGS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry connection",
        "Each flag has an SPP_DCI_* environment variable and a key of the --config TOML file;\n"
        "flags win over the environment, which wins over the file. The client secret and the\n"
        "bearer token come from SPP_DCI_CLIENT_SECRET / SPP_DCI_BEARER_TOKEN, the config file\n"
        "or a *-file flag, never from a flag (other users can see a process's arguments).",
    )
    group.add_argument(
        "--config", metavar="FILE", help="TOML configuration file [env SPP_DCI_CONFIG]"
    )
    for s in _SETTINGS:
        if s.flag is None:
            continue
        text = f"{s.help} [env {s.env}{'=0' if s.key == 'verify_tls' else ''}]"
        if s.kind == "bool":
            group.add_argument(
                s.flag,
                dest=s.key,
                action="store_const",
                const=s.key != "verify_tls",
                default=None,
                help=text,
            )
            continue
        kind: Callable[[str], Any] = {"int": int, "float": float}.get(s.kind, str)
        metavar = {"path": "PATH", "int": "N", "float": "SECONDS"}.get(s.kind)
        if metavar is None:
            metavar = "URL" if s.key.endswith("url") else "ID" if s.key.endswith("_id") else None
        group.add_argument(
            s.flag,
            dest=s.key,
            type=kind,
            choices=s.choices,
            default=None,
            metavar=metavar,
            help=text,
        )
    group.add_argument(
        "--path",
        dest="paths",
        action="append",
        default=None,
        metavar="NAME=/PATH",
        help="override one call's path (sync_search, enrolled, …); repeatable; "
        "config file: a [paths] table",
    )


def _convert(setting: _Setting, raw: Any, where: str, base: Path | None = None) -> Any:
    """A setting's value from the environment (text) or the TOML file (typed)."""
    kind = setting.kind
    if kind == "bool":
        if isinstance(raw, bool):
            value: Any = raw
        elif isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            value = raw.strip().lower() in _TRUE
        else:
            raise CLIError(f"{where} must be true or false")
    elif kind in ("int", "float"):
        if isinstance(raw, bool):
            raise CLIError(f"{where} must be a number")
        try:
            value = int(raw) if kind == "int" else float(raw)
        except (TypeError, ValueError):
            raise CLIError(f"{where} must be a number") from None
    else:
        if not isinstance(raw, str):
            raise CLIError(f"{where} must be a string")
        value = raw.strip() if setting.key not in ("client_secret", "bearer_token") else raw
        if kind == "path" and base is not None:
            value = str((base / os.path.expanduser(value)).resolve())
    if setting.choices is not None and value not in setting.choices:
        raise CLIError(f"{where} must be one of {', '.join(setting.choices)}")
    return value


def _load_toml(path: str) -> dict[str, Any]:
    """The ``--config`` file (Python 3.11+: ``tomllib``; 3.10 has no TOML reader)."""
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except OSError as exc:
            raise CLIError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise CLIError(f"the config file {path} is not valid TOML: {exc}") from None
    raise CLIError(
        f"cannot read the TOML config file {path}: Python 3.10 has no TOML reader "
        "(use Python 3.11+, or flags and SPP_DCI_* environment variables)"
    )


def _resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every registry setting from flags > environment > config file."""
    env = os.environ
    config_path = getattr(args, "config", None) or env.get("SPP_DCI_CONFIG") or None
    file_values: dict[str, Any] = {}
    base: Path | None = None
    if config_path:
        file_values = _load_toml(config_path)
        base = Path(config_path).resolve().parent
        for key in file_values:
            if key not in _SETTING_BY_KEY and key != "paths":
                known = ", ".join(sorted([*_SETTING_BY_KEY, "paths"]))
                raise CLIError(
                    f"unknown key '{key}' in the config file {config_path} (known: {known})"
                )
    out: dict[str, Any] = {}
    for s in _SETTINGS:
        value = getattr(args, s.key, None) if s.flag else None
        if value is None:
            raw = env.get(s.env)
            if raw is not None and raw != "":
                value = _convert(s, raw, s.env)
        if value is None and s.key in file_values:
            value = _convert(s, file_values[s.key], f"'{s.key}' in {config_path}", base)
        if value is not None:
            out[s.key] = value
    paths: dict[str, str] = {}
    file_paths = file_values.get("paths", {})
    if not isinstance(file_paths, dict) or not all(isinstance(v, str) for v in file_paths.values()):
        raise CLIError(f"[paths] in {config_path} must map call names to path strings")
    paths.update(file_paths)
    for item in getattr(args, "paths", None) or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CLIError(f"--path '{item}' is not NAME=/PATH")
        paths[name.strip()] = path.strip()
    if paths:
        out["paths"] = paths
    return out


def _read_text_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CLIError(f"{what} {path} is not UTF-8 text") from None


def _read_secret(cfg: dict[str, Any], key: str) -> str | None:
    value: str | None = cfg.get(key)
    file_key = f"{key}_file"
    if value is None and cfg.get(file_key):
        value = _read_text_file(cfg[file_key], f"the {key.replace('_', ' ')} file").strip()
        if not value:
            raise CLIError(f"the {key.replace('_', ' ')} file {cfg[file_key]} is empty")
    _remember_secret(value)
    return value


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _read_json(text: str, what: str) -> Any:
    """JSON read strictly: an object with a key twice (at any depth) is refused — which of the
    two values would the signer have meant? — and so are NaN and Infinity, which are not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_not_json)
    except _DuplicateKey as exc:
        raise CLIError(f"{what} has a duplicate key {_one_line(repr(exc.key), 60)}") from None
    except RecursionError:
        raise CLIError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}") from None


def _client_from_settings(cfg: dict[str, Any], *, quiet: bool = False) -> DCIClient:
    """A ``DCIClient`` for the resolved settings; ``CLIError`` (exit 2) for a bad configuration."""
    for key, what in (("base_url", "the registry URL"), ("sender_id", "our sender id")):
        if not cfg.get(key):
            s = _SETTING_BY_KEY[key]
            raise CLIError(f"{what} is not set: give {s.flag}, {s.env} or '{key}' in --config")
    client_secret = _read_secret(cfg, "client_secret")
    bearer_token = _read_secret(cfg, "bearer_token")
    auth = cfg.get("auth")
    if auth is None:
        if bearer_token:
            auth = "bearer"
        elif cfg.get("token_url") or cfg.get("client_id") or client_secret:
            auth = "oauth2"
        else:
            auth = "none"
    kwargs: dict[str, Any] = {
        "base_url": cfg["base_url"],
        "sender_id": cfg["sender_id"],
        "auth": auth,
    }
    if auth == "oauth2":
        missing = [
            f"{_SETTING_BY_KEY[k].env}"
            for k, v in (
                ("token_url", cfg.get("token_url")),
                ("client_id", cfg.get("client_id")),
                ("client_secret", client_secret),
            )
            if not v
        ]
        if missing:
            raise CLIError(f"oauth2 needs {', '.join(missing)} (or the matching flag/config key)")
        kwargs.update(
            token_url=cfg["token_url"], client_id=cfg["client_id"], client_secret=client_secret
        )
        for key in ("scope", "credentials_location"):
            if cfg.get(key):
                kwargs[key] = cfg[key]
    elif auth == "bearer":
        if not bearer_token:
            raise CLIError("bearer auth needs SPP_DCI_BEARER_TOKEN or --bearer-token-file")
        kwargs["bearer_token"] = bearer_token
    if cfg.get("unsigned"):
        if cfg.get("key_file"):
            raise CLIError("give a signing key or --unsigned, not both")
        kwargs["unsigned"] = True
    else:
        if not cfg.get("key_file"):
            raise CLIError(
                "no signing key: give --key-file or SPP_DCI_KEY_FILE (create one with "
                f"'{PROG} keygen'), or --unsigned to send unsigned requests"
            )
        if not cfg.get("key_id"):
            raise CLIError("the signing key needs a key id: give --key-id or SPP_DCI_KEY_ID")
        pem = _read_text_file(cfg["key_file"], "the signing key file")
        try:
            kwargs["signing_key"] = SigningKey.from_pem(pem)
        except KeyFormatError as exc:
            raise CLIError(f"the signing key file {cfg['key_file']}: {exc}") from None
        kwargs["key_id"] = cfg["key_id"]
    if cfg.get("registry_jwks_url") and cfg.get("registry_keys_file"):
        raise CLIError("give the registry's JWKS URL or its keys file, not both")
    if cfg.get("registry_jwks_url"):
        kwargs["registry_jwks_url"] = cfg["registry_jwks_url"]
    elif cfg.get("registry_keys_file"):
        # PEM, JWK or JWKS text, read by the core (which refuses a private key in it).
        kwargs["registry_keys"] = _read_text_file(
            cfg["registry_keys_file"], "the registry keys file"
        )
    elif cfg.get("accept_unverified_answers"):
        kwargs["accept_unverified_answers"] = True
        if not quiet:
            _warn("the registry's answers are read unverified (--accept-unverified-answers)")
    else:
        raise CLIError(
            "the registry's answers cannot be verified: set SPP_DCI_REGISTRY_JWKS_URL or "
            "SPP_DCI_REGISTRY_KEYS_FILE (or --registry-jwks-url / --registry-keys-file), or "
            "give --accept-unverified-answers to read them unverified"
        )
    for key in (
        "receiver_id",
        "allow_insecure_jwks",
        "timeout",
        "connect_timeout",
        "verify_tls",
        "ca_bundle",
        "max_retries",
        "paths",
    ):
        if cfg.get(key) is not None:
            kwargs[key] = cfg[key]
    try:
        return DCIClient(**kwargs)
    except KeyFormatError as exc:  # the signing key was read above: the registry's keys
        raise CLIError(f"the registry keys file {cfg.get('registry_keys_file')}: {exc}") from None
    except (ConfigError, ValueError, TypeError) as exc:
        raise CLIError(f"invalid registry configuration: {exc}") from None


def _client(args: argparse.Namespace) -> DCIClient:
    return _client_from_settings(_resolve_settings(args), quiet=args.quiet)


# ---- batch input -----------------------------------------------------------------------------


@dataclass
class _Row:
    """One input registrant: its line, key and identifiers, or why it cannot be checked."""

    line: int
    key: Any
    identifiers: list[tuple[str, str]]
    error: str | None = None
    source: str | None = None  # the input as written, for display


def _parse_identifier_list(text: str) -> list[tuple[str, str]]:
    """``TYPE=VALUE;TYPE=VALUE`` → pairs; ``ValueError`` naming the bad part."""
    out: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        id_type, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{part.strip()}' is not TYPE=VALUE")
        if not id_type.strip():
            raise ValueError(f"'{part.strip()}' has an empty identifier type")
        if not value.strip():
            raise ValueError(f"'{part.strip()}' has an empty identifier value")
        out.append((id_type.strip(), value.strip()))
    return out


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{what} must be a string")


def _identifier_item(item: Any) -> tuple[str, str]:
    """One JSONL identifier: ``"T=V"``, ``[t, v]`` or an object with type/value members."""
    if isinstance(item, str):
        pairs = _parse_identifier_list(item)
        if len(pairs) != 1:
            raise ValueError(f"'{item}' is not one TYPE=VALUE")
        return pairs[0]
    if isinstance(item, list) and len(item) == 2:
        id_type, value = _scalar_text(item[0], "a type"), _scalar_text(item[1], "a value")
    elif isinstance(item, dict):
        for t, v in (
            ("type", "value"),
            ("id_type", "id_value"),
            ("identifier_type", "identifier_value"),
        ):
            if t in item or v in item:
                id_type = _scalar_text(item.get(t, ""), f"'{t}'")
                value = _scalar_text(item.get(v, ""), f"'{v}'")
                break
        else:
            raise ValueError("an identifier object needs 'type' and 'value'")
    else:
        raise ValueError("each identifier must be 'TYPE=VALUE', [type, value] or an object")
    if not id_type:
        raise ValueError("an identifier has an empty type")
    if not value:
        raise ValueError(f"the {id_type} identifier has an empty value")
    return id_type, value


def _row_from_mapping(line: int, obj: dict[str, Any], *, key_required: bool) -> _Row:
    """A registrant from a JSONL object or a CSV row (``key`` plus ``id_type``/``id_value`` or
    ``identifiers``); problems become the row's ``error``."""
    key = obj.get("key")
    if isinstance(key, str):
        key = key.strip()
    row = _Row(line, key, [])
    if key_required and (key is None or key == ""):
        row.error = "the key is empty"
        return row
    try:
        id_type, id_value = obj.get("id_type"), obj.get("id_value")
        has_pair = id_type not in (None, "") or id_value not in (None, "")
        if has_pair:
            row.identifiers.append(
                _identifier_item({"id_type": id_type or "", "id_value": id_value or ""})
            )
        ids = obj.get("identifiers")
        if isinstance(ids, str):
            row.identifiers.extend(_parse_identifier_list(ids))
        elif isinstance(ids, list):
            row.identifiers.extend(_identifier_item(item) for item in ids)
        elif ids is not None:
            raise ValueError("'identifiers' must be a 'TYPE=VALUE;…' string or a list")
    except ValueError as exc:
        row.error = str(exc)
        return row
    if not row.identifiers:
        row.error = "no identifiers"
    return row


def _read_csv(stream: TextIO) -> Iterator[_Row]:
    """Registrants from CSV text read with ``surrogateescape`` (bad bytes fail their row)."""
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise CLIError(f"the CSV header cannot be read: {exc}") from None
    names = [_clean_text(h).strip().lower() for h in header]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    if not ({"id_type", "id_value"} <= set(names) or "identifiers" in names):
        raise CLIError(
            "the CSV header needs 'id_type' and 'id_value' columns or an 'identifiers' column "
            f"(found: {', '.join(names) or 'nothing'})"
        )
    has_key = "key" in names
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num == last_line:  # the reader cannot move on: stop, reported
                yield _Row(reader.line_num + 1, None, [], f"unreadable CSV: {exc}")
                return
            last_line = reader.line_num
            yield _Row(reader.line_num, None, [], f"unreadable CSV: {exc}")
            continue
        last_line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        line = reader.line_num
        if not all(_is_valid_text(c) for c in cells):
            key = (
                _clean_text(cells[names.index("key")]).strip()
                if has_key and len(cells) > names.index("key")
                else None
            )
            yield _Row(line, key, [], "the row is not valid UTF-8")
            continue
        if len(cells) != len(names):
            key = (
                cells[names.index("key")].strip()
                if has_key and len(cells) > names.index("key")
                else None
            )
            yield _Row(
                line, key, [], f"the row has {len(cells)} fields, the header has {len(names)}"
            )
            continue
        yield _row_from_mapping(line, dict(zip(names, cells, strict=True)), key_required=has_key)


def _read_jsonl(stream: IO[bytes]) -> Iterator[_Row]:
    """Registrants from JSON Lines; a line that is not a JSON object fails its row."""
    for line, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError:
            yield _Row(line, None, [], "the line is not valid UTF-8")
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            yield _Row(line, None, [], f"the line is not JSON ({msg})")
            continue
        if not isinstance(obj, dict):
            yield _Row(line, None, [], "the line is not a JSON object")
            continue
        yield _row_from_mapping(line, obj, key_required=False)


_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def _format_of(path: str, given: str | None, what: str) -> str:
    if given:
        return given
    if path == "-":
        if what == "input":
            raise CLIError("reading stdin needs --input-format csv|jsonl")
        return "jsonl"
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        flag = "--input-format" if what == "input" else "--format"
        raise CLIError(f"cannot tell the {what} format from '{path}': give {flag} csv|jsonl")
    return fmt


def _count_lines(path: str) -> int | None:
    """Data lines of a regular file (for the progress bar), None when it cannot be known."""
    try:
        if not Path(path).is_file():
            return None
        count, last = 0, b"\n"
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")
    except OSError:
        return None


# ---- batch output ----------------------------------------------------------------------------


def _record_of(row: _Row, result: DuplicationResult | None, include_raw: bool) -> dict[str, Any]:
    """One output row: the input's line and key, the result, every identifier's outcome."""
    if result is None or row.error is not None:
        return {
            "line": row.line,
            "key": row.key,
            "state": "failed",
            "result": None,
            "is_duplicate": False,
            "matched_programs": [],
            "identifiers": [
                {"type": t, "value": v, "status": "not_checked", "reason": None, "record_count": 0}
                for t, v in row.identifiers
            ],
            "reasons": [f"invalid input: {row.error}"],
            "transaction_id": None,
        }
    record: dict[str, Any] = {
        "line": row.line,
        "key": row.key,
        "state": result.state,
        "result": result.result,
        "is_duplicate": result.is_duplicate,
        "matched_programs": result.matched_programs,
        "identifiers": [
            {
                "type": o.id_type,
                "value": o.id_value,
                "status": o.status,
                "reason": o.reason,
                "record_count": o.record_count,
            }
            for o in result.outcomes
        ],
        "reasons": result.reasons,
        "transaction_id": result.transaction_id,
    }
    if include_raw:
        record["raw_responses"] = result.raw_responses
    return record


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): it starts with = + - @ (or
# their full-width forms), perhaps after blanks, or with a tab, CR, LF or NUL. Such a cell is
# written with a leading apostrophe, which spreadsheets show as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_CONTROL_STARTS = ("\t", "\r", "\n", "\x00")


def _csv_cell(value: str) -> str:
    if value.startswith(_CONTROL_STARTS) or value.lstrip().startswith(_FORMULA_STARTS):
        return "'" + value
    return value


_CSV_COLUMNS = (
    "line",
    "key",
    "state",
    "result",
    "is_duplicate",
    "matched_programs",
    "identifiers",
    "identifier_statuses",
    "reasons",
    "transaction_id",
)


class _Output:
    """Writes result records as JSON Lines or CSV."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self.stream = stream
        self.fmt = fmt
        self.ascii = not _unicode_ok(stream)  # JSON escapes what the stream cannot encode
        self.csv: Any = None
        if fmt == "csv":
            self.csv = csv.writer(stream)
            self.csv.writerow(_CSV_COLUMNS)

    def write(self, record: dict[str, Any]) -> None:
        if self.csv is None:
            self.stream.write(json.dumps(record, ensure_ascii=self.ascii, default=str) + "\n")
            return
        ids = record["identifiers"]
        key = record["key"]
        cells = [
            str(record["line"]),
            "" if key is None else key if isinstance(key, str) else json.dumps(key),
            record["state"],
            record["result"] or "",
            "true" if record["is_duplicate"] else "false",
            ";".join(record["matched_programs"]),
            ";".join(f"{i['type']}={i['value']}" for i in ids),
            ";".join(i["status"] for i in ids),
            " | ".join(record["reasons"]),
            record["transaction_id"] or "",
        ]
        self.csv.writerow([_csv_cell(cell) for cell in cells])


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


# ---- commands: keys and signatures -----------------------------------------------------------


def _write_private(path: Path, data: str, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CLIError(f"{path} exists: give --force to replace it") from None
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # also when replacing a file that had other permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


def _cmd_keygen(args: argparse.Namespace) -> int:
    sender_id = args.sender_id or os.environ.get("SPP_DCI_SENDER_ID")
    if not sender_id:
        raise CLIError("keygen needs --sender-id (or SPP_DCI_SENDER_ID)")
    key_id = (
        args.key_id or os.environ.get("SPP_DCI_KEY_ID") or dt.date.today().strftime("key-%Y%m%d")
    )
    private_path, jwks_path = Path(args.private_key), Path(args.jwks)
    if private_path.resolve() == jwks_path.resolve():
        raise CLIError("the private key and the JWKS must be different files")
    if args.algorithm != "rs256" and args.bits is not None:
        raise CLIError("--bits is for rs256 keys")
    try:
        key = (
            SigningKey.generate("rs256", args.bits or 2048)
            if args.algorithm == "rs256"
            else SigningKey.generate("ed25519")
        )
        jwk = key.public_jwk(sender_id, key_id)
    except (KeyFormatError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    keys: list[dict[str, Any]] = []
    if jwks_path.exists():
        if args.append:
            try:
                existing = json.loads(_read_text_file(str(jwks_path), "the JWKS file"))
                keys = [k for k in existing["keys"] if isinstance(k, dict)]
            except (ValueError, KeyError, TypeError):
                raise CLIError(f'{jwks_path} is not a JWKS ({{"keys": [...]}})') from None
            keys = [k for k in keys if k.get("kid") != jwk.get("kid")]
        elif not args.force:
            raise CLIError(f"{jwks_path} exists: give --append to add the key, or --force")
    keys.append(jwk)
    _write_private(private_path, key.private_pem(), args.force)
    try:
        jwks_path.write_text(json.dumps({"keys": keys}, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {jwks_path}: {exc.strerror or exc}") from None
    out = sys.stdout
    out.write(f"kid          {jwk.get('kid')}\n")
    out.write(f"algorithm    {key.algorithm}\n")
    out.write(f"private key  {private_path} (mode 0600: keep it secret)\n")
    out.write(
        f"jwks         {jwks_path} ({len(keys)} key{'s' if len(keys) != 1 else ''}; publish it)\n"
    )
    return EXIT_OK


def _read_input_text(path: str, what: str) -> str:
    if path != "-":
        return _read_text_file(path, what)
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{what} (stdin) is not UTF-8 text") from None


def _one_jwk(text: str, kid: str | None) -> dict[str, Any]:
    """The key of a JWKS text to convert: the one named by ``kid``, or its only key."""
    jwks = JWKS.from_json(text)  # refuses a private key anywhere in the set
    skipped = dict(jwks.skipped)
    if kid is not None:
        jwk = jwks.get(kid)
        if jwk is not None:
            return jwk
        if kid in skipped:
            raise CLIError(f"the key '{kid}' cannot be converted: {skipped[kid]}")
        raise CLIError(f"no key with kid '{kid}' in the JWKS")
    kids = [*jwks.kids, *skipped]
    if len(kids) != 1:
        named = ", ".join(str(k) for k in kids)
        raise CLIError(f"the JWKS has {len(kids)} keys: choose one with --kid ({named})")
    if len(jwks) == 0:
        raise CLIError(f"the key cannot be converted: {jwks.skipped[0][1]}")
    return jwks.to_dict()["keys"][0]  # type: ignore[no-any-return]


def _cmd_jwk_to_pem(args: argparse.Namespace) -> int:
    text = _read_input_text(args.file, "the JWK file")
    obj = _read_json(text, "the JWK")
    if not isinstance(obj, dict):
        raise CLIError("the input must be a JWK or a JWKS object")
    try:
        pem = jwk_to_pem(_one_jwk(text, args.kid) if "keys" in obj else obj)
    except KeyFormatError as exc:
        raise CLIError(str(exc)) from None
    if args.output and args.output != "-":
        try:
            Path(args.output).write_text(pem, encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(pem)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    envelope = _read_json(_read_input_text(args.envelope, "the envelope file"), "the envelope")
    if not isinstance(envelope, dict):
        raise CLIError("the envelope must be a JSON object")
    header, message = envelope.get("header"), envelope.get("message")
    if not isinstance(header, dict) or not isinstance(message, dict):
        raise CLIError("the envelope needs 'header' and 'message' objects")
    signature = envelope.get("signature")
    if signature is None:
        signature = ""
    if not isinstance(signature, str):
        raise CLIError("the envelope's 'signature' must be a string")
    try:  # bad input whatever the signature says (a lone surrogate cannot have been signed)
        canonical_json({"header": header, "message": message})
    except CanonicalJSONError as exc:
        raise CLIError(f"the envelope cannot be checked: {exc}") from None
    key = _read_text_file(args.key, "the key file")  # PEM, JWK or JWKS: read by the core
    if args.explain:
        return _explain(signature, header, message, key, args)
    try:
        check = check_signature(
            signature,
            header,
            message,
            key,
            now=args.now,
            max_skew=args.max_skew,
            max_lifetime=args.max_lifetime,
        )
    except KeyFormatError as exc:
        raise CLIError(f"the key file {args.key}: {exc}") from None
    valid = bool(check)
    if args.json:
        _dump_json(
            {
                "valid": valid,
                "outcome": check.outcome,
                "kid": check.kid,
                "algorithm": check.algorithm,
                "created": check.created,
                "expires": check.expires,
                "detail": check.detail,
            },
            sys.stdout,
        )
    else:
        parts = [
            check.outcome,
            f"kid={check.kid or '-'}",
            f"algorithm={check.algorithm or '-'}",
            f"created={_utc(check.created)}",
            f"expires={_utc(check.expires)}",
        ]
        if check.detail:
            parts.append(f"detail={check.detail}")
        sys.stdout.write("  ".join(parts) + "\n")
    return EXIT_OK if valid else EXIT_INVALID_SIGNATURE


def _explain(
    signature: str,
    header: dict[str, Any],
    message: dict[str, Any],
    key: str,
    args: argparse.Namespace,
) -> int:
    """``verify --explain``: how the signature was checked, by the core's ``explain_signature``."""
    try:
        e = explain_signature(
            signature,
            header,
            message,
            key,
            now=args.now,
            max_skew=args.max_skew,
            max_lifetime=args.max_lifetime,
        )
    except KeyFormatError as exc:
        raise CLIError(f"the key file {args.key}: {exc}") from None
    if args.json:
        _dump_json(e, sys.stdout)
        return EXIT_OK if e["valid"] else EXIT_INVALID_SIGNATURE
    out = [
        f"outcome:        {e['outcome']}",
        f"kid:            {e['kid'] or '-'}",
        f"algorithm:      {e['algorithm'] or '-'}",
        f"created:        {_utc(e['created'])}",
        f"expires:        {_utc(e['expires'])}",
        f"canonical:      {e['canonical_length']} bytes, sha256 {e['canonical_sha256']}",
    ]
    if e["signing_string"] is not None:
        out.append("signing string:")
        out.extend(f"  {line}" for line in e["signing_string"].split("\n"))
    if e["available_kids"]:
        out.append(f"keys in the set: {', '.join(e['available_kids'])}")
    tried = e["key"]
    if tried is None:
        out.append("key tried:      none")
    else:
        out.append(
            f"key tried:      {tried['kid'] or '(no kid)'} ({tried['algorithm']}): {tried['chosen']}"
        )
        for form in tried["forms"]:
            if form["same_as"]:
                verdict = f"same bytes as {form['same_as']}, not tried again"
            else:
                verdict = "verified" if form["verified"] else "does not verify"
            out.append(f"  {form['form']:<20} sha256 {form['digest']}  {verdict}")
    if e["verified_form"]:
        out.append(f"verified with:  the header {e['verified_form']}")
    for reason in e["reasons"]:
        out.append(f"why not valid:  {reason}")
    sys.stdout.write("\n".join(out) + "\n")
    return EXIT_OK if e["valid"] else EXIT_INVALID_SIGNATURE


# ---- commands: doctor ------------------------------------------------------------------------


def _cmd_doctor(args: argparse.Namespace) -> int:
    cfg = _resolve_settings(args)
    if not (
        cfg.get("registry_jwks_url")
        or cfg.get("registry_keys_file")
        or cfg.get("accept_unverified_answers")
    ):
        # No registry keys is one of the doctor's findings (registry_jwks), not a usage error.
        cfg["accept_unverified_answers"] = True
    client = _client_from_settings(cfg, quiet=True)
    our_jwks_url = args.our_jwks_url or os.environ.get("SPP_DCI_OUR_JWKS_URL") or None
    id_type, id_value = args.id if args.id else (None, None)
    report = doctor(client, our_jwks_url=our_jwks_url, id_type=id_type, id_value=id_value)
    if args.json:
        _dump_json(report, sys.stdout)
    else:
        marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
        out = [f"doctor: {report['base_url']}"]
        for step in report["steps"]:
            out.append(f"  {marks[step['status']]}  {step['id']:<17} {step['title']}")
            out.append(f"        {_clean_text(step['found'])}")
            if step["fix"]:
                out.append(f"        fix: {_clean_text(step['fix'])}")
        n = report["summary"]
        out.append(
            f"{n['pass']} passed, {n['warn']} warned, {n['fail']} failed, {n['skip']} skipped"
        )
        sys.stdout.write("\n".join(out) + "\n")
    code: int = report["exit_code"]
    return code


# ---- commands: sandbox and demo --------------------------------------------------------------


def _sandbox_class() -> type[IBRSandbox]:
    """``IBRSandbox``, imported only by the commands that serve one."""
    try:
        from .sandbox import IBRSandbox
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
