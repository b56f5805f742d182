"""IBRService against the embedded sandbox over loopback: classification, fail-closed, batches."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import spp_dci_ibr as dci
from spp_dci_ibr.sandbox import IBRSandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[IBRSandbox]:
    with IBRSandbox(synthetic=400, seed=11) as sb:
        yield sb


@pytest.fixture
def service(sandbox: IBRSandbox) -> dci.IBRService:
    sandbox.set_faults(None)
    return dci.IBRService(sandbox.client(max_retries=0, timeout=5.0))


def one(sandbox: IBRSandbox, status: str) -> tuple[str, str]:
    return sandbox.sample_identifiers(status, 1)[0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", "confirmed_match"),
        ("suspended", "confirmed_match"),
        ("graduated", "possible_match"),
        ("deceased", "possible_match"),
        ("unknown", "no_match"),
    ],
)
def test_each_enrolment_status_classifies_per_protocol(
    sandbox: IBRSandbox, service: dci.IBRService, status: str, expected: str
) -> None:
    result = service.check_duplication([one(sandbox, status)])
    assert result.state == "completed"
    assert result.result == expected
    assert result.is_duplicate is (expected != "no_match")
    assert bool(result)
    if expected == "no_match":
        assert result.matched_programs == []
        assert [o.status for o in result.outcomes] == ["no_records"]
    else:
        assert result.matched_programs, "a match names its programmes"
        assert result.matched_programs == sorted(set(result.matched_programs))
        assert result.outcomes[0].status == "records"
        assert result.outcomes[0].record_count >= 1
        assert result.beneficiaries[0].programs


def test_a_match_next_to_unknown_identifiers_is_still_a_match(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    result = service.check_duplication([one(sandbox, "unknown"), one(sandbox, "active")])
    assert result.result == "confirmed_match"
    assert [o.status for o in result.outcomes] == ["no_records", "records"]


def test_malformed_identifier_next_to_nothing_found_fails_closed(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    result = service.check_duplication([one(sandbox, "unknown"), ("UIN", "   ")])
    assert result.state == "failed"
    assert result.result is None
    assert not result.is_duplicate
    assert not bool(result)
    assert any("invalid identifier" in r for r in result.reasons)
    assert result.to_dict()["state"] == "failed"


def test_no_identifiers_is_a_failed_check(service: dci.IBRService) -> None:
    result = service.check_duplication([])
    assert result.state == "failed"
    assert result.reasons == ["no identifiers to check"]


def test_identifiers_as_objects_and_dicts(sandbox: IBRSandbox, service: dci.IBRService) -> None:
    id_type, id_value = one(sandbox, "active")

    class RegId:
        def __init__(self) -> None:
            self.id_type, self.id_value = id_type, id_value

    for form in ([RegId()], [{"type": id_type, "value": id_value}]):
        assert service.check_duplication(form).result == "confirmed_match"
    with pytest.raises(ValueError, match="identifiers"):
        service.check_duplication("UIN-1")


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"error_rates": {500: 1.0}}, "http_status"),
        ({"error_rates": {503: 1.0}}, "http_status"),
        ({"bad_signature_rate": 1.0}, "signature"),
        ({"garbage_rate": 1.0}, "protocol"),
        ({"wrong_reference_rate": 1.0}, "no item for this identifier"),
        ({"drop_rate": 1.0}, "transport"),
    ],
)
def test_registry_faults_never_become_no_match(
    sandbox: IBRSandbox, service: dci.IBRService, faults: dict[str, object], reason: str
) -> None:
    sandbox.set_faults(faults)
    try:
        result = service.check_duplication([one(sandbox, "unknown")])
    finally:
        sandbox.set_faults(None)
    assert result.state == "failed", result.to_dict()
    assert result.result is None
    assert any(reason in r for r in result.reasons), result.reasons


def test_check_many_keeps_input_order_keys_and_agrees_with_single_checks(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    statuses = ["active", "unknown", "graduated", "suspended", "deceased"]
    ids = {s: sandbox.sample_identifiers(s, 20) for s in statuses}
    registrants = [(f"r{i}", [ids[statuses[i % 5]][i // 5 % 20]]) for i in range(300)]
    registrants.insert(7, ("bad", [("UIN", "")]))
    seen: list[tuple[int, int]] = []
    results = list(
        service.check_many(
            iter(registrants),
            batch_size=16,
            concurrency=3,
            progress=lambda done, failed: seen.append((done, failed)),
        )
    )
    assert [r.key for r in results] == [k for k, _ in registrants]
    by_key = {r.key: r for r in results}
    assert by_key["bad"].state == "failed"
    for key, identifiers in registrants[:40]:
        if key == "bad":
            continue
        single = service.check_duplication(identifiers)
        assert by_key[key].result == single.result, key
        assert by_key[key].matched_programs == single.matched_programs
    assert seen and seen[-1] == (301, 1)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_check_many_accepts_dicts_lists_and_reports_bad_rows(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    active = one(sandbox, "active")
    rows: list[object] = [
        {"key": "d", "identifiers": [active]},
        [active],
        42,
        ("t", "not a list"),
    ]
    results = list(service.check_many(rows))
    assert [r.key for r in results] == ["d", 1, 2, "t"]
    assert [r.state for r in results] == ["completed", "completed", "failed", "failed"]
    assert "invalid input" in results[2].reasons[0]
    assert "invalid input" in results[3].reasons[0]


def test_check_many_streams_lazily(sandbox: IBRSandbox, service: dci.IBRService) -> None:
    unknown = one(sandbox, "unknown")
    pulled = itertools.count()

    def endless() -> Iterator[tuple[int, list[tuple[str, str]]]]:
        for i in itertools.count():
            next(pulled)
            yield i, [unknown]

    first = list(itertools.islice(service.check_many(endless(), batch_size=10, concurrency=2), 25))
    assert [r.key for r in first] == list(range(25))
    assert next(pulled) < 200, "pulls a bounded window, never the whole input"


def test_check_many_validates_its_arguments(service: dci.IBRService) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        service.check_many([], batch_size=0)
    with pytest.raises(ValueError, match="concurrency"):
        service.check_many([], concurrency=0)


def test_check_many_releases_the_gil(sandbox: IBRSandbox, service: dci.IBRService) -> None:
    sandbox.set_faults({"latency_ms": 150})
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = ticks
        list(service.check_many([(1, [one(sandbox, "unknown")])]))
        during = ticks - before
    finally:
        stop.set()
        t.join()
        sandbox.set_faults(None)
    assert during > 20, "another Python thread ran while the check waited"


def test_search_beneficiary_reads_names_and_programmes(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    id_type, id_value = one(sandbox, "active")
    found = service.search_beneficiary(id_type, id_value)
    assert len(found) >= 1
    info = found[0]
    assert info.identifier == (id_type, id_value) or info.identifier is not None
    assert info.name
    assert info.is_enrolled
    assert {"programme_id", "programme_name", "status", "enrolment_date", "benefits"} <= set(
        info.programs[0]
    )
    assert info.to_dict()["raw"] == info.raw
    assert service.search_beneficiary(*one(sandbox, "unknown")) == []


def test_enrollment_status_uses_enrolled_then_falls_back_to_search(
    sandbox: IBRSandbox,
) -> None:
    service = dci.IBRService(sandbox.client(max_retries=0))
    active = service.get_enrollment_status(*one(sandbox, "active"))
    assert active["enrolled"] is True
    assert active["programs"] and active["beneficiary_info"]
    assert service.get_enrollment_status(*one(sandbox, "unknown")) == {
        "enrolled": False,
        "programs": [],
        "beneficiary_info": [],
    }
    # A registry without /registry/sync/enrolled: answered by search instead.
    missing = dci.IBRService(
        sandbox.client(max_retries=0, paths={"enrolled": "/registry/sync/no-such-route"})
    )
    status = missing.get_enrollment_status(*one(sandbox, "active"))
    assert status["enrolled"] is True
    assert status["programs"]


def test_parse_callback_classifies_like_a_sync_answer(
    sandbox: IBRSandbox, service: dci.IBRService
) -> None:
    record = sandbox.records()[0]
    message = {
        "transaction_id": "t-1",
        "search_response": [
            {"reference_id": "a", "status": "succ", "data": {"reg_records": [record]}},
            {
                "reference_id": "b",
                "status": "rjct",
                "status_reason_code": "rjct.reference_id.invalid",
            },
        ],
    }
    result = dci.IBRService.parse_callback(
        message, reference_ids=["a", "b"], identifiers=[("UIN", "x"), ("UIN", "y")]
    )
    assert result.state == "completed"
    assert result.result in ("confirmed_match", "possible_match")
    assert [o.status for o in result.outcomes] == ["records", "failed"]
    assert "rjct.reference_id.invalid" in result.reasons[0]
    assert result.transaction_id == "t-1"
    nothing = dci.IBRService.parse_callback(
        {"transaction_id": "t", "search_response": [{"reference_id": "a", "status": "rjct"}]}
    )
    assert nothing.state == "failed"
