"""Key and signature commands: ``keygen``, ``jwk-to-pem``, ``verify`` (``--explain``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._native import (
    JWKS,
    SigningKey,
    canonical_json,
    check_signature,
    explain_signature,
    jwk_to_pem,
)
from ..exceptions import CanonicalJSONError, KeyFormatError
from .common import EXIT_INVALID_SIGNATURE, EXIT_OK, CLIError, _dump_json, _utc
from .settings import _read_json, _read_text_file

_T = TypeVar("_T")

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


def _with_key_file(
    check: Callable[..., _T],
    signature: str,
    header: Any,
    message: Any,
    key: str,
    args: argparse.Namespace,
) -> _T:
    """``check_signature`` or ``explain_signature`` with the time flags; an unusable key
    file is a usage error that names the file."""
    try:
        return check(
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
    check = _with_key_file(check_signature, signature, header, message, key, args)
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
    e = _with_key_file(explain_signature, signature, header, message, key, args)
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
