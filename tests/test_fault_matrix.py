"""Fault matrix (issue 6): 10,000 registrants through `check_many` against the sandbox with about
10% of the requests faulted — timeouts, 5xx, 429, dropped connections, garbage bodies, bad
signatures, wrong reference_ids (an answer not bound to its request). Every registrant gets
exactly one result, no faulted check is ever answered (least of all `no_match`), every failure
names its cause, and a retry of the failed ones after the faults stop converges to the truth."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest
import spp_dci_ibr as dci
from spp_dci_ibr.sandbox import IBRSandbox

EXPECTED = {
    "active": "confirmed_match",
    "suspended": "confirmed_match",
    "graduated": "possible_match",
    "deceased": "possible_match",
    "unknown": "no_match",
}
FAULTS = {
    "seed": 20261125,
    "error_rates": {500: 0.02, 503: 0.015, 429: 0.015},
    "drop_rate": 0.01,
    "garbage_rate": 0.01,
    "bad_signature_rate": 0.01,
    "wrong_reference_rate": 0.01,
    "stall_rate": 0.01,
    "stall_ms": 1500,
}
# The failure kinds a faulted request may produce (see spp_dci_ibr.exceptions / DuplicationResult).
KINDS = (
    "timeout",
    "http_status",
    "transport",
    "reference_id that was not sent",  # a protocol error, named before the generic kind
    "protocol",
    "signature",
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[IBRSandbox]:
    with IBRSandbox(synthetic=3000, seed=5) as sb:
        yield sb


def test_ten_thousand_registrants_under_faults(sandbox: IBRSandbox) -> None:
    pools = {status: sandbox.sample_identifiers(status, 200) for status in EXPECTED}
    statuses = list(EXPECTED)
    truth: dict[int, str] = {}
    registrants: list[tuple[int, list[tuple[str, str]]]] = []
    for i in range(10_000):
        status = statuses[i % len(statuses)]
        truth[i] = EXPECTED[status]
        registrants.append((i, [pools[status][i % 200]]))

    # No client retries: every injected fault reaches the classifier.
    client = sandbox.client(max_retries=0, timeout=1.0, connect_timeout=1.0)
    service = dci.IBRService(client)
    sandbox.set_faults(FAULTS)
    try:
        results = list(service.check_many(iter(registrants), batch_size=25, concurrency=8))
    finally:
        sandbox.set_faults(None)

    keys = [r.key for r in results]
    assert keys == list(range(10_000)), "exactly one result per registrant, in input order"
    failed = [r for r in results if r.state == "failed"]
    assert 0.03 * 10_000 < len(failed) < 0.3 * 10_000, f"{len(failed)} failed: faults were injected"
    kinds: collections.Counter[str] = collections.Counter()
    for r in results:
        if r.state == "completed":
            # A faulted answer never turns into a (wrong) answer, no_match included.
            assert r.result == truth[r.key], (r.key, r.to_dict())
        else:
            assert r.result is None and not r.is_duplicate
            assert r.reasons, r.key
            for reason in r.reasons:
                kind = next((k for k in KINDS if k in reason), None)
                assert kind is not None, f"unspecific reason: {reason}"
                kinds[kind] += 1
    # Every fault family showed up and was named.
    assert {"timeout", "http_status", "transport", "protocol", "signature"} <= set(kinds), kinds
    assert kinds["reference_id that was not sent"] > 0, kinds

    # After the faults stop, retrying the failed ones converges to the truth.
    retry = {r.key: r for r in service.check_many([(r.key, registrants[r.key][1]) for r in failed])}
    assert set(retry) == {r.key for r in failed}
    for key, r in retry.items():
        assert r.state == "completed" and r.result == truth[key], r.to_dict()
