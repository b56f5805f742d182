"""DCIClient against a loopback registry (tests/dci_server.py): every call, OAuth2, signed answers,
error shapes, retries, timeouts, TLS, path prefixes, batch mapping, GIL release, fork safety and
secrets. No network beyond 127.0.0.1."""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spp_dci_ibr as dci
from dci_server import (
    ENROLLED,
    ENROLLMENT_UPDATES,
    SEARCH,
    SUBSCRIBE,
    SYNC_SEARCH,
    SYNC_TXN_STATUS,
    TXN_STATUS,
    UNSUBSCRIBE,
    DCIServer,
    Reply,
    free_port,
)
from spp_dci_ibr.exceptions import (
    AuthError,
    ConfigError,
    DCIError,
    DCITimeoutError,
    HTTPStatusError,
    KeyFormatError,
    ProtocolError,
    RegistryError,
    SignatureError,
    TransportError,
)

TESTS = Path(__file__).resolve().parent
SENDER = "spp.test"
KEY_ID = "spp-key-1"
HEADER_KEYS = {
    "version",
    "message_id",
    "message_ts",
    "action",
    "sender_id",
    "receiver_id",
    "total_count",
    "is_msg_encrypted",
    "meta",
}
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def key() -> dci.SigningKey:
    return dci.SigningKey.generate("ed25519")


@pytest.fixture
def server(key: dci.SigningKey) -> Iterator[DCIServer]:
    with DCIServer() as s:
        s.client_public_key = key.public_pem()
        yield s
        assert s.server_errors == []


def client_for(server: DCIServer, key: dci.SigningKey, **kw: Any) -> dci.DCIClient:
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "sender_id": SENDER,
        "signing_key": key,
        "key_id": KEY_ID,
        "registry_keys": server.public_pem(),
        "timeout": 5.0,
        "backoff": 0.01,
    }
    if kw.get("unsigned"):
        del args["signing_key"], args["key_id"]
    args.update(kw)
    return dci.DCIClient(**args)


@pytest.fixture
def client(server: DCIServer, key: dci.SigningKey) -> dci.DCIClient:
    return client_for(server, key)


def oauth_client(
    server: DCIServer, key: dci.SigningKey, client_id: str | None = None, **kw: Any
) -> dci.DCIClient:
    """An OAuth2 client with credentials the server knows (a fresh client id per call: the token
    cache is process-wide)."""
    client_id = client_id or f"spp-{uuid.uuid4().hex[:10]}"
    secret = f"secret-{uuid.uuid4().hex}"
    server.add_client(client_id, secret)
    server.require_token = True
    kw.setdefault("client_secret", secret)
    return client_for(
        server, key, auth="oauth2", token_url=server.token_url, client_id=client_id, **kw
    )


# ---- every call ------------------------------------------------------------------------------


