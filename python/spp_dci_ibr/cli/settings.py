"""Arguments and the registry configuration: flags > ``SPP_DCI_*`` environment > TOML file; the client built from it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .._native import (
    DCIClient,
    SigningKey,
)
from ..exceptions import ConfigError, KeyFormatError
from .common import EXIT_USAGE, PROG, CLIError, _one_line, _remember_secret, _warn

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


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} {rule}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "must be at least 1")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "must not be negative")


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
