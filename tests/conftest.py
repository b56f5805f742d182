"""Shared test helpers: the vectors from spec/ and a clock."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Odoo modules of the OpenSPP set-up (tests/odoo_standin/run.sh): they run inside Odoo, not pytest.
collect_ignore = ["odoo_standin"]
VECTORS = Path(os.environ.get("SPP_DCI_VECTORS", ROOT / "spec" / "signature_vectors.json"))


@pytest.fixture(autouse=True)
def no_spp_dci_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SPP_DCI_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("SPP_DCI_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    with open(VECTORS, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
