"""Every body validates against the IBR spec (spec/ibr_api_v1.0.0.yaml, PROTOCOL §1, §6, §8).

- every request body the client can produce — every call, every option, signed and unsigned —
  against the request schema of its endpoint (captured by the loopback ``DCIServer``);
- the sandbox's answers, callbacks and error bodies;
- the sandbox's strict mode against an independent oracle: it refuses exactly what the spec
  refuses, pointing at the same place, with the spec's codes;
- the callback router's ACK and error bodies.

The oracle is ``tests/spec_schema.py`` (Python's ``jsonschema`` over the YAML).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import callback_receiver
import httpx
import pytest
import spec_schema as spec
import spp_dci_ibr as dci
from dci_server import PATH_KEYS, DCIServer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from spp_dci_ibr.callbacks import MemoryReplayStore, StaticKeyLookup, build_callback_router
from spp_dci_ibr.exceptions import DCIError
from spp_dci_ibr.sandbox import IBRSandbox

SENDER = "sp.conformance.test"
KEY_ID = "k1"


def now_ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_json_copy_the_sandbox_embeds_agrees_with_the_yaml() -> None:
    assert json.loads(spec.JSON_PATH.read_text(encoding="utf-8")) == spec.document()


def test_the_oracle_checks_formats_and_reads_the_defects_leniently() -> None:
    header = {
        "message_id": "m",
        "message_ts": "2025-01-02T03:04:05Z",
        "action": "search",
        "sender_id": "s",
        "total_count": 1,
    }
    item = {
        "reference_id": "r",
        "timestamp": "2025-01-02T03:04:05Z",
        "search_criteria": {
            "query_type": "predicate",
            "query": [
                {
                    "expression1": {
                        "attribute_name": "YOB",
                        "operator": "eq",
                        "attribute_value": 1980,
                    }
                }
            ],
        },
    }
    body = {"header": header, "message": {"transaction_id": "t", "search_request": [item]}}
    assert spec.request_problems("/registry/sync/search", body) == []
    bad = copy.deepcopy(body)
    bad["header"]["sender_uri"] = "no scheme"
    bad["message"]["search_request"][0]["timestamp"] = "2025-02-30T00:00:00Z"
    bad["message"]["search_request"][0]["locale"] = "en"
    assert spec.request_problems("/registry/sync/search", bad) == [
        "header.sender_uri: 'no scheme' is not a 'uri'",
        "message.search_request[0].locale: 'en' does not match '^[a-z]{3,3}$'",
        "message.search_request[0].timestamp: '2025-02-30T00:00:00Z' is not a 'date-time'",
    ]
    # The spec as written refuses an integer value (oneOf string/integer/number): the defect.
    strict = spec.jsonschema.Draft4Validator(
        spec.document()["components"]["schemas"]["SubscriptionInfo"]["properties"]["filter"][
            "anyOf"
        ][1]["properties"]["value"]["allOf"][1]
    )
    assert not strict.is_valid(1980) and strict.is_valid("1980")


# ------------------------------------------------------------------------------------------
# What the client sends
# ------------------------------------------------------------------------------------------

PREDICATES = [
    {
        "seq_num": 1,
        "expression1": {"attribute_name": "YOB", "operator": "eq", "attribute_value": 1980},
        "condition": "and",
        "expression2": {"attribute_name": "sex", "operator": "in", "attribute_value": "F"},
    }
]
EXPRESSION = {"collection": "Member", "query": {"$and": [{"given_name": {"$eq": "Zoë"}}]}}
SUBSCRIBE_CRITERIA = {
    "reg_event_type": "spdci-common:RegistryEventType:enrollement",
    "filter_type": "idtype-value",
    "filter": {"type": "UIN", "value": "UIN-1"},
    "notify_record_type": "Beneficiary",
}
RECORD = {
    "member": {
        "demographic_info": {
            "person": {
                "identifier_type": "UIN",
                "identifier_value": "UIN-1",
                "name": {"surname": "Ōkubo"},
            }
        },
        "programme_identifier": {
            "programme": {"programme_identifier": "PRG-1", "programme_name": "Cash"},
            "enrolment_status": "Active",
            "enrolment_date": "2024-01-01",
        },
    }
}


def every_call(c: dci.DCIClient) -> int:
    """Makes every call of the client, with every query type and option; returns how many.

    Errors from reading the answers are not this test's business (what was sent is): they are
    swallowed, and the count of requests the server received is checked instead.
    """
    calls: list[Callable[[], Any]] = [
        lambda: c.search("idtype-value", {"type": "UIN", "value": "UIN-1"}),
        lambda: c.search(
            "idtype-value",
            {"type": "UIN", "value": "UIN-2"},
            reg_type="ns:org:RegistryType:IBR",
            reg_record_type="Member",
            page_size=5,
            page_number=2,
            transaction_id="txn-given",
        ),
        lambda: c.search("expression", EXPRESSION),
        lambda: c.search("predicate", PREDICATES),
        lambda: c.search_by_id("NID", "N-1"),
        lambda: c.search_by_expression({"given_name": "Zoë"}, page_size=3),
        lambda: c.search_by_predicate(PREDICATES),
        lambda: c.search_batch(
            [
                ("idtype-value", {"type": "UIN", "value": "UIN-1"}),
                ("expression", EXPRESSION),
                ("predicate", PREDICATES),
                {
                    "version": "1.0.0",
                    "reg_type": "ns:org:RegistryType:IBR",
                    "query_type": "idtype-value",
                    "query": {"type": "NID", "value": "N-2"},
                    "sort": [{"attribute_name": "given_name", "sort_order": "asc"}],
                    "pagination": {"page_size": 10, "page_number": 1},
                },
            ],
            page_size=20,
        ),
        lambda: c.search_async("idtype-value", {"type": "UIN", "value": "UIN-1"}),
        lambda: c.search_async("expression", EXPRESSION, transaction_id="txn-async"),
        lambda: c.search_async("predicate", PREDICATES),
        lambda: c.subscribe(SUBSCRIBE_CRITERIA),
        lambda: c.subscribe(
            [
                SUBSCRIBE_CRITERIA,
                {
                    **SUBSCRIBE_CRITERIA,
                    "reg_type": "ns:org:RegistryType:IBR",
                    "frequency": {
                        "start_time": "2025-01-01T00:00:00Z",
                        "end_time": "2025-12-31T00:00:00Z",
                        "frequency": "0 0 0 5,15 * ? *",
                    },
                },
            ],
            transaction_id="txn-sub",
        ),
        lambda: c.unsubscribe(["SUB-1", "SUB-2"]),
        lambda: c.enrolled("UIN", "UIN-1"),
        lambda: c.enrolled("UIN", "UIN-1", programme_id="PRG-1", response_entity="Member"),
        lambda: c.enrollment_updates([RECORD, {"member": {"member_identifier": "M-2"}}]),
    ]
    for sync in (False, True):
        for txn_type in ("search", "subscribe", "receipt"):
            calls += [
                lambda s=sync, t=txn_type: c.txn_status("txn-1", txn_type=t, sync=s),
                lambda s=sync, t=txn_type: c.txn_status(
                    reference_ids=["r1", "r2"], txn_type=t, sync=s
                ),
                lambda s=sync, t=txn_type: c.txn_status(
                    correlation_id="corr-1", txn_type=t, sync=s
                ),
            ]
    for call in calls:
        with contextlib.suppress(DCIError):
            call()
    service = dci.IBRService(c)
    with contextlib.suppress(DCIError):
        service.search_beneficiary("UIN", "UIN-1")
    with contextlib.suppress(DCIError):
        service.get_enrollment_status("UIN", "UIN-1")
    service.check_duplication([("UIN", "UIN-1"), ("NID", "N-1")])
    results = list(service.check_many([("a", [("UIN", "UIN-3")]), ("b", [("NID", "N-4")])]))
    assert len(results) == 2
    return len(calls)


ENDPOINTS = {path: path for path in PATH_KEYS.values()}


@pytest.fixture(scope="module")
def keys() -> dict[str, dci.SigningKey]:
    return {
        "ed25519": dci.SigningKey.generate("ed25519"),
        "rs256": dci.SigningKey.generate("rs256"),
    }


OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "unsigned": {"unsigned": True},
    "rs256": {"key": "rs256"},
    "callback_base_url": {"callback_base_url": "http://127.0.0.1:8069/dci"},
    "callback_uri": {"callback_uri": "https://sp.example.org/api/dci/callback"},
    "receiver_id": {"receiver_id": "ibr.example.org"},
    "paths": {"prefix": "/api/ibr/v1"},
    "oauth2": {"oauth2": True},
}


def sent_bodies(
    keys: dict[str, dci.SigningKey], options: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(spec path, body)`` of every registry request the client sent with ``options``."""
    options = dict(options)
    prefix = options.pop("prefix", "")
    key = keys[options.pop("key", "ed25519")]
    with DCIServer(prefix=prefix) as server:
        args: dict[str, Any] = {
            "base_url": server.base_url,
            "sender_id": SENDER,
            "registry_keys": server.public_pem(),
            "timeout": 5.0,
            "max_retries": 0,
        }
        if prefix:
            args["paths"] = server.paths()
        if options.pop("oauth2", False):
            server.add_client("conformance", "s3cret")
            args.update(
                auth="oauth2",
                token_url=server.token_url,
                client_id="conformance",
                client_secret="s3cret",
            )
        if not options.get("unsigned"):
            args.update(signing_key=key, key_id=KEY_ID)
        args.update(options)
        calls = every_call(dci.DCIClient(**args))
        requests = [r for r in server.received() if r.path.startswith(prefix + "/registry/")]
        assert server.server_errors == []
    assert len(requests) >= calls, (len(requests), calls)
    for r in requests:
        yield r.path[len(prefix) :], r.body


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_request_the_client_sends_validates(
    keys: dict[str, dci.SigningKey], option: str
) -> None:
    seen = set()
    for path, body in sent_bodies(keys, OPTIONS[option]):
        spec.assert_request(path, body)
        seen.add(path)
        if option == "unsigned":
            assert body["signature"] == ""
        else:
            assert body["signature"].startswith("Signature:") or "kidId" in body["signature"]
    assert seen == set(ENDPOINTS), set(ENDPOINTS) - seen


