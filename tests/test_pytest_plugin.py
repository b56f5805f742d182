"""The pytest plugin: its fixtures give a user's test suite a running IBR and a ready client."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


def plugin_args() -> list[str]:
    """Load the plugin explicitly unless the installed distribution already declares it."""
    installed = any(
        ep.value == "spp_dci_ibr.pytest_plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "spp_dci_ibr.pytest_plugin"]


USER_TESTS = """
import pytest

from spp_dci_ibr import DCIClient, IBRService, SigningKey


def test_fixtures_are_wired(ibr_sandbox, dci_signing_key, dci_client, ibr_service):
    assert isinstance(dci_signing_key, SigningKey)
    assert isinstance(dci_client, DCIClient)
    assert isinstance(ibr_service, IBRService)
    assert dci_client.base_url.rstrip("/") == ibr_sandbox.url.rstrip("/")


def test_active_beneficiary_is_a_confirmed_duplicate(ibr_sandbox, ibr_service):
    [identifier] = ibr_sandbox.sample_identifiers("active", 1)
    result = ibr_service.check_duplication([identifier])
    assert result.result == "confirmed_match"
    assert result.is_duplicate


def test_unknown_person_is_no_match(ibr_sandbox, ibr_service):
    [identifier] = ibr_sandbox.sample_identifiers("unknown", 1)
    assert ibr_service.check_duplication([identifier]).result == "no_match"


@pytest.mark.ibr_sandbox(synthetic=7)
def test_marker_sets_the_dataset(ibr_sandbox):
    assert len(ibr_sandbox.records()) == 7


@pytest.mark.parametrize("step", ["uses", "starts_fresh"])
def test_each_test_gets_its_own_registry(ibr_sandbox, ibr_service, step):
    if step == "uses":
        ibr_service.check_duplication(ibr_sandbox.sample_identifiers("active", 1))
        assert ibr_sandbox.stats()["requests_total"] > 0
    else:
        assert ibr_sandbox.stats()["requests_total"] == 0
"""


def test_fixtures_run_a_user_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_seed_option_and_marker_reach_the_sandbox(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_seed="""
import pytest

pytestmark = pytest.mark.ibr_sandbox(synthetic=30)


def test_seed_from_the_command_line(ibr_sandbox, pytestconfig):
    assert pytestconfig.getoption("ibr_sandbox_seed") == 5
    assert len(ibr_sandbox.records()) == 30


@pytest.mark.ibr_sandbox(synthetic=12)
def test_inner_marker_wins(ibr_sandbox):
    assert len(ibr_sandbox.records()) == 12
"""
    )
    result = pytester.runpytest_subprocess(
        *plugin_args(), "-p", "no:cacheprovider", "--ibr-sandbox-seed", "5"
    )
    result.assert_outcomes(passed=2)


def test_same_seed_same_data_other_seed_other_data(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_data="""
import json, os
import pytest


@pytest.mark.ibr_sandbox(synthetic=20)
def test_dump(ibr_sandbox):
    with open(os.environ["DUMP"], "a") as f:
        f.write(json.dumps(ibr_sandbox.records(), sort_keys=True) + "\\n")
"""
    )
    dump = pytester.path / "dump.jsonl"
    monkeypatch.setenv("DUMP", str(dump))
    for seed in ("1", "1", "2"):
        result = pytester.runpytest_subprocess(
            *plugin_args(), "-p", "no:cacheprovider", "--ibr-sandbox-seed", seed
        )
        result.assert_outcomes(passed=1)
    first, again, other = dump.read_text().splitlines()
    assert first == again
    assert first != other


def test_marker_with_positional_arguments_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
import pytest


@pytest.mark.ibr_sandbox(10)
def test_bad(ibr_sandbox):
    pass
"""
    )
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*plugin_args(), "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.ibr_sandbox(**options)*"])


def test_loading_the_plugin_starts_and_imports_no_sandbox() -> None:
    code = (
        "import sys, threading\n"
        "before = threading.active_count()\n"
        "import spp_dci_ibr.pytest_plugin\n"
        "assert 'spp_dci_ibr.sandbox' not in sys.modules, 'sandbox imported'\n"
        "assert threading.active_count() == before, 'a thread was started'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
