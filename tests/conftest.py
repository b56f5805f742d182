"""Shared test helpers: the vectors from spec/ and a clock."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("SPP_DCI_VECTORS", ROOT / "spec" / "signature_vectors.json"))


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    with open(VECTORS, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