def test_search_by_id_sends_one_signed_item_and_returns_its_records(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.records["NID-1"] = [{"name": "Zoë"}]
    item = client.search_by_id("NID", "NID-1")

    (req,) = server.received(SYNC_SEARCH)
    assert req.sig_outcome == "valid"
    assert req.headers["content-type"] == "application/json"
    msg = req.message
    (sent,) = msg["search_request"]
    assert sent["search_criteria"]["query_type"] == "idtype-value"
    assert sent["search_criteria"]["query"] == {"type": "NID", "value": "NID-1"}
    assert sent["search_criteria"]["reg_type"] == "ns:org:RegistryType:IBR"
    assert sent["search_criteria"]["pagination"] == {"page_size": 10, "page_number": 1}
    assert TS.match(sent["timestamp"])
    assert item["status"] == "succ"
    assert item["records"] == [{"name": "Zoë"}]
    assert item["reference_id"] == sent["reference_id"]
    assert item["transaction_id"] == msg["transaction_id"]
    assert item["message_id"] == req.message_id


def test_sync_request_header_has_exactly_the_protocol_keys_and_no_sender_uri(
    server: DCIServer, key: dci.SigningKey
) -> None:
    # A sync call has no callback: sender_uri is omitted (never null), even with one configured.
    c = client_for(server, key, callback_uri="https://spp.example.org/dci/on-search")
    c.search_by_id("NID", "1")
    c.search_batch([("idtype-value", {"type": "NID", "value": str(i)}) for i in range(3)])
    first, batch = server.received(SYNC_SEARCH)
    for req, count in ((first, 1), (batch, 3)):
        h = req.header
        assert set(h) == HEADER_KEYS
        assert h["version"] == "1.0.0"
        assert uuid.UUID(h["message_id"]).version == 4
        assert TS.match(h["message_ts"]), h["message_ts"]
        sent_at = calendar.timegm(time.strptime(h["message_ts"], "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(sent_at - time.time()) < 120  # UTC, now
        assert h["action"] == "search"
        assert h["sender_id"] == SENDER
        assert h["receiver_id"] == "127.0.0.1"  # derived from the base URL's host
        assert h["total_count"] == count == len(req.message["search_request"])
        assert h["is_msg_encrypted"] is False
        assert h["meta"] == {}
    assert first.message_id != batch.message_id


def test_receiver_id_and_missing_callback_uri(server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(server, key, receiver_id="ibr.gov")
    assert c.receiver_id == "ibr.gov"
    assert c.callback_uri is None
    c.search_by_id("NID", "1")
    h = server.received(SYNC_SEARCH)[0].header
    assert h["receiver_id"] == "ibr.gov"
    assert "sender_uri" not in h


def test_null_sender_uri_is_an_opt_in_for_peers_that_hash_null_keys(
    server: DCIServer, key: dci.SigningKey
) -> None:
    c = client_for(server, key, null_sender_uri=True)
    c.search_by_id("NID", "1")
    c.search_async("idtype-value", {"type": "NID", "value": "1"})
    sync, asynchronous = server.received()
    assert "sender_uri" in sync.header and sync.header["sender_uri"] is None
    assert sync.sig_outcome == "valid"
    assert asynchronous.header["sender_uri"] is None  # no callback URL configured at all


def test_callback_base_url_gives_each_async_call_its_own_route(
    server: DCIServer, key: dci.SigningKey
) -> None:
    c = client_for(server, key, callback_base_url="https://spp.example.org/dci/")
    assert c.callback_base_url == "https://spp.example.org/dci/" and c.callback_uri is None
    c.search_async("idtype-value", {"type": "NID", "value": "1"})
    c.subscribe({"reg_type": "ns:org:RegistryType:IBR"})
    c.unsubscribe(["sub-1"])
    c.txn_status("txn-1")
    c.search_by_id("NID", "1")
    uris = [r.header.get("sender_uri") for r in server.received()]
    assert uris == [
        "https://spp.example.org/dci/on-search",
        "https://spp.example.org/dci/on-subscribe",
        "https://spp.example.org/dci/on-unsubscribe",
        "https://spp.example.org/dci/txn/on-status",
        None,  # sync: omitted
    ]
    with pytest.raises(ConfigError, match="not both"):
        client_for(server, key, callback_base_url="https://a", callback_uri="https://b")


def test_search_by_expression_and_predicate_pass_the_query_through(
    server: DCIServer, client: dci.DCIClient
) -> None:
    expression = {"person_identifier": {"eq": "X1"}}
    predicates = [{"attribute_name": "birth_date", "operator": "lt", "attribute_value": "2000"}]
    client.search_by_expression(expression, reg_record_type="Member", page_size=5, page_number=2)
    client.search_by_predicate(predicates)
    client.search("idtype-value", {"type": "BRN", "value": "B-7"}, reg_type="ns:org:Other")
    crits = [r.message["search_request"][0]["search_criteria"] for r in server.received()]
    assert crits[0]["query_type"] == "expression"
    assert crits[0]["query"] == expression
    assert crits[0]["reg_record_type"] == "Member"
    assert crits[0]["pagination"] == {"page_size": 5, "page_number": 2}
    assert crits[1]["query_type"] == "predicate"
    assert crits[1]["query"] == predicates
    assert crits[2]["reg_type"] == "ns:org:Other"
    assert all(r.sig_outcome == "valid" for r in server.received())


def test_rejected_item_raises_registry_error_with_its_code(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.item_status["BAD"] = ("rjct", "rjct.reference_id.invalid")
    with pytest.raises(RegistryError) as e:
        client.search_by_id("NID", "BAD")
    assert e.value.code == "rjct.reference_id.invalid"


def test_rejected_message_header_raises_registry_error(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.search_header_status = "rjct"
    with pytest.raises(RegistryError) as e:
        client.search_by_id("NID", "1")
    assert e.value.code == "rjct.search.refused"
    assert "refused the search" in str(e.value)


def test_answer_of_another_transaction_is_a_protocol_error(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.search_mode = {"wrong_txn"}
    with pytest.raises(ProtocolError, match="another transaction"):
        client.search_by_id("NID", "1")


@pytest.mark.parametrize(("ack_status", "http_status"), [("ACK", 200), ("ACK", 202), ("rcvd", 200)])
def test_search_async_returns_the_ack(
    server: DCIServer, key: dci.SigningKey, ack_status: str, http_status: int
) -> None:
    server.ack_status, server.ack_http_status = ack_status, http_status
    c = client_for(server, key, callback_uri="https://spp.example.org/dci")
    ack = c.search_async("idtype-value", {"type": "NID", "value": "1"}, transaction_id="txn-42")
    (req,) = server.received(SEARCH)
    assert req.sig_outcome == "valid"
    assert req.header["sender_uri"] == "https://spp.example.org/dci"
    assert req.header["action"] == "search"
    assert ack["ack_status"] == "ACK"
    assert ack["transaction_id"] == "txn-42" == req.message["transaction_id"]
    assert ack["reference_ids"] == [i["reference_id"] for i in req.message["search_request"]]
    assert ack["message_id"] == req.message_id
    assert uuid.UUID(ack["correlation_id"])
    assert TS.match(ack["timestamp"])


def test_search_async_batch_sends_one_envelope_and_returns_one_ack(
    server: DCIServer, key: dci.SigningKey
) -> None:
    c = client_for(server, key, callback_uri="https://spp.example.org/dci")
    queries = [("idtype-value", {"type": "UIN", "value": f"U-{i}"}) for i in range(3)]
    ack = c.search_async_batch(queries, transaction_id="txn-many")
    (req,) = server.received(SEARCH)
    assert req.sig_outcome == "valid"
    assert req.header["total_count"] == 3
    items = req.message["search_request"]
    assert [i["search_criteria"]["query"]["value"] for i in items] == ["U-0", "U-1", "U-2"]
    assert ack["ack_status"] == "ACK"
    assert ack["transaction_id"] == "txn-many" == req.message["transaction_id"]
    assert ack["reference_ids"] == [i["reference_id"] for i in items]
    assert len(set(ack["reference_ids"])) == 3
    with pytest.raises(TypeError, match="query_type"):
        c.search_async_batch([42])


@pytest.mark.parametrize("status", ["NACK", "ERR"])
def test_nack_and_err_acks_raise_registry_error_with_code(
    server: DCIServer, client: dci.DCIClient, status: str
) -> None:
    server.ack_status = status
    server.ack_error = {"code": "err.sender_id.invalid", "message": "unknown sender"}
    for call in (
        lambda: client.search_async("idtype-value", {"type": "NID", "value": "1"}),
        lambda: client.subscribe({"reg_type": "x"}),
        lambda: client.unsubscribe(["S-1"]),
        lambda: client.txn_status("t-1"),
    ):
        with pytest.raises(RegistryError) as e:
            call()
        assert e.value.code == "err.sender_id.invalid"
        assert "unknown sender" in str(e.value)
    # a sync call answered HTTP 200 with an ACK of this status
    ack = {"ack_status": status, "error": {"code": "err.x", "message": "refused"}}
    server.queue(SYNC_SEARCH, Reply(200, {"message": ack}))
    with pytest.raises(RegistryError) as e:
        client.search_by_id("NID", "1")
    assert e.value.code == "err.x"


def test_subscribe_and_unsubscribe(server: DCIServer, client: dci.DCIClient) -> None:
    one = client.subscribe({"reg_type": "ns:org:RegistryType:IBR", "frequency": "daily"})
    two = client.subscribe([{"reg_type": "a"}, {"reg_type": "b"}], transaction_id="txn-s")
    gone = client.unsubscribe(["SUB-1", "SUB-2", "SUB-3"])
    r1, r2 = server.received(SUBSCRIBE)
    (r3,) = server.received(UNSUBSCRIBE)
    assert r1.header["action"] == r2.header["action"] == "subscribe"
    assert r1.header["total_count"] == 1 and len(r1.message["subscribe_request"]) == 1
    assert r1.message["subscribe_request"][0]["subscribe_criteria"]["frequency"] == "daily"
    assert r2.header["total_count"] == 2 and r2.message["transaction_id"] == "txn-s"
    assert two["reference_ids"] == [i["reference_id"] for i in r2.message["subscribe_request"]]
    assert r3.header["action"] == "unsubscribe"
    assert r3.message["subscription_codes"] == ["SUB-1", "SUB-2", "SUB-3"]
    assert r3.header["total_count"] == 3
    assert one["ack_status"] == two["ack_status"] == gone["ack_status"] == "ACK"
    assert all(r.sig_outcome == "valid" for r in (r1, r2, r3))


def test_txn_status_async_and_sync(server: DCIServer, client: dci.DCIClient) -> None:
    ack = client.txn_status("txn-old")
    by_refs = client.txn_status(reference_ids=["r-1", "r-2"], txn_type="subscribe")
    answer = client.txn_status(correlation_id="corr-9", sync=True)
    a1, a2 = server.received(TXN_STATUS)
    (s1,) = server.received(SYNC_TXN_STATUS)
    assert a1.header["action"] == "txn-status"
    req = a1.message["txnstatus_request"]
    assert (req["attribute_type"], req["attribute_value"], req["txn_type"]) == (
        "transaction_id",
        "txn-old",
        "search",
    )
    req = a2.message["txnstatus_request"]
    assert (req["attribute_type"], req["attribute_value"], req["txn_type"]) == (
        "reference_id_list",
        ["r-1", "r-2"],
        "subscribe",
    )
    assert s1.message["txnstatus_request"]["attribute_value"] == "corr-9"
    assert ack["ack_status"] == by_refs["ack_status"] == "ACK"
    assert answer["transaction_id"] == s1.message["transaction_id"]
    assert answer["txnstatus_response"]["txn_status"]["transaction_id"] == "corr-9"
    with pytest.raises(ValueError, match="exactly one"):
        client.txn_status()
    with pytest.raises(ValueError, match="exactly one"):
        client.txn_status("t", correlation_id="c")


@pytest.mark.parametrize("bare", [False, True], ids=["enveloped", "bare"])
def test_enrolled(server: DCIServer, key: dci.SigningKey, bare: bool) -> None:
    # A bare answer (no envelope) can only be read unverified, as an explicit opt-in.
    client = client_for(
        server, key, **({"registry_keys": None, "accept_unverified_answers": True} if bare else {})
    )
    server.enrolled_bare = bare
    server.enrolled_ids = {"NID-9"}
    yes = client.enrolled("NID", "NID-9", programme_id="PRG-1", response_entity="Member")
    no = client.enrolled("NID", "NID-0")
    r1, r2 = server.received(ENROLLED)
    assert r1.sig_outcome == "valid"
    crit = r1.message["enrolled_criteria"]
    assert crit["response_entity"] == "Member"
    assert crit["query"]["person_identifier"] == {"eq": "NID-9"}
    assert crit["query"]["programme_identifier.program.programme_identifier"] == {"eq": "PRG-1"}
    assert (
        "programme_identifier.program.programme_identifier"
        not in r2.message["enrolled_criteria"]["query"]
    )
    assert yes["enrolled_response"][0]["enrolled_status"] == "yes"
    assert no["enrolled_response"][0]["enrolled_status"] == "no"
    assert yes["transaction_id"] == r1.message["transaction_id"]


def test_enrolled_answered_with_an_ack_is_a_protocol_error(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.queue(ENROLLED, Reply(body={"message": {"ack_status": "ACK", "correlation_id": "c"}}))
    with pytest.raises(ProtocolError, match="ACK"):
        client.enrolled("NID", "1")


def test_enrollment_updates(server: DCIServer, client: dci.DCIClient) -> None:
    people = [{"reference_id": "b-1", "name": "Ana"}, {"reference_id": "b-2", "name": "Zoë"}]
    answer = client.enrollment_updates(people)
    (req,) = server.received(ENROLLMENT_UPDATES)
    assert req.sig_outcome == "valid"
    # The spec's callback-style header for this call: action "notify", a status, no sender_uri.
    assert req.header["action"] == "notify"
    assert req.header["status"] == "succ"
    assert "sender_uri" not in req.header
    assert req.header["total_count"] == 2 == req.header["completed_count"]
    assert req.message["enrolled_updates"]["beneficiaries"] == people
    assert [r["reference_id"] for r in answer["enrolled_response"]] == ["b-1", "b-2"]
    with pytest.raises(TypeError):
        client.enrollment_updates({"not": "a list"})  # type: ignore[arg-type]


# ---- batches ---------------------------------------------------------------------------------


def batch_queries(n: int) -> list[tuple[str, dict[str, str]]]:
    return [("idtype-value", {"type": "NID", "value": f"V{i}"}) for i in range(n)]


@pytest.fixture
def batch_server(server: DCIServer) -> DCIServer:
    for i in range(4):
        server.records[f"V{i}"] = [{"id": f"V{i}"}]
    return server


def test_batch_is_one_envelope_mapped_by_reference_id(
    batch_server: DCIServer, client: dci.DCIClient
) -> None:
    batch_server.search_mode = {"reverse"}
    items = client.search_batch(batch_queries(4))
    (req,) = batch_server.received(SYNC_SEARCH)
    assert req.header["total_count"] == 4
    refs = [i["reference_id"] for i in req.message["search_request"]]
    assert [i["reference_id"] for i in items] == refs
    assert [i["records"] for i in items] == [[{"id": f"V{i}"}] for i in range(4)]
    assert [i["status"] for i in items] == ["succ"] * 4


def test_batch_item_not_answered_is_missing(batch_server: DCIServer, client: dci.DCIClient) -> None:
    batch_server.search_mode = {"drop_last"}
    items = client.search_batch(batch_queries(3))
    assert [i["status"] for i in items] == ["succ", "succ", "missing"]
    assert items[2]["records"] is None  # never an empty list: nothing was answered
    assert [i["records"] for i in items[:2]] == [[{"id": "V0"}], [{"id": "V1"}]]


@pytest.mark.parametrize(
    "modes", [{"no_refs"}, {"no_refs", "drop_last"}, {"wrong_refs"}, {"no_refs", "reverse"}]
)
def test_batch_items_are_matched_by_reference_id_only(
    batch_server: DCIServer, client: dci.DCIClient, modes: set[str]
) -> None:
    """Several identifiers: items without (or with foreign) reference_ids cannot be matched,
    not even by position; a single identifier takes an item without reference_id."""
    batch_server.search_mode = modes
    with pytest.raises(ProtocolError, match="reference_id"):
        client.search_batch(batch_queries(3))
    if modes == {"no_refs"}:
        assert client.search_batch(batch_queries(1))[0]["records"] == [{"id": "V0"}]


def test_batch_keeps_each_items_status(batch_server: DCIServer, client: dci.DCIClient) -> None:
    batch_server.item_status["V1"] = ("rjct", "rjct.id.invalid")
    batch_server.item_status["V2"] = ("pdng", None)
    criteria = {
        "version": "1.0.0",
        "reg_type": "ns:org:RegistryType:IBR",
        "query_type": "idtype-value",
        "query": {"type": "NID", "value": "V3"},
    }
    items = client.search_batch([*batch_queries(3), criteria])
    assert [i["status"] for i in items] == ["succ", "rjct", "pdng", "succ"]
    assert items[1]["reason_code"] == "rjct.id.invalid"
    assert items[3]["records"] == [{"id": "V3"}]
    sent = batch_server.received(SYNC_SEARCH)[0].message["search_request"][3]
    assert sent["search_criteria"] == criteria


def test_records_given_as_a_bare_list_are_read(
    batch_server: DCIServer, client: dci.DCIClient
) -> None:
    batch_server.search_mode = {"bare_list"}
    assert client.search_by_id("NID", "V1")["records"] == [{"id": "V1"}]


# ---- authentication --------------------------------------------------------------------------


def test_auth_none_sends_no_authorization(server: DCIServer, client: dci.DCIClient) -> None:
    client.search_by_id("NID", "1")
    assert server.received()[0].authorization is None


def test_bearer_sends_the_static_token(server: DCIServer, key: dci.SigningKey) -> None:
    server.require_token = True
    server.bearer_tokens = {"static-token-123"}
    c = client_for(server, key, auth="bearer", bearer_token="static-token-123")
    c.search_by_id("NID", "1")
    c.check_auth()  # no-op for a static token
    assert [r.authorization for r in server.received()] == ["Bearer static-token-123"]
    assert server.token_fetches == 0


def test_bearer_refused_is_auth_error_without_renewal(
    server: DCIServer, key: dci.SigningKey
) -> None:
    server.require_token = True
    c = client_for(server, key, auth="bearer", bearer_token="revoked-token")
    with pytest.raises(AuthError) as e:
        c.search_by_id("NID", "1")
    assert e.value.status == 401
    assert len(server.received(SYNC_SEARCH)) == 1
    assert server.token_fetches == 0


@pytest.mark.parametrize("location", ["body", "basic", "query"])
def test_oauth2_credentials_location(server: DCIServer, key: dci.SigningKey, location: str) -> None:
    c = oauth_client(server, key, credentials_location=location, scope="dci.search")
    c.search_by_id("NID", "1")
    (tok,) = server.token_requests
    assert tok["location"] == location
    assert tok["grant_type"] == "client_credentials"
    assert tok["scope"] == "dci.search"
    assert tok["content_type"] == "application/x-www-form-urlencoded"
    token_req = server.received("/oauth2/client/token")[0]
    raw = token_req.raw.decode()
    if location == "body":
        assert "client_secret=" in raw and token_req.authorization is None
    elif location == "basic":
        assert "client_secret" not in raw and token_req.authorization.startswith("Basic ")
    else:
        assert "client_secret" not in raw and "client_secret" in token_req.query
    (req,) = server.received(SYNC_SEARCH)
    assert req.authorization == f"Bearer {server.issued_tokens[0]}"


def test_oauth2_token_is_cached_across_calls_and_clients(
    server: DCIServer, key: dci.SigningKey
) -> None:
    first = oauth_client(server, key, client_id="shared-client", scope="s1")
    secret = server.clients["shared-client"]
    first.search_by_id("NID", "1")
    first.search_by_id("NID", "2")
    second = client_for(
        server,
        key,
        auth="oauth2",
        token_url=server.token_url,
        client_id="shared-client",
        client_secret=secret,
        scope="s1",
    )
    second.search_by_id("NID", "3")
    second.check_auth()
    assert server.token_fetches == 1
    tokens = {r.authorization for r in server.received(SYNC_SEARCH)}
    assert tokens == {f"Bearer {server.issued_tokens[0]}"}
    # another scope is another cache entry
    third = client_for(
        server,
        key,
        auth="oauth2",
        token_url=server.token_url,
        client_id="shared-client",
        client_secret=secret,
        scope="s2",
    )
    third.search_by_id("NID", "4")
    assert server.token_fetches == 2


@pytest.mark.parametrize(("expires_in", "fetches"), [("3600", 1), (3600.0, 1), (30, 2), (None, 1)])
def test_oauth2_expires_in_and_early_refresh(
    server: DCIServer, key: dci.SigningKey, expires_in: Any, fetches: int
) -> None:
    server.token_expires_in = expires_in
    c = oauth_client(server, key)
    c.search_by_id("NID", "1")
    c.search_by_id("NID", "2")
    # a token valid for less than the 60 s refresh margin is fetched again for each call
    assert server.token_fetches == fetches


def test_oauth2_unreadable_expires_in_is_a_protocol_error(
    server: DCIServer, key: dci.SigningKey
) -> None:
    server.token_expires_in = "soon"
    with pytest.raises(ProtocolError, match="expires_in"):
        oauth_client(server, key).check_auth()


def test_401_renews_the_token_and_resends_once_with_a_new_envelope(
    server: DCIServer, key: dci.SigningKey
) -> None:
    c = oauth_client(server, key)
    c.search_by_id("NID", "1")
    server.revoke_tokens()  # the registry forgets the token the client holds
    server.records["NID-2"] = [{"ok": True}]
    item = c.search_by_id("NID", "NID-2")
    assert item["records"] == [{"ok": True}]
    assert server.token_fetches == 2
    _, refused, resent = server.received(SYNC_SEARCH)
    first_token, second_token = server.tokens_ever
    assert refused.authorization == f"Bearer {first_token}"
    assert resent.authorization == f"Bearer {second_token}"
    assert refused.message_id != resent.message_id
    assert refused.signature != resent.signature
    assert refused.sig_outcome == resent.sig_outcome == "valid"
    assert refused.message == resent.message
    assert item["message_id"] == resent.message_id


def test_401_after_renewal_is_auth_error(server: DCIServer, key: dci.SigningKey) -> None:
    c = oauth_client(server, key)
    gone = {"errors": [{"code": "err.auth.expired", "message": "token expired"}]}
    server.queue(SYNC_SEARCH, Reply(401, gone), Reply(401, gone), Reply(401, gone))
    with pytest.raises(AuthError) as e:
        c.search_by_id("NID", "1")
    assert e.value.status == 401
    assert e.value.code == "err.auth.expired"
    assert len(server.received(SYNC_SEARCH)) == 2
    assert server.token_fetches == 2


def test_bad_client_credentials_are_auth_error(server: DCIServer, key: dci.SigningKey) -> None:
    c = oauth_client(server, key, client_secret="wrong-secret")
    with pytest.raises(AuthError) as e:
        c.check_auth()
    assert e.value.status == 401
    assert e.value.code == "invalid_client"
    with pytest.raises(AuthError):
        c.search_by_id("NID", "1")
    assert server.received(SYNC_SEARCH) == []


def test_one_token_fetch_at_a_time(server: DCIServer, key: dci.SigningKey) -> None:
    server.route_delay["/oauth2/client/token"] = 0.3
    c = oauth_client(server, key)
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def call(i: int) -> None:
        barrier.wait()
        results.append(c.search_by_id("NID", str(i)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 4
    assert server.token_fetches == 1
    assert {r.authorization for r in server.received(SYNC_SEARCH)} == {
        f"Bearer {server.tokens_ever[0]}"
    }


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_without_oauth_are_auth_errors(
    server: DCIServer, client: dci.DCIClient, status: int
) -> None:
    body = {"errors": [{"code": "err.sender.forbidden", "message": "not allowed"}]}
    server.queue(SYNC_SEARCH, Reply(status, body))
    with pytest.raises(AuthError) as e:
        client.search_by_id("NID", "1")
    assert (e.value.status, e.value.code) == (status, "err.sender.forbidden")
    assert len(server.received(SYNC_SEARCH)) == 1


# ---- signed answers --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["pem", "jwk", "jwks"])
def test_signed_answer_is_verified_with_configured_keys(
    server: DCIServer, key: dci.SigningKey, form: str
) -> None:
    keys: Any = {
        "pem": server.public_pem(),
        "jwk": server.jwks()["keys"][0],
        "jwks": dci.JWKS.from_json(server.jwks()),
    }[form]
    server.records["1"] = [{"v": 1}]
    c = client_for(server, key, registry_keys=keys)
    assert c.search_by_id("NID", "1")["records"] == [{"v": 1}]
    server.answer_signature = "bad"
    with pytest.raises(SignatureError):
        c.search_by_id("NID", "1")


@pytest.mark.parametrize(
    ("mode", "outcome"), [("bad", "invalid"), ("foreign", "invalid"), ("expired", "expired")]
)
def test_bad_answer_signature_is_signature_error(
    server: DCIServer, client: dci.DCIClient, mode: str, outcome: str
) -> None:
    server.records["1"] = [{"v": 1}]
    server.queue(SYNC_SEARCH, Reply(signature=mode))
    with pytest.raises(SignatureError, match=outcome):
        client.search_by_id("NID", "1")
    for call, path in (
        (lambda: client.enrolled("NID", "1"), ENROLLED),
        (lambda: client.txn_status("t", sync=True), SYNC_TXN_STATUS),
        (lambda: client.enrollment_updates([{"x": 1}]), ENROLLMENT_UPDATES),
    ):
        server.queue(path, Reply(signature=mode))
        with pytest.raises(SignatureError):
            call()


def test_unsigned_answer_is_refused_when_keys_are_configured(
    server: DCIServer, key: dci.SigningKey
) -> None:
    server.answer_signature = "none"
    server.records["1"] = [{"v": 1}]
    with pytest.raises(SignatureError, match="not signed"):
        client_for(server, key).search_by_id("NID", "1")
    # without registry keys nothing can be verified: read only as an explicit opt-in
    with pytest.raises(ConfigError):
        client_for(server, key, registry_keys=None).search_by_id("NID", "1")
    opted = client_for(server, key, registry_keys=None, accept_unverified_answers=True)
    assert opted.search_by_id("NID", "1")["records"] == [{"v": 1}]


def test_answer_whose_sender_is_not_the_kids_sender_is_refused(
    server: DCIServer, key: dci.SigningKey
) -> None:
    c = client_for(server, key, registry_keys=dci.JWKS.from_json(server.jwks()))
    c.search_by_id("NID", "1")
    server.queue(SYNC_SEARCH, Reply(signature="other_sender"))
    with pytest.raises(SignatureError):
        c.search_by_id("NID", "1")


def test_jwks_url_is_fetched_once_and_cached(server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(
        server,
        key,
        registry_keys=None,
        registry_jwks_url=server.jwks_url,
        allow_insecure_jwks=True,
    )
    c.search_by_id("NID", "1")
    c.search_by_id("NID", "2")
    assert server.jwks_fetches == 1
    server.answer_signature = "foreign"
    with pytest.raises(SignatureError):
        c.search_by_id("NID", "3")


def test_unknown_kid_refetches_the_jwks(server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(
        server,
        key,
        registry_keys=None,
        registry_jwks_url=server.jwks_url,
        allow_insecure_jwks=True,
    )
    c.search_by_id("NID", "1")
    assert server.jwks_fetches == 1
    server.rotate_key("reg-2")  # the registry rotates: new kid, JWKS serves only the new key
    server.records["2"] = [{"after": "rotation"}]
    assert c.search_by_id("NID", "2")["records"] == [{"after": "rotation"}]
    assert server.jwks_fetches == 2


def test_jwks_url_must_be_https_unless_allowed(server: DCIServer, key: dci.SigningKey) -> None:
    with pytest.raises(ConfigError, match="https"):
        client_for(server, key, registry_keys=None, registry_jwks_url=server.jwks_url)
    with pytest.raises(ConfigError, match="not both"):
        client_for(
            server,
            key,
            registry_jwks_url=server.jwks_url,
            allow_insecure_jwks=True,
        )


def test_jwks_fetch(server: DCIServer) -> None:
    jwks = dci.JWKS.fetch(server.jwks_url, allow_http=True)
    assert jwks.kids == [server.kid]
    with pytest.raises(ConfigError):
        dci.JWKS.fetch(server.jwks_url)
    with pytest.raises(HTTPStatusError) as e:
        dci.JWKS.fetch(server.base_url + "/nowhere.json", allow_http=True)
    assert e.value.status == 404


# ---- error answers ---------------------------------------------------------------------------

ERROR_SHAPES = [
    pytest.param(
        400,
        {"message": {"ack_status": "ERR", "error": {"code": "err.request.bad", "message": "bad"}}},
        "err.request.bad",
        "bad",
        id="dci-err-ack",
    ),
    pytest.param(
        500,
        {"errors": [{"code": "err.internal", "message": "registry down"}]},
        "err.internal",
        "registry down",
        id="errors-list",
    ),
    pytest.param(
        422,
        {"detail": {"code": "err.query.invalid", "message": "bad query"}},
        "err.query.invalid",
        "bad query",
        id="detail-object",
    ),
    pytest.param(404, {"detail": "Not Found"}, None, "Not Found", id="detail-string"),
    pytest.param(
        422,
        {"detail": [{"loc": ["body"], "msg": "field required"}]},
        None,
        "field required",
        id="detail-list",
    ),
    pytest.param(502, b"<html>Bad Gateway</html>", None, "502", id="html"),
]


@pytest.mark.parametrize(("status", "body", "code", "text"), ERROR_SHAPES)
def test_error_bodies_become_http_status_errors(
    server: DCIServer,
    client: dci.DCIClient,
    status: int,
    body: Any,
    code: str | None,
    text: str,
) -> None:
    server.queue(SYNC_SEARCH, Reply(status, body))
    with pytest.raises(HTTPStatusError) as e:
        client.search_by_id("NID", "1")
    assert e.value.status == status
    assert e.value.code == code
    assert text in str(e.value)
    assert len(server.received(SYNC_SEARCH)) == 1  # none of these is retried


def test_redirect_is_not_followed(server: DCIServer, key: dci.SigningKey) -> None:
    c = oauth_client(server, key)
    elsewhere = server.base_url + "/elsewhere"
    server.queue(SYNC_SEARCH, Reply(302, {"detail": "moved"}, headers={"Location": elsewhere}))
    with pytest.raises(HTTPStatusError) as e:
        c.search_by_id("NID", "1")
    assert e.value.status == 302
    assert [r.path for r in server.received() if r.path != "/oauth2/client/token"] == [SYNC_SEARCH]


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b"[1, 2]", b'{"hello": "world"}', b"\xff\xfe", b'{"transaction_id": "t"}'],
    ids=["text", "array", "other-object", "binary", "bare-message"],
)
def test_non_dci_body_is_a_protocol_error(
    server: DCIServer, client: dci.DCIClient, body: bytes
) -> None:
    server.queue(SYNC_SEARCH, Reply(200, body, content_type="text/plain"))
    # a bare message is refused before it is read: it cannot be verified
    with pytest.raises(SignatureError if body.startswith(b'{"tr') else ProtocolError):
        client.search_by_id("NID", "1")


def test_answer_larger_than_the_limit_is_a_protocol_error(
    server: DCIServer, key: dci.SigningKey
) -> None:
    server.records["1"] = [{"blob": "x" * 5000}]
    c = client_for(server, key, max_response_bytes=2000)
    with pytest.raises(ProtocolError, match="larger"):
        c.search_by_id("NID", "1")


def test_timeout_is_dci_timeout_error(server: DCIServer, key: dci.SigningKey) -> None:
    server.route_delay[SYNC_SEARCH] = 1.0
    c = client_for(server, key, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(DCITimeoutError) as e:
        c.search_by_id("NID", "1")
    assert time.monotonic() - start < 0.9
    assert isinstance(e.value, TimeoutError)
    assert isinstance(e.value, TransportError)
    assert len(server.received(SYNC_SEARCH)) == 1  # a timeout is not retried


def test_connection_refused_is_transport_error(key: dci.SigningKey) -> None:
    c = dci.DCIClient(
        base_url=f"http://127.0.0.1:{free_port()}",
        sender_id=SENDER,
        signing_key=key,
        key_id=KEY_ID,
        registry_keys=key.public_pem(),
        max_retries=1,
        backoff=0.01,
    )
    with pytest.raises(TransportError) as e:
        c.search_by_id("NID", "1")
    assert not isinstance(e.value, DCITimeoutError)
    assert "connect" in str(e.value)


# ---- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried_with_fresh_envelopes(
    server: DCIServer, key: dci.SigningKey, status: int
) -> None:
    busy = Reply(status, {"detail": "busy"}, headers={"Retry-After": "0"})
    server.queue(SYNC_SEARCH, busy, busy)
    server.records["1"] = [{"v": 1}]
    c = client_for(server, key, max_retries=2)
    assert c.search_by_id("NID", "1")["records"] == [{"v": 1}]
    attempts = server.received(SYNC_SEARCH)
    assert len(attempts) == 3
    assert len({a.message_id for a in attempts}) == 3
    assert len({a.signature for a in attempts}) == 3
    assert all(a.sig_outcome == "valid" for a in attempts)
    assert len({json.dumps(a.message, sort_keys=True) for a in attempts}) == 1


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_are_bounded(server: DCIServer, key: dci.SigningKey, max_retries: int) -> None:
    busy = Reply(503, {"errors": [{"code": "err.busy", "message": "busy"}]})
    server.queue(SYNC_SEARCH, *[busy] * 10)
    c = client_for(server, key, max_retries=max_retries)
    with pytest.raises(HTTPStatusError) as e:
        c.search_by_id("NID", "1")
    assert (e.value.status, e.value.code) == (503, "err.busy")
    assert len(server.received(SYNC_SEARCH)) == max_retries + 1


def test_retry_after_is_honoured(server: DCIServer, key: dci.SigningKey) -> None:
    server.queue(SYNC_SEARCH, Reply(429, {"detail": "slow down"}, headers={"Retry-After": "1"}))
    c = client_for(server, key, max_retries=1)
    start = time.monotonic()
    c.search_by_id("NID", "1")
    assert time.monotonic() - start >= 0.95
    assert len(server.received(SYNC_SEARCH)) == 2


@pytest.mark.parametrize("status", [400, 404])
def test_no_retry_on_other_4xx(server: DCIServer, key: dci.SigningKey, status: int) -> None:
    server.queue(SYNC_SEARCH, *[Reply(status, {"detail": "no"})] * 3)
    with pytest.raises(HTTPStatusError):
        client_for(server, key, max_retries=3).search_by_id("NID", "1")
    assert len(server.received(SYNC_SEARCH)) == 1


def test_dropped_connection_is_retried_with_a_fresh_envelope(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.queue(SYNC_SEARCH, Reply(drop=True))
    server.records["1"] = [{"v": 1}]
    assert client.search_by_id("NID", "1")["records"] == [{"v": 1}]
    dropped, resent = server.received(SYNC_SEARCH)
    assert dropped.message_id != resent.message_id


# ---- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(key: dci.SigningKey) -> Iterator[DCIServer]:
    with DCIServer(tls=True) as s:
        s.client_public_key = key.public_pem()
        s.records["1"] = [{"tls": True}]
        yield s


def test_tls_is_verified_by_default(tls_server: DCIServer, key: dci.SigningKey) -> None:
    before = len(tls_server.received())
    with pytest.raises(TransportError) as e:
        client_for(tls_server, key, max_retries=0).search_by_id("NID", "1")
    assert not isinstance(e.value, DCITimeoutError)
    assert len(tls_server.received()) == before  # no request got through


def test_tls_with_the_ca_bundle(tls_server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(tls_server, key, ca_bundle=tls_server.ca_path)
    assert c.search_by_id("NID", "1")["records"] == [{"tls": True}]
    assert tls_server.received(SYNC_SEARCH)[-1].sig_outcome == "valid"


def test_tls_without_verification(tls_server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(tls_server, key, verify_tls=False)
    assert c.search_by_id("NID", "1")["records"] == [{"tls": True}]


def test_tls_oauth2_and_jwks_over_https(tls_server: DCIServer, key: dci.SigningKey) -> None:
    c = oauth_client(
        tls_server,
        key,
        ca_bundle=tls_server.ca_path,
        registry_keys=None,
        registry_jwks_url=tls_server.jwks_url,
    )
    try:
        assert c.search_by_id("NID", "1")["records"] == [{"tls": True}]
    finally:
        tls_server.require_token = False


def test_ca_bundle_must_be_a_readable_pem(
    tmp_path: Path, server: DCIServer, key: dci.SigningKey
) -> None:
    with pytest.raises(ConfigError, match="ca_bundle"):
        client_for(server, key, ca_bundle=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_bundle"):
        client_for(server, key, ca_bundle=str(junk))


# ---- paths -----------------------------------------------------------------------------------


def test_registry_under_a_path_prefix(key: dci.SigningKey) -> None:
    with DCIServer(prefix="/ibr") as s:
        s.client_public_key = key.public_pem()
        s.records["1"] = [{"v": 1}]
        c = client_for(s, key, paths=s.paths())
        assert c.path("sync_search") == "/ibr/registry/sync/search"
        assert c.search_by_id("NID", "1")["records"] == [{"v": 1}]
        c.search_async("idtype-value", {"type": "NID", "value": "1"})
        c.subscribe({"reg_type": "x"})
        c.unsubscribe(["S"])
        c.txn_status("t")
        c.txn_status("t", sync=True)
        c.enrolled("NID", "1")
        c.enrollment_updates([{"x": 1}])
        assert [r.path for r in s.received()] == [
            "/ibr/registry/sync/search",
            "/ibr/registry/search",
            "/ibr/registry/subscribe",
            "/ibr/registry/unsubscribe",
            "/ibr/registry/txn/status",
            "/ibr/registry/sync/txn/status",
            "/ibr/registry/sync/enrolled",
            "/ibr/registry/sync/enrollment/updates",
        ]
        assert all(r.sig_outcome == "valid" for r in s.received())
        # the same prefix given in the base URL (trailing slash tolerated)
        via_base = client_for(s, key, base_url=s.base_url + "/ibr/")
        assert via_base.search_by_id("NID", "1")["records"] == [{"v": 1}]
        assert s.received()[-1].path == "/ibr/registry/sync/search"
        # default paths miss the prefix: the registry answers 404
        with pytest.raises(HTTPStatusError) as e:
            client_for(s, key).search_by_id("NID", "1")
        assert e.value.status == 404


def test_default_paths(client: dci.DCIClient) -> None:
    assert {
        name: client.path(name)
        for name in (
            "search",
            "sync_search",
            "subscribe",
            "unsubscribe",
            "txn_status",
            "sync_txn_status",
            "enrolled",
            "enrollment_updates",
        )
    } == {
        "search": SEARCH,
        "sync_search": SYNC_SEARCH,
        "subscribe": SUBSCRIBE,
        "unsubscribe": UNSUBSCRIBE,
        "txn_status": TXN_STATUS,
        "sync_txn_status": SYNC_TXN_STATUS,
        "enrolled": ENROLLED,
        "enrollment_updates": ENROLLMENT_UPDATES,
    }
    with pytest.raises(ValueError, match="unknown call"):
        client.path("teleport")


# ---- signing and configuration ---------------------------------------------------------------


def test_unsigned_sends_an_empty_signature(server: DCIServer, key: dci.SigningKey) -> None:
    c = client_for(server, key, unsigned=True)
    c.search_by_id("NID", "1")
    assert server.received()[0].signature == ""
    assert "unsigned" in repr(c)


def test_signing_key_is_required_unless_unsigned_is_explicit(server: DCIServer) -> None:
    with pytest.raises(ConfigError, match="unsigned=True"):
        dci.DCIClient(base_url=server.base_url, sender_id=SENDER)


def test_rs256_signing_key(server: DCIServer) -> None:
    rsa = dci.SigningKey.generate("rs256")
    server.client_public_key = rsa.public_pem()
    c = client_for(server, rsa)
    c.search_by_id("NID", "1")
    req = server.received()[0]
    assert req.sig_outcome == "valid"
    assert f'kidId="{SENDER}|{KEY_ID}|rs256"' in req.signature


CONFIG_ERRORS = [
    ({"base_url": "ftp://registry.example"}, "http or https"),
    ({"base_url": "not a url"}, "not a valid URL"),
    ({"base_url": "https://user:pw@registry.example"}, "credentials"),
    ({"sender_id": ""}, "sender_id"),
    ({"sender_id": "a|b"}, "sender_id"),
    ({"receiver_id": "x\ny"}, "receiver_id"),
    ({"key_id": "k|1"}, "key_id"),
    ({"callback_uri": "ftp://cb"}, "callback_uri"),
    ({"auth": "magic"}, "auth must be"),
    ({"auth": "bearer"}, "bearer_token"),
    ({"auth": "bearer", "bearer_token": ""}, "non-empty token"),
    ({"auth": "oauth2", "client_id": "c", "client_secret": "s"}, "token_url"),
    ({"auth": "oauth2", "token_url": "https://t/token", "client_secret": "s"}, "client_id"),
    ({"auth": "oauth2", "token_url": "https://t/token", "client_id": "c"}, "client_secret"),
    (
        {"auth": "oauth2", "token_url": "ftp://t", "client_id": "c", "client_secret": "s"},
        "token_url",
    ),
    (
        {
            "auth": "oauth2",
            "token_url": "https://t/token",
            "client_id": "c",
            "client_secret": "s",
            "credentials_location": "header",
        },
        "credentials_location",
    ),
    ({"paths": {"teleport": "/x"}}, "unknown path key 'teleport'"),
    ({"paths": {"search": "registry/search"}}, "must start with '/'"),
    ({"unsigned": True, "signing_key": "KEY"}, "not both"),
    ({"key_id": None}, "key_id"),
    ({"max_response_bytes": 0}, "max_response_bytes"),
]


@pytest.mark.parametrize(("changes", "message"), CONFIG_ERRORS)
def test_constructor_validation(key: dci.SigningKey, changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "base_url": "https://registry.example",
        "sender_id": SENDER,
        "signing_key": key,
        "key_id": KEY_ID,
    }
    args.update(changes)
    if args.get("signing_key") == "KEY":
        args["signing_key"] = key
    with pytest.raises(ConfigError, match=re.escape(message)):
        dci.DCIClient(**args)


def test_wrong_python_arguments(key: dci.SigningKey) -> None:
    base = {"base_url": "https://r.example", "sender_id": SENDER, "key_id": KEY_ID}
    with pytest.raises(TypeError):
        dci.DCIClient(**base, signing_key=key.private_pem())
    with pytest.raises(TypeError):
        dci.DCIClient(**base, signing_key=key, registry_keys=42)
    with pytest.raises(KeyFormatError):
        dci.DCIClient(**base, signing_key=key, registry_keys="-----BEGIN PUBLIC KEY-----\nxx")
    with pytest.raises(ValueError, match="timeout"):
        dci.DCIClient(**base, signing_key=key, timeout=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        dci.DCIClient(**base, signing_key=key, connect_timeout=float("nan"))
    with pytest.raises(TypeError):
        dci.DCIClient("https://r.example", sender_id=SENDER)  # type: ignore[misc]


def test_every_error_is_a_dci_error() -> None:
    for cls in (
        AuthError,
        ConfigError,
        DCITimeoutError,
        HTTPStatusError,
        KeyFormatError,
        ProtocolError,
        RegistryError,
        SignatureError,
        TransportError,
    ):
        assert issubclass(cls, DCIError)


# ---- concurrency, fork, construction ---------------------------------------------------------


def test_calls_release_the_gil(server: DCIServer, client: dci.DCIClient) -> None:
    delay = 0.5
    server.route_delay[SYNC_SEARCH] = delay
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def call(i: int) -> None:
        barrier.wait()
        results.append(client.search_by_id("NID", str(i)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - start
    assert len(results) == 2 and all(r["status"] == "succ" for r in results)
    # held GIL: two delays back to back (≥ 1.0 s); released: about one delay
    assert elapsed < 0.85, f"two concurrent calls took {elapsed:.2f} s"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_can_use_the_parents_client(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.records["parent"] = [{"who": "parent"}]
    server.records["child"] = [{"who": "child"}]
    assert client.search_by_id("NID", "parent")["records"] == [{"who": "parent"}]
    pid = os.fork()
    if pid == 0:  # the child: one call, then leave without running pytest's teardown
        code = 1
        try:
            if client.search_by_id("NID", "child")["records"] == [{"who": "child"}]:
                code = 0
        except BaseException:
            code = 2
        os._exit(code)
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0
    assert [
        r.message["search_request"][0]["search_criteria"]["query"]["value"]
        for r in server.received(SYNC_SEARCH)
    ] == ["parent", "child"]
    # and the parent's client still works after the fork
    assert client.search_by_id("NID", "parent")["records"] == [{"who": "parent"}]


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_construction_is_cheap_and_opens_no_connection(key: dci.SigningKey) -> None:
    with DCIServer() as s:
        # How cheap it is, in time, is measured in bench/bench_construction.py.
        threads_before = os_threads() if sys.platform == "linux" else 0
        clients = [
            dci.DCIClient(
                base_url=s.base_url,
                sender_id=SENDER,
                signing_key=key,
                key_id=KEY_ID,
                auth="oauth2",
                token_url=s.token_url,
                client_id=f"c{i}",
                client_secret="s",
                registry_jwks_url=s.jwks_url,
                allow_insecure_jwks=True,
            )
            for i in range(100)
        ]
        assert len(clients) == 100
        assert s.connections == 0
        assert s.received() == []
        if sys.platform == "linux":
            assert os_threads() <= threads_before


# ---- secrets ---------------------------------------------------------------------------------


def test_repr_shows_no_secret(server: DCIServer, key: dci.SigningKey) -> None:
    c = oauth_client(server, key, client_secret="very-secret-value-1")
    b = client_for(server, key, auth="bearer", bearer_token="bearer-secret-value-2")
    for client, secret in ((c, "very-secret-value-1"), (b, "bearer-secret-value-2")):
        text = repr(client)
        assert secret not in text
        assert key.private_pem().splitlines()[1] not in text
        assert server.base_url in text and SENDER in text


def _leak_scenario() -> None:
    """Run in a fresh process (see below): DEBUG logging on from the start, every path that
    handles a secret exercised; prints what a user could see."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger().addHandler(Keep(logging.DEBUG))
    logging.getLogger().setLevel(logging.DEBUG)
    key = dci.SigningKey.generate("ed25519")
    secret, bearer = f"cs-{uuid.uuid4().hex}", f"bt-{uuid.uuid4().hex}"
    seen: list[str] = []
    with DCIServer() as s:
        s.add_client("leak-client", secret)
        s.require_token = True
        s.bearer_tokens = {bearer}
        for location in ("body", "basic", "query"):
            c = dci.DCIClient(
                base_url=s.base_url,
                sender_id=SENDER,
                signing_key=key,
                key_id=KEY_ID,
                auth="oauth2",
                token_url=s.token_url,
                client_id="leak-client",
                client_secret=secret,
                scope=location,
                credentials_location=location,
                registry_keys=s.public_pem(),
                backoff=0.01,
            )
            seen.append(repr(c))
            c.search_by_id("NID", "1")
            s.revoke_tokens()
            c.search_by_id("NID", "2")  # 401, renewal, resend
            s.queue(SYNC_SEARCH, Reply(401, {"detail": "no"}), Reply(401, {"detail": "no"}))
            try:
                c.search_by_id("NID", "3")
            except DCIError as e:
                seen.append(str(e))
            bad = dci.DCIClient(
                base_url=s.base_url,
                sender_id=SENDER,
                signing_key=key,
                key_id=KEY_ID,
                auth="oauth2",
                token_url=s.token_url,
                client_id="leak-client",
                client_secret=secret + "-wrong",
                credentials_location=location,
                registry_keys=s.public_pem(),
            )
            try:
                bad.search_by_id("NID", "1")
            except DCIError as e:
                seen.append(str(e))
            refused = dci.DCIClient(
                base_url=s.base_url,
                sender_id=SENDER,
                signing_key=key,
                key_id=KEY_ID,
                auth="oauth2",
                token_url=f"http://127.0.0.1:{free_port()}/token",
                client_id="leak-client",
                client_secret=secret,
                credentials_location=location,
                max_retries=0,
            )
            try:
                refused.check_auth()
            except DCIError as e:
                seen.append(str(e))
        b = dci.DCIClient(
            base_url=s.base_url,
            sender_id=SENDER,
            signing_key=key,
            key_id=KEY_ID,
            auth="bearer",
            bearer_token=bearer,
            registry_keys=s.public_pem(),
        )
        seen.append(repr(b))
        b.search_by_id("NID", "1")
        s.bearer_tokens = set()
        try:
            b.search_by_id("NID", "1")
        except DCIError as e:
            seen.append(str(e))
        tokens = list(s.tokens_ever) + [
            r.authorization[7:]
            for r in s.received()
            if r.authorization and r.authorization.startswith("Bearer ")
        ]
    print(
        json.dumps(
            {
                "secrets": [secret, bearer, *tokens, *key.private_pem().splitlines()[1:-1]],
                "seen": seen,
                "logs": [[r.name, r.getMessage()] for r in records],
            }
        )
    )


def test_no_secret_in_exceptions_or_debug_logs() -> None:
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_client as t; t._leak_scenario()"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    secrets_, seen, logs = report["secrets"], report["seen"], report["logs"]
    assert len(secrets_) > 5
    assert sum("DCIClient(" in s for s in seen) == 4
    assert sum("refused the client credentials" in s for s in seen) == 3  # bad secret
    assert sum("cannot connect" in s for s in seen) == 3  # token endpoint refused
    assert len(seen) == 4 + 3 + 3 + 3 + 1
    ours = [m for name, m in logs if name.startswith("spp_dci_ibr")]
    assert any("message_id=" in m for m in ours), "no DEBUG record of the client was captured"
    assert any("renewing the token" in m for m in ours)
    for text in seen + [m for _, m in logs]:
        for secret in secrets_:
            assert secret not in text, f"a secret leaked into: {text[:200]}"


def test_debug_logging_switched_on_after_the_first_call_is_forwarded(key: dci.SigningKey) -> None:
    """A user (or Odoo's log-level setting) turns DEBUG on after the client was used: the
    client's DEBUG records must reach Python's logging from then on."""
    script = f"""
import logging, sys
sys.path.insert(0, {str(TESTS)!r})
import spp_dci_ibr as dci
from dci_server import DCIServer
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.name)
logging.getLogger().addHandler(Keep(logging.DEBUG))
logging.getLogger().setLevel(logging.WARNING)
key = dci.SigningKey.generate()
with DCIServer() as s:
    c = dci.DCIClient(
        base_url=s.base_url, sender_id="spp.test", signing_key=key, key_id="k",
        registry_keys=s.public_pem(),
    )
    c.search_by_id("NID", "1")
    logging.getLogger().setLevel(logging.DEBUG)
    c.search_by_id("NID", "2")
print(sum(n.startswith("spp_dci_ibr") for n in records))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(out.stdout.strip().splitlines()[-1]) >= 1, "DEBUG records after the switch: none"


# ---- answers bound to their request (issue 9) --------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda h, m: h.update(action="on-subscribe"),
        lambda h, m: h.update(action="search"),
        lambda h, m: h.pop("action"),
        lambda h, m: h.update(receiver_id="someone.else"),
        lambda h, m: h.pop("receiver_id"),
        lambda h, m: h.pop("message_id"),
        lambda h, m: m.pop("transaction_id"),
        lambda h, m: m.update(transaction_id=None),
        lambda h, m: m.update(transaction_id="another"),
    ],
    ids=[
        "action of another call",
        "action of a request",
        "no action",
        "receiver_id of another client",
        "no receiver_id",
        "no message_id",
        "no transaction_id",
        "transaction_id null",
        "another transaction_id",
    ],
)
def test_an_answer_not_bound_to_its_request_is_refused(
    server: DCIServer, client: dci.DCIClient, change: Any
) -> None:
    server.mangle = change
    for call in (
        lambda: client.search_by_id("NID", "1"),
        lambda: client.enrolled("NID", "1"),
        lambda: client.txn_status("t", sync=True),
        lambda: client.enrollment_updates([{"x": 1}]),
    ):
        with pytest.raises(ProtocolError):
            call()


def test_each_call_accepts_its_documented_actions(server: DCIServer, client: dci.DCIClient) -> None:
    for action in ("on-enrolled", "on-search"):
        server.mangle = lambda h, m, a=action: h and h.update(action=a)  # type: ignore[misc]
        assert client.enrolled("NID", "1")["verified"] is True
    for action in ("on-enrollment-updates", "on-notify"):
        server.mangle = lambda h, m, a=action: h and h.update(action=a)  # type: ignore[misc]
        assert client.enrollment_updates([{"x": 1}])["verified"] is True
    server.mangle = None
    assert client.txn_status("t", sync=True)["verified"] is True


def test_a_replayed_answer_is_refused(server: DCIServer, client: dci.DCIClient) -> None:
    """A signed "no records" answer captured once and served again: the same message_id."""
    header = server.answer_header({"sender_id": SENDER}, "on-search", 1)
    message = {
        "transaction_id": "txn-r",
        "correlation_id": "c",
        "search_response": [
            {"timestamp": "2025-01-01T00:00:00Z", "status": "succ", "data": {"reg_records": []}}
        ],
    }
    body = server.envelope(header, message)
    server.queue(SYNC_SEARCH, Reply(body=body), Reply(body=body))
    assert client.search_by_id("NID", "1", transaction_id="txn-r")["records"] == []
    with pytest.raises(ProtocolError, match=r"replay|already"):
        client.search_by_id("NID", "2", transaction_id="txn-r")
    # process-wide: another client of the same process refuses it too
    server.queue(SYNC_SEARCH, Reply(body=body))
    other = client_for(server, dci.SigningKey.generate("ed25519"))
    with pytest.raises(ProtocolError, match=r"replay|already"):
        other.search_by_id("NID", "2", transaction_id="txn-r")


def test_search_never_hands_back_an_empty_list_for_an_unanswered_item(
    batch_server: DCIServer, client: dci.DCIClient
) -> None:
    from spp_dci_ibr.exceptions import UndecidedError

    batch_server.item_status["V9"] = ("pdng", None)
    with pytest.raises(UndecidedError, match="pending"):
        client.search_by_id("NID", "V9")
    batch_server.mangle = lambda h, m: [i.update(data={}) for i in m["search_response"]]
    with pytest.raises(UndecidedError, match="reg_records"):
        client.search_by_id("NID", "V1")
    items = client.search_batch(batch_queries(2))
    assert [i["status"] for i in items] == ["undecided", "undecided"]
    assert [i["records"] for i in items] == [None, None]
    assert all(i["reason_message"] for i in items)


# ---- verification everywhere (issue 9) ---------------------------------------------------------


def test_bare_answers_are_refused_when_keys_are_configured(
    server: DCIServer, client: dci.DCIClient
) -> None:
    server.enrolled_bare = True
    with pytest.raises(SignatureError, match="not a signed"):
        client.enrolled("NID", "1")
    bare_txn = {"transaction_id": "x", "txnstatus_response": {}}
    bare_updates = {"transaction_id": "x", "enrolled_response": []}
    server.queue(SYNC_TXN_STATUS, Reply(body=bare_txn))
    with pytest.raises(SignatureError):
        client.txn_status("t", sync=True)
    server.queue(ENROLLMENT_UPDATES, Reply(body=bare_updates))
    with pytest.raises(SignatureError):
        client.enrollment_updates([{"x": 1}])
    server.queue(SYNC_SEARCH, Reply(body={"transaction_id": "x", "search_response": []}))
    with pytest.raises((SignatureError, ProtocolError)):
        client.search_by_id("NID", "1")


def test_without_registry_keys_data_answers_are_refused_unless_accepted(
    server: DCIServer, key: dci.SigningKey
) -> None:
    bare = client_for(server, key, registry_keys=None)
    for call in (
        lambda: bare.search_by_id("NID", "1"),
        lambda: bare.search_batch(batch_queries(1)),
        lambda: bare.enrolled("NID", "1"),
        lambda: bare.txn_status("t", sync=True),
        lambda: bare.enrollment_updates([{"x": 1}]),
    ):
        with pytest.raises(ConfigError, match=r"registry_keys.*accept_unverified_answers"):
            call()
    assert server.received(SYNC_SEARCH) == [] and server.received(ENROLLMENT_UPDATES) == []
    failed = dci.IBRService(bare).check_duplication([("NID", "1")])
    assert failed.state == "failed" and "registry_keys" in failed.reasons[0]
    # ACKs carry no data and are unsigned by design: still read
    assert bare.search_async("idtype-value", {"type": "NID", "value": "1"})["ack_status"] == "ACK"

    opted = client_for(server, key, registry_keys=None, accept_unverified_answers=True)
    server.answer_signature = "none"
    item = opted.search_by_id("NID", "1")
    assert item["verified"] is False and item["records"] == []
    assert [i["verified"] for i in opted.search_batch(batch_queries(2))] == [False, False]
    assert opted.enrolled("NID", "1")["verified"] is False
    assert opted.txn_status("t", sync=True)["verified"] is False
    result = dci.IBRService(opted).check_duplication([("NID", "1")])
    assert result.result == "no_match" and result.verified is False
    assert result.to_dict()["verified"] is False
    status = dci.IBRService(opted).get_enrollment_status("NID", "1")
    assert status["verified"] is False


def test_verified_answers_say_so(server: DCIServer, client: dci.DCIClient) -> None:
    server.mangle = lambda h, m: m.update(verified=False)  # the registry cannot claim it
    assert client.search_by_id("NID", "1")["verified"] is True
    assert client.enrolled("NID", "1")["verified"] is True
    assert dci.IBRService(client).check_duplication([("NID", "1")]).verified is True


# ---- secrets a peer echoes (issue 9) -----------------------------------------------------------


def test_secrets_echoed_by_a_peer_never_reach_errors_or_reasons(
    server: DCIServer, key: dci.SigningKey
) -> None:
    secret = f"cs-{uuid.uuid4().hex}"
    server.add_client("echo-client", secret)
    server.require_token = True
    c = client_for(
        server,
        key,
        auth="oauth2",
        token_url=server.token_url,
        client_id="echo-client",
        client_secret=secret,
    )
    echo = {"error": f"bad {secret}", "error_description": f"secret {secret} refused"}
    server.queue("/oauth2/client/token", Reply(401, echo))
    with pytest.raises(AuthError) as e:
        c.check_auth()
    seen = [str(e.value), repr(e.value), str(e.value.code)]
    c.check_auth()
    token = server.issued_tokens[-1]
    bodies = [
        {"detail": f"token {token} is not welcome; secret {secret}"},
        {"detail": {"code": f"c-{token}", "message": f"m {token}"}},
        {"detail": [{"msg": f"Bearer {token}"}]},
        {"errors": [{"code": f"err.{token}", "message": f"{token.upper()} / {secret}"}]},
        {"message": {"ack_status": "ERR", "error": {"code": token, "message": f"x{token}x"}}},
        {"message": f"token {token}"},
    ]
    for status in (400, 403, 500):
        for body in bodies:
            server.queue(SYNC_SEARCH, Reply(status, body))
            with pytest.raises(DCIError) as e:
                c.search_by_id("NID", "1")
            seen += [str(e.value), repr(e.value), str(getattr(e.value, "code", ""))]
    server.queue(SYNC_SEARCH, Reply(200, {"message": {"ack_status": token, "error": {}}}))
    with pytest.raises(DCIError) as e:
        c.search_by_id("NID", "1")
    seen.append(str(e.value))
    # in-protocol refusals: a rjct item, a rjct header
    server.item_status["R"] = ("rjct", f"rjct.{token}")
    result = dci.IBRService(c).check_duplication([("NID", "R")])
    seen += result.reasons + [o.reason or "" for o in result.outcomes]
    server.mangle = lambda h, m: h.update(
        status="rjct", status_reason_message=f"no: {secret} {token}"
    )
    result = dci.IBRService(c).check_duplication([("NID", "1")])
    seen += result.reasons
    with pytest.raises(DCIError) as e:
        c.search_by_id("NID", "1")
    seen.append(str(e.value))
    assert len(seen) > 40
    for text in seen:
        assert secret not in text and token not in text and token.upper() not in text, text
        assert secret[:12] not in text and token[:12] not in text, text