def test_null_sender_uri_is_the_only_departure_of_its_opt_in(
    keys: dict[str, dci.SigningKey],
) -> None:
    """``null_sender_uri=True`` (for peers that hash re-serialised headers) sends ``null`` where
    there is no callback URL: the one thing the spec refuses, and only there."""
    options = {"null_sender_uri": True, "callback_base_url": "http://127.0.0.1:8069/dci"}
    for path, body in sent_bodies(keys, options):
        problems = spec.request_problems(path, body)
        if body["header"].get("sender_uri") is None and "sender_uri" in body["header"]:
            assert problems == ["header.sender_uri: None is not of type 'string'"], (path, problems)
        else:
            assert problems == [], (path, problems)


# ------------------------------------------------------------------------------------------
# What the sandbox answers
# ------------------------------------------------------------------------------------------


class Receiver(callback_receiver.Receiver):
    """The shared loopback receiver; every callback it gives must conform to the spec."""

    def __init__(self) -> None:
        super().__init__("/dci/callback")
        self.base = self.url

    def next(self) -> tuple[str, dict[str, Any]]:
        path, body = super().next()
        spec.assert_callback(body)
        return path, body


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Caller:
    """Signed (or unsigned) requests to a sandbox, with the spec's headers."""

    def __init__(self, sb: IBRSandbox, *, signed: bool = True, auth: bool = True) -> None:
        self.sb = sb
        self.key = dci.SigningKey.generate()
        if signed:
            sb.register_client_key(SENDER, self.key.public_jwk(SENDER, KEY_ID))
        self.signed = signed
        self.http = httpx.Client(timeout=20)
        self.token: str | None = None
        if auth:
            answer = self.http.post(
                sb.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": sb.client_id,
                    "client_secret": sb.client_secret,
                },
            )
            self.token = answer.json()["access_token"]

    def header(self, action: str, total: int, sender_uri: str | None) -> dict[str, Any]:
        header: dict[str, Any] = {
            "version": "1.0.0",
            "message_id": str(uuid.uuid4()),
            "message_ts": now_ts(),
            "action": action,
            "sender_id": SENDER,
            "receiver_id": self.sb.sender_id,
            "total_count": total,
            "is_msg_encrypted": False,
            "meta": {},
        }
        if sender_uri is not None:
            header["sender_uri"] = sender_uri
        if action == "notify":  # enrollment updates: the callback-style header
            header.update(status="succ", completed_count=total)
        return header

    def envelope(self, header: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        signature = (
            dci.sign_envelope(header, message, self.key, sender_id=SENDER, key_id=KEY_ID)
            if self.signed
            else ""
        )
        return {"signature": signature, "header": header, "message": message}

    def body(
        self, path: str, message: dict[str, Any], total: int = 1, sender_uri: str | None = None
    ) -> dict[str, Any]:
        action = ACTIONS[path]
        return self.envelope(self.header(action, total, sender_uri), message)

    def post_raw(self, path: str, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.http.post(self.sb.url + path, json=body, headers=headers)

    def post(
        self, path: str, message: dict[str, Any], total: int = 1, sender_uri: str | None = None
    ) -> dict[str, Any]:
        """Posts a conforming request; its answer must be a success that conforms."""
        body = self.body(path, message, total, sender_uri)
        spec.assert_request(path, body)
        resp = self.post_raw(path, body)
        assert resp.status_code in (200, 202), resp.text
        answer: dict[str, Any] = resp.json()
        spec.assert_answer(path, answer)
        return answer


ACTIONS = {
    "/registry/sync/search": "search",
    "/registry/search": "search",
    "/registry/subscribe": "subscribe",
    "/registry/unsubscribe": "unsubscribe",
    "/registry/txn/status": "txn-status",
    "/registry/sync/txn/status": "txn-status",
    "/registry/sync/enrolled": "search",
    "/registry/sync/enrollment/updates": "notify",
}


def search_message(*queries: tuple[str, Any], **criteria: Any) -> dict[str, Any]:
    return {
        "transaction_id": str(uuid.uuid4()),
        "search_request": [
            {
                "reference_id": f"r{n}",
                "timestamp": now_ts(),
                "search_criteria": {"query_type": query_type, "query": query, **criteria},
                "locale": "eng",
            }
            for n, (query_type, query) in enumerate(queries)
        ],
    }


def txn_message(attribute_type: str, value: Any, txn_type: str = "search") -> dict[str, Any]:
    return {
        "transaction_id": str(uuid.uuid4()),
        "txnstatus_request": {
            "reference_id": "s1",
            "txn_type": txn_type,
            "attribute_type": attribute_type,
            "attribute_value": value,
        },
    }


@pytest.mark.parametrize("one_callback_url", [False, True])
def test_every_sandbox_answer_and_callback_validates(
    receiver: Receiver, one_callback_url: bool
) -> None:
    with IBRSandbox(synthetic=40, seed=5, one_callback_url=one_callback_url) as sb:
        c = Caller(sb)
        cb = receiver.base

        def route(name: str) -> str:
            return "/dci/callback" if one_callback_url else f"/dci/callback/{name}"

        (active_type, active) = sb.sample_identifiers("active")[0]
        unknown = sb.sample_identifiers("unknown")[0]
        answer = c.post(
            "/registry/sync/search",
            search_message(
                ("idtype-value", {"type": active_type, "value": active}),
                ("idtype-value", {"type": unknown[0], "value": unknown[1]}),
                ("expression", {"identifier_value": {"$eq": active}}),
                (
                    "predicate",
                    [
                        {
                            "seq_num": 1,
                            "expression1": {
                                "attribute_name": "identifier_value",
                                "operator": "eq",
                                "attribute_value": active,
                            },
                        }
                    ],
                ),
                ("idtype-value", {"type": "UIN"}),  # unreadable: that item is rejected
                pagination={"page_size": 5, "page_number": 1},
            ),
            total=5,
        )
        statuses = [i["status"] for i in answer["message"]["search_response"]]
        assert statuses == ["succ", "succ", "succ", "succ", "rjct"]

        search = search_message(("idtype-value", {"type": active_type, "value": active}))
        ack = c.post("/registry/search", search, sender_uri=cb)
        assert "error" not in ack["message"]
        path, callback = receiver.next()
        assert (path, callback["header"]["action"]) == (route("on-search"), "on-search")

        subscribe = {
            "transaction_id": "t-sub",
            "subscribe_request": [
                {
                    "reference_id": "s1",
                    "timestamp": now_ts(),
                    "subscribe_criteria": {
                        **SUBSCRIBE_CRITERIA,
                        "filter": {"type": active_type, "value": active},
                    },
                }
            ],
        }
        c.post("/registry/subscribe", subscribe, sender_uri=cb)
        path, callback = receiver.next()
        assert (path, callback["header"]["action"]) == (route("on-subscribe"), "on-subscribe")
        code = callback["message"]["subscribe_response"][0]["subscriptions"][0]["code"]

        updates = {
            "transaction_id": "t-upd",
            "enrolled_updates": {
                "beneficiaries": [
                    {
                        "member": {
                            "demographic_info": {
                                "person": {
                                    "identifier_type": active_type,
                                    "identifier_value": active,
                                }
                            },
                            "programme_identifier": {
                                "programme": {"programme_identifier": "PRG-NEW"},
                                "enrolment_status": "Suspended",
                            },
                        }
                    },
                    {"member": {}},  # unreadable: that one is rejected
                ]
            },
        }
        answer = c.post("/registry/sync/enrollment/updates", updates, total=2)
        assert [i["status"] for i in answer["message"]["enrolled_response"]] == ["succ", "rjct"]
        path, callback = receiver.next()
        assert (path, callback["header"]["action"]) == (route("notify"), "notify")
        assert callback["message"]["transaction_id"] == "t-sub"

        for txn_type, attribute, value in [
            ("search", "correlation_id", ack["message"]["correlation_id"]),
            ("search", "reference_id_list", ["r0"]),
            ("subscribe", "transaction_id", "t-sub"),
            ("receipt", "transaction_id", "t-upd"),
        ]:
            answer = c.post("/registry/sync/txn/status", txn_message(attribute, value, txn_type))
            assert answer["message"]["txnstatus_response"]["txn_type"] == txn_type
            c.post("/registry/txn/status", txn_message(attribute, value, txn_type), sender_uri=cb)
            path, callback = receiver.next()
            assert (path, callback["header"]["action"]) == (route("txn/on-status"), "txn-on-status")

        unsubscribe = {
            "transaction_id": "t-un",
            "timestamp": now_ts(),
            "subscription_codes": [code],
        }
        c.post("/registry/unsubscribe", unsubscribe, sender_uri=cb)
        path, callback = receiver.next()
        assert (path, callback["header"]["action"]) == (route("on-unsubscribe"), "on-unsubscribe")

        enrolled = {
            "transaction_id": "t-enr",
            "enrolled_criteria": {
                "query_type": "expression",
                "response_entity": "Member",
                "query": {"person_identifier": {"eq": active}},
            },
        }
        answer = c.post("/registry/sync/enrolled", enrolled)
        assert answer["message"]["enrolled_response"][0]["enrolled_status"] == "yes"
        assert sb.stats()["spec_violations"] == 0
    with IBRSandbox(synthetic=5, bare_enrolled=True) as sb:
        answer = Caller(sb).post("/registry/sync/enrolled", enrolled)
        assert "header" not in answer and answer["enrolled_response"]


def test_sandbox_error_bodies_are_the_spec_s() -> None:
    with IBRSandbox(synthetic=5, max_batch_items=2) as sb:
        c = Caller(sb)
        search = search_message(("idtype-value", {"type": "UIN", "value": "UIN-00000001"}))
        body = c.body("/registry/sync/search", search)
        answers = [
            httpx.post(sb.url + "/registry/sync/search", json=body),  # no token: 401
            c.post_raw("/registry/nowhere", body),  # 404
            c.http.get(sb.url + "/registry/sync/search"),  # 405
            c.post_raw("/registry/sync/search", " " * ((1 << 20) + 1)),  # 413
            c.post_raw("/registry/sync/search", dict(body, signature="Signature: nope")),  # 401
            # no sender_uri for an async call: 400
            c.post_raw("/registry/search", c.body("/registry/search", search)),
            c.post_raw("/registry/sync/search", {"header": body["header"]}),  # 400, strict
        ]
        assert c.post_raw("/registry/sync/search", body).status_code == 200
        answers.append(c.post_raw("/registry/sync/search", body))  # replay: 409
        missing = txn_message("transaction_id", "never-seen")
        answers.append(
            c.post_raw("/registry/sync/txn/status", c.body("/registry/sync/txn/status", missing))
        )
        statuses = [a.status_code for a in answers]
        assert statuses == [401, 404, 405, 413, 401, 400, 400, 409, 404]
        for a in answers:
            spec.assert_error(a.json())


# ------------------------------------------------------------------------------------------
# The sandbox's strict mode against the oracle
# ------------------------------------------------------------------------------------------


def base_bodies(c: Caller, cb: str) -> list[tuple[str, dict[str, Any]]]:
    """One conforming request per route, as rich as the spec allows."""
    search = search_message(
        ("idtype-value", {"type": "UIN", "value": "UIN-00000001"}),
        reg_type="ns:org:RegistryType:IBR",
        reg_record_type="Beneficiary",
        sort=[{"attribute_name": "given_name", "sort_order": "asc"}],
        pagination={"page_size": 10, "page_number": 1},
    )
    subscribe = {
        "transaction_id": "t-sub",
        "subscribe_request": [
            {"reference_id": "s1", "timestamp": now_ts(), "subscribe_criteria": SUBSCRIBE_CRITERIA}
        ],
    }
    unsubscribe = {"transaction_id": "t-un", "timestamp": now_ts(), "subscription_codes": ["X"]}
    enrolled = {
        "transaction_id": "t-enr",
        "enrolled_criteria": {
            "query_type": "expression",
            "response_entity": "Group",
            "query": {"person_identifier": {"eq": "UIN-00000001"}},
        },
    }
    updates = {"transaction_id": "t-upd", "enrolled_updates": {"beneficiaries": [RECORD]}}
    bodies = [
        ("/registry/sync/search", c.body("/registry/sync/search", search)),
        ("/registry/search", c.body("/registry/search", search, sender_uri=cb)),
        ("/registry/subscribe", c.body("/registry/subscribe", subscribe, sender_uri=cb)),
        ("/registry/unsubscribe", c.body("/registry/unsubscribe", unsubscribe, sender_uri=cb)),
        (
            "/registry/sync/txn/status",
            c.body("/registry/sync/txn/status", txn_message("reference_id_list", ["a", "b"])),
        ),
        (
            "/registry/txn/status",
            c.body("/registry/txn/status", txn_message("transaction_id", "t"), sender_uri=cb),
        ),
        ("/registry/sync/enrolled", c.body("/registry/sync/enrolled", enrolled)),
        ("/registry/sync/enrollment/updates", c.body("/registry/sync/enrollment/updates", updates)),
    ]
    for path, body in bodies:
        spec.assert_request(path, body)
    return bodies


def paths_in(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if at:
        yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths_in(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths_in(v, (*at, i))


def mutated(body: dict[str, Any], at: tuple[Any, ...], how: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    parent = out
    for step in at[:-1]:
        parent = parent[step]
    if how == "deleted":
        del parent[at[-1]]
    else:
        parent[at[-1]] = {"null": None, "number": 12345, "text": "x y", "list": [], "object": {}}[
            how
        ]
    return out


def location(at: tuple[Any, ...]) -> str:
    out = ""
    for step in at:
        out += f"[{step}]" if isinstance(step, int) else ("." if out else "") + str(step)
    return out


#: The header members with an error code of their own (the rest: err.request.bad).
HEADER_CODES = {
    "sender_id": "err.sender_id.invalid",
    "sender_uri": "err.sender_uri.invalid",
    "receiver_id": "err.receiver_id.invalid",
    "version": "err.version.not_supported",
    "is_msg_encrypted": "err.encryption.invalid",
}
PREFIX = "the request does not conform to the IBR spec: "


def test_strict_mode_refuses_exactly_what_the_spec_refuses(receiver: Receiver) -> None:
    """Every member of a conforming request of every route, deleted or replaced by a value of
    each JSON type: the sandbox refuses the body exactly when the oracle does, at a place the
    oracle names, with the code of that place."""
    with IBRSandbox(synthetic=5, require_auth=False, require_signatures=False) as sb:
        c = Caller(sb, signed=False, auth=False)
        tried = refused = 0
        for path, base in base_bodies(c, receiver.base):
            for at in paths_in(base):
                for how in ("deleted", "null", "number", "text", "list", "object"):
                    body = mutated(base, at, how)
                    problems = spec.request_problems(path, body)
                    before = sb.stats()["spec_violations"]
                    resp = c.post_raw(path, body)
                    after = sb.stats()["spec_violations"]
                    what = f"{path} {location(at)} {how}: {resp.status_code} {resp.text[:300]}"
                    tried += 1
                    if not problems:
                        assert after == before, what
                        continue
                    refused += 1
                    assert resp.status_code == 400 and after == before + 1, (what, problems)
                    error = resp.json()["errors"][0]
                    assert error["message"].startswith(PREFIX), what
                    place = error["message"][len(PREFIX) :].split(": ")[0]
                    assert place in {p.split(": ")[0] for p in problems}, (what, problems)
                    steps = place.split(".")
                    expected = (
                        HEADER_CODES.get(steps[1].split("[")[0], "err.request.bad")
                        if steps[0] == "header" and len(steps) > 1
                        else "err.signature.invalid"
                        if steps[0] == "signature"
                        else "err.request.bad"
                    )
                    assert error["code"] == expected, what
        # Drained so that the receiver's queue does not hold callbacks for other tests.
        while not receiver.received.empty():
            receiver.received.get()
    assert tried > 700 and 300 < refused < tried, (tried, refused)


URIS = [
    "http://127.0.0.1:8/cb",
    "https://sp.example.org/registry/on-search?x=1&y=%20#frag",
    "http://[::1]:8069/dci",
    "http://[v7.abc]/",
    "urn:isbn:0451450523",
    "mailto:sp@example.org",
    "HTTP://H",
    "http://h/%zz",
    "http://h/a b",
    "http://[::g]/",
    "http://h/é",
    "//h/path",
    "/registry/on-search",
    "1http://h",
    "http://h/#a#b",
    "",
]
TIMESTAMPS = [
    "2024-02-29T00:00:00+05:30",
    "2024-01-01t00:00:00.5z",
    "2024-12-31T23:59:59-23:59",
    "2023-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00+0530",
    "2024-1-01T00:00:00Z",
    "2024-01-01T00:00:00.Z",
    "",
]


def test_formats_agree_with_the_oracle() -> None:
    """``uri`` and ``date-time`` are checked alike by the sandbox and the oracle."""
    with IBRSandbox(synthetic=5, require_auth=False, require_signatures=False) as sb:
        c = Caller(sb, signed=False, auth=False)
        message = search_message(("idtype-value", {"type": "UIN", "value": "UIN-00000001"}))
        cases = [("sender_uri", u) for u in URIS] + [("message_ts", t) for t in TIMESTAMPS]
        for member, value in cases:
            body = c.body("/registry/sync/search", message)
            body["header"][member] = value
            conforms = not spec.request_problems("/registry/sync/search", body)
            before = sb.stats()["spec_violations"]
            resp = c.post_raw("/registry/sync/search", body)
            refused = sb.stats()["spec_violations"] > before
            assert refused != conforms, (member, value, resp.text)
            assert (resp.status_code == 200) == conforms, (member, value, resp.text)


# ------------------------------------------------------------------------------------------
# The callback router
# ------------------------------------------------------------------------------------------

REGISTRY = "ibr.conformance.test"


def test_router_ack_and_error_bodies_are_the_spec_s() -> None:
    key = dci.SigningKey.generate()
    events: list[Any] = []
    app = FastAPI()
    app.include_router(
        build_callback_router(
            key_lookup=StaticKeyLookup({REGISTRY: key.public_jwk(REGISTRY, KEY_ID)}),
            replay_store=MemoryReplayStore(),
            sink=events.append,
            max_body_bytes=4096,
        )
    )
    client = TestClient(app)
    header = {
        "version": "1.0.0",
        "message_id": str(uuid.uuid4()),
        "message_ts": now_ts(),
        "action": "on-search",
        "status": "succ",
        "sender_id": REGISTRY,
        "receiver_id": SENDER,
        "total_count": 1,
        "completed_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    message = {
        "transaction_id": "t",
        "correlation_id": "c",
        "search_response": [
            {
                "reference_id": "r",
                "timestamp": now_ts(),
                "status": "succ",
                "data": {"reg_records": []},
            }
        ],
    }
    signature = dci.sign_envelope(
        header, message, key, sender_id=REGISTRY, key_id=KEY_ID, created=int(time.time())
    )
    callback = {"signature": signature, "header": header, "message": message}
    spec.assert_callback(callback)
    ok = client.post("/registry/on-search", json=callback)
    assert ok.status_code == 200, ok.text
    spec.assert_answer("/registry/on-search", ok.json())
    assert "error" not in ok.json()["message"]
    assert len(events) == 1
    refusals = [
        client.post("/registry/on-search", json=callback),  # replay
        client.post("/registry/on-search", json=dict(callback, signature="")),
        client.post("/registry/on-search", json={**callback, "message": {**message, "x": 1}}),
        client.post(
            "/registry/on-search",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        client.post(
            "/registry/on-search", content=b" " * 5000, headers={"content-type": "application/json"}
        ),
        client.post("/registry/on-search", json=[]),
    ]
    assert [r.status_code for r in refusals] == [409, 401, 401, 400, 413, 400]
    for r in refusals:
        spec.assert_error(r.json())
