"""Shared by the CLI tests: ``main`` run in the test process, its exit code and output."""

from __future__ import annotations

import pytest
from spp_dci_ibr.cli import main


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
