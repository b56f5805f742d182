"""IBRService against the embedded sandbox over loopback: classification, fail-closed, batches."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import spp_dci_ibr as dci
from dci_server import DCIServer
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
        ({"wrong_reference_rate": 1.0}, "reference_id that was not sent"),
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
        "verified": True,
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


# ---- reading answers strictly (issue 9) --------------------------------------------------------
# Each case is what a sloppy registry or an attacker could send for one asked identifier, validly
# signed and bound to the request. Only the documented "zero records" shape may become no_match.

REC = {
    "member": {
        "programme_identifier": {
            "programme": {"programme_name": "Cash"},
            "enrolment_status": "Active",
        }
    }
}


def _item(**fields: object) -> dict[str, object]:
    """Changes the first answered item: a key set to ... is deleted."""

    def change(header: dict[str, object] | None, message: dict[str, object]) -> None:
        items = message["search_response"]
        assert isinstance(items, list)
        for k, v in fields.items():
            if v is ...:
                items[0].pop(k, None)
            else:
                items[0][k] = v

    return {"mangle": change}


def _message(fn: object) -> dict[str, object]:
    return {"mangle": lambda header, message: fn(header, message)}  # type: ignore[operator]


def _dup(header: object, message: dict[str, object]) -> None:
    items = message["search_response"]
    assert isinstance(items, list)
    items.append(dict(items[0]))


def _extra(header: object, message: dict[str, object]) -> None:
    items = message["search_response"]
    assert isinstance(items, list)
    items.append({**items[0], "reference_id": "not-ours"})


UNDECIDED_SHAPES = {
    "succ without data": _item(data=...),
    "data null": _item(data=None),
    "data {}": _item(data={}),
    "data []": _item(data=[]),
    "data a string": _item(data="none"),
    "data a number": _item(data=0),
    "reg_records null": _item(data={"reg_records": None}),
    "reg_records a string": _item(data={"reg_records": ""}),
    "reg_records a number": _item(data={"reg_records": 0}),
    "reg_records false": _item(data={"reg_records": False}),
    "reg_records {}": _item(data={"reg_records": {}}),
    "reg_records [null]": _item(data={"reg_records": [None]}),
    "reg_records ['x']": _item(data={"reg_records": ["x"]}),
    "records under an unknown key": _item(data={"beneficiaries": [REC]}),
    "records next to an empty reg_records": _item(data={"reg_records": [], "beneficiaries": [REC]}),
    "records at item level next to an empty list": _item(
        data={"reg_records": []}, beneficiaries=[REC]
    ),
    "item without status": _item(status=...),
    "status SUCC": _item(status="SUCC"),
    "status success": _item(status="success"),
    "status empty": _item(status=""),
    "status null": _item(status=None),
    "status a list": _item(status=["succ"]),
    "status a number": _item(status=1),
    "total_count above what came back": _item(
        pagination={"page_size": 10, "page_number": 1, "total_count": 3}
    ),
    "total_count as text": _item(
        pagination={"page_size": 10, "page_number": 1, "total_count": "2"}
    ),
    "total_count unreadable": _item(pagination={"page_size": 10, "total_count": "many"}),
    "total in data": _item(data={"reg_records": [], "total_count": 1}),
    "pagination not an object": _item(pagination="more"),
    "total_records in data": _item(data={"reg_records": [], "total_records": 4}),
    "totalCount in pagination": _item(pagination={"page_size": 10, "totalCount": 1}),
    "a record object at item level": _item(record=REC),
    "a record object in data": _item(data={"reg_records": [], "beneficiary": REC}),
    "item a string": _message(lambda h, m: m.update(search_response=["succ"])),
    "item null": _message(lambda h, m: m.update(search_response=[None])),
    "item a list": _message(lambda h, m: m.update(search_response=[[]])),
    "items an object": _message(lambda h, m: m.update(search_response=m["search_response"][0])),
    "items missing": _message(lambda h, m: m.pop("search_response")),
    "items null": _message(lambda h, m: m.update(search_response=None)),
    "items empty": _message(lambda h, m: m.update(search_response=[])),
    "two items for one reference_id": _message(_dup),
    "an item for a reference_id not sent": _message(_extra),
    "reference_id a number": _item(reference_id=1),
    "reference_id null": _item(reference_id=None),
    "header pdng, item succ": _message(lambda h, m: h.update(status="pdng")),
    "header rcvd, item succ": _message(lambda h, m: h.update(status="rcvd")),
    "header rjct, item succ": _message(lambda h, m: h.update(status="rjct")),
    "header without status": _message(lambda h, m: h.pop("status")),
    "header status SUCC": _message(lambda h, m: h.update(status="SUCC")),
    "item pdng": _item(status="pdng", data=...),
    "item rjct with records": _item(status="rjct"),
}


@pytest.fixture
def registry() -> Iterator[DCIServer]:
    with DCIServer() as s:
        yield s
        assert s.server_errors == []


def registry_service(s: DCIServer, **kw: object) -> dci.IBRService:
    key = dci.SigningKey.generate("ed25519")
    args: dict[str, object] = {
        "base_url": s.base_url,
        "sender_id": "spp.test",
        "signing_key": key,
        "key_id": "k1",
        "registry_keys": s.public_pem(),
        "max_retries": 0,
        "timeout": 5.0,
    }
    args.update(kw)
    return dci.IBRService(dci.DCIClient(**args))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", list(UNDECIDED_SHAPES))
def test_every_other_answer_shape_is_undecided_never_no_match(
    registry: DCIServer, case: str
) -> None:
    registry.mangle = UNDECIDED_SHAPES[case]["mangle"]  # type: ignore[assignment]
    service = registry_service(registry)
    result = service.check_duplication([("NID", "1")])
    assert result.state == "failed", (case, result.to_dict())
    assert result.result is None
    assert [o.status for o in result.outcomes] in (["failed"], ["pending"])
    assert result.reasons
    # the same answer next to an identifier that found a record is still that match
    registry.records["2"] = [REC]
    both = service.check_duplication([("NID", "1"), ("NID", "2")])
    assert both.result in ("confirmed_match", None), (case, both.to_dict())
    assert both.result != "no_match"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "no_match"),
        ({"data": {"version": "1.0.0", "reg_records": [], "reg_type": "x"}}, "no_match"),
        ({"pagination": {"page_size": 10, "page_number": 1, "total_count": 0}}, "no_match"),
        ({"pagination": ...}, "no_match"),
        ({"data": {"reg_records": [REC]}}, "confirmed_match"),
        ({"data": [REC]}, "confirmed_match"),
        ({"data": {"records": [REC]}}, "confirmed_match"),
        ({"data": {"reg_records": [], "records": [REC]}}, "confirmed_match"),
        ({"data": {"reg_records": REC}}, "confirmed_match"),
        ({"data": {"reg_records": None}, "reg_records": [REC]}, "confirmed_match"),
    ],
    ids=[
        "spec zero",
        "spec zero, more data keys",
        "total_count 0",
        "no pagination",
        "spec records",
        "data a list of records",
        "data.records",
        "records under a variant next to an empty list",
        "one record as an object",
        "records at item level",
    ],
)
def test_documented_and_known_variant_shapes(
    registry: DCIServer, change: dict[str, object], expected: str
) -> None:
    registry.mangle = _item(**change)["mangle"]  # type: ignore[assignment]
    result = registry_service(registry).check_duplication([("NID", "1")])
    assert result.result == expected, result.to_dict()
    assert result.verified is True


def test_several_identifiers_are_never_matched_by_position(registry: DCIServer) -> None:
    registry.search_mode = {"no_refs"}
    result = registry_service(registry).check_duplication([("NID", "1"), ("NID", "2")])
    assert result.state == "failed", result.to_dict()
    assert all(o.status == "failed" for o in result.outcomes)
    assert any("reference_id" in r for r in result.reasons), result.reasons
    # one identifier: an item without reference_id is its answer
    single = registry_service(registry).check_duplication([("NID", "1")])
    assert single.result == "no_match"


def test_a_duplicated_item_leaves_the_others_decided(registry: DCIServer) -> None:
    registry.records["2"] = [REC]

    def dup_first(header: object, message: dict[str, object]) -> None:
        items = message["search_response"]
        assert isinstance(items, list)
        items.append({**items[0], "data": {"reg_records": [REC]}})

    registry.mangle = dup_first
    result = registry_service(registry).check_duplication([("NID", "1"), ("NID", "2")])
    assert [o.status for o in result.outcomes] == ["failed", "records"]
    assert "two" in (result.outcomes[0].reason or ""), result.outcomes[0].reason
    assert result.result == "confirmed_match"


# ---- callbacks -----------------------------------------------------------------------------------


def test_parse_callback_never_drops_an_unanswered_identifier() -> None:
    message = {
        "transaction_id": "t",
        "search_response": [
            {"reference_id": "a", "status": "succ", "data": {"reg_records": []}},
        ],
    }
    result = dci.IBRService.parse_callback(
        message, reference_ids=["a", "b"], identifiers=[("UIN", "1"), ("UIN", "2")]
    )
    assert result.state == "failed"
    assert [(o.id_value, o.status) for o in result.outcomes] == [
        ("1", "no_records"),
        ("2", "pending"),
    ]
    assert [o.reference_id for o in result.outcomes] == ["a", "b"]


def test_parse_callback_does_not_guess_by_position() -> None:
    message = {
        "transaction_id": "t",
        "search_response": [
            {"status": "succ", "data": {"reg_records": []}},
            {"status": "succ", "data": {"reg_records": []}},
        ],
    }
    result = dci.IBRService.parse_callback(
        message, reference_ids=["a", "b"], identifiers=[("UIN", "1"), ("UIN", "2")]
    )
    assert result.state == "failed"
    assert all(o.status == "failed" for o in result.outcomes)
    with pytest.raises(ValueError, match="reference_ids"):
        dci.IBRService.parse_callback(message, identifiers=[("UIN", "1"), ("UIN", "2")])
    with pytest.raises(ValueError, match="repeat"):
        dci.IBRService.parse_callback(message, reference_ids=["a", "a"])
    with pytest.raises(ValueError, match="same length"):
        dci.IBRService.parse_callback(
            message, reference_ids=["a"], identifiers=[("U", "1"), ("U", "2")]
        )
    one = {
        "transaction_id": "t",
        "search_response": [{"status": "succ", "data": {"reg_records": []}}],
    }
    assert dci.IBRService.parse_callback(one, identifiers=[("UIN", "1")]).result == "no_match"


def test_parse_callback_merges_the_callbacks_of_one_transaction() -> None:
    ids = [("UIN", "1"), ("UIN", "2")]
    first = {
        "transaction_id": "t",
        "search_response": [{"reference_id": "a", "status": "pdng"}],
    }
    second = {
        "transaction_id": "t",
        "search_response": [
            {"reference_id": "a", "status": "succ", "data": {"reg_records": []}},
        ],
    }
    third = {
        "transaction_id": "t",
        "search_response": [
            {"reference_id": "b", "status": "succ", "data": {"reg_records": []}},
        ],
    }
    waiting = dci.IBRService.parse_callback(
        second, reference_ids=["a", "b"], identifiers=ids, earlier=[first], transaction_id="t"
    )
    assert [o.status for o in waiting.outcomes] == ["no_records", "pending"]
    done = dci.IBRService.parse_callback(
        third,
        reference_ids=["a", "b"],
        identifiers=ids,
        earlier=[first, second],
        transaction_id="t",
        verified=True,
    )
    assert done.result == "no_match" and done.verified
    assert (
        dci.IBRService.parse_callback(
            third, reference_ids=["a", "b"], identifiers=ids, earlier=[first, second]
        ).verified
        is False
    )
    # a second final answer for "a" contradicts the first: undecided, never "last wins"
    again = dci.IBRService.parse_callback(
        second, reference_ids=["a", "b"], identifiers=ids, earlier=[second, third]
    )
    assert again.state == "failed"
    assert [o.status for o in again.outcomes] == ["failed", "no_records"]
    # another transaction's callback is not this check's answer
    other = dci.IBRService.parse_callback(
        third, reference_ids=["a", "b"], identifiers=ids, earlier=[second], transaction_id="t2"
    )
    assert other.state == "failed"
    assert any("transaction" in r for r in other.reasons)


# ---- enrolled --------------------------------------------------------------------------------------


def _enrolled(items: object) -> object:
    def change(header: object, message: dict[str, object]) -> None:
        if "enrolled_response" in message:
            if items is ...:
                message.pop("enrolled_response")
            else:
                message["enrolled_response"] = items

    return change


def _answer(enrolled: object, **extra: object) -> dict[str, object]:
    item = {"reference_id": "1", "timestamp": "2025-01-01T00:00:00Z", "status": "succ"}
    return {**item, "enrolled_status": enrolled, **extra}


@pytest.mark.parametrize(
    "items",
    [
        [_answer("Yes")],
        [_answer("NO")],
        [_answer("no ")],
        [_answer(True)],
        [_answer(False)],
        [_answer(None)],
        [_answer({"value": "no"})],
        [_answer(["no"])],
        [_answer(0)],
        [_answer("pending")],
        [_answer("no", status="pdng")],
        [_answer("no", status="rjct")],
        [{k: v for k, v in _answer("no").items() if k != "status"}],
        [_answer("no"), _answer("yes")],
        [],
        {"enrolled_status": "no"},
        "no",
        None,
        ...,
        [None],
        ["no"],
    ],
)
@pytest.mark.parametrize("bare", [False, True], ids=["enveloped", "bare"])
def test_enrolled_status_other_than_yes_or_no_is_undecided(
    registry: DCIServer, items: object, bare: bool
) -> None:
    from spp_dci_ibr.exceptions import UndecidedError

    registry.mangle = _enrolled(items)  # type: ignore[assignment]
    registry.enrolled_bare = bare
    kw: dict[str, object] = (
        {"registry_keys": None, "accept_unverified_answers": True} if bare else {}
    )
    service = registry_service(registry, **kw)
    with pytest.raises(UndecidedError):
        service.get_enrollment_status("NID", "1")


def test_enrolled_yes_and_no_are_read_exactly(registry: DCIServer) -> None:
    registry.enrolled_ids = {"9"}
    service = registry_service(registry)
    yes = service.get_enrollment_status("NID", "9")
    assert yes["enrolled"] is True and yes["verified"] is True
    assert service.get_enrollment_status("NID", "1")["enrolled"] is False
    registry.mangle = _enrolled([_answer("no"), _answer("no")])  # type: ignore[assignment]
    assert service.get_enrollment_status("NID", "1")["enrolled"] is False


def test_enrolled_fallback_to_search_is_just_as_strict(registry: DCIServer) -> None:
    from spp_dci_ibr.exceptions import UndecidedError

    service = registry_service(registry, paths={"enrolled": "/registry/sync/none"})
    assert service.get_enrollment_status("NID", "1")["enrolled"] is False
    registry.mangle = _item(data={})["mangle"]  # type: ignore[assignment]
    with pytest.raises(UndecidedError):
        service.get_enrollment_status("NID", "1")
