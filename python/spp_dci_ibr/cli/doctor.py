"""The ``doctor`` command: every first-hour step against a registry."""

from __future__ import annotations

import argparse
import os
import sys

from .._native import (
    doctor,
)
from .common import _clean_text, _dump_json
from .settings import _client_from_settings, _resolve_settings

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
