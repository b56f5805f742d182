"""The FastAPI callback router (spp_dci_ibr.callbacks), against the installed wheel.

Every hostile case asserts the exact status, the exact err.* code and that nothing reached the
sink. The clock is fixed so that signatures' created/expires are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import spp_dci_ibr as dci
from fastapi import FastAPI
from fastapi.testclient import TestClient
from spp_dci_ibr.callbacks import (
    CALLBACK_ROUTES,
    CallbackEvent,
    CallbackRejected,
    MemoryReplayStore,
    StaticKeyLookup,
    build_callback_router,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW_TS = "2026-01-01T00:00:00Z"
REGISTRY = "ibr.example.org"
OTHER = "other.example.org"
LONELY = "lonely.example.org"  # one PEM key, no kid
ED_ID, RS_ID = "key-ed-1", "key-rs-1"
LIMIT = 1 << 20

ROUTES = list(CALLBACK_ROUTES)  # the actions: on-search, on-subscribe, on-unsubscribe, ...


# ------------------------------------------------------------------------------------------
# Keys, messages, signing
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "ed": dci.SigningKey.generate("ed25519"),
        "rs": dci.SigningKey.generate("rs256"),
        "stranger": dci.SigningKey.generate("ed25519"),  # a key nobody configured
        "other": dci.SigningKey.generate("ed25519"),
        "lonely": dci.SigningKey.generate("ed25519"),
    }


def message_for(action: str) -> dict[str, Any]:
    """A plausible message for each callback, with reference_ids where the spec has them."""
    item = {"timestamp": NOW_TS, "status": "succ"}
    if action == "on-search":
        return {
            "transaction_id": "txn-1",
            "correlation_id": "corr-1",
            "search_response": [
                {**item, "reference_id": "ref-1", "data": {"reg_records": [{"name": "Zoë"}]}},
                {**item, "reference_id": "ref-2", "data": {"reg_records": []}},
            ],
        }
    if action == "on-subscribe":
        return {
            "transaction_id": "txn-2",
            "correlation_id": "corr-2",
            "subscribe_response": [{**item, "reference_id": "ref-s1", "subscriptions": []}],
        }
    if action == "on-unsubscribe":
        return {
            "transaction_id": "txn-3",
            "correlation_id": "corr-3",
            "timestamp": NOW_TS,
            "status": "succ",
            "subscription_status": [{"code": "sub-1", "status": "unsubscribe"}],
        }
    if action == "notify":
        return {
            "transaction_id": "txn-4",
            "notify_event": [
                {"reference_id": "ref-n1", "timestamp": NOW_TS, "data": {"reg_records": {}}},
                {"reference_id": "ref-n2", "timestamp": NOW_TS, "data": {"reg_records": {}}},
            ],
        }
    assert action == "txn-on-status"
    return {
        "transaction_id": "txn-5",
        "correlation_id": "corr-5",
        "txnstatus_response": {
            "txn_type": "search",
            "txn_status": {
                "transaction_id": "txn-5",
                "correlation_id": "corr-5",
                "search_response": [{**item, "reference_id": "ref-t1"}],
            },
        },
    }


EXPECTED = {  # action -> (transaction_id, correlation_id, reference_ids)
    "on-search": ("txn-1", "corr-1", ("ref-1", "ref-2")),
    "on-subscribe": ("txn-2", "corr-2", ("ref-s1",)),
    "on-unsubscribe": ("txn-3", "corr-3", ()),
    "notify": ("txn-4", None, ("ref-n1", "ref-n2")),
    "txn-on-status": ("txn-5", "corr-5", ("ref-t1",)),
}


def header_for(action: str, sender_id: str = REGISTRY, **overrides: Any) -> dict[str, Any]:
    header = {
        "version": "1.0.0",
        "message_id": str(uuid.uuid4()),
        "message_ts": NOW_TS,
        "action": action,
        "status": "succ",
        "sender_id": sender_id,
        "receiver_id": "spmis.example.org",
        "total_count": 1,
        "completed_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    header.update(overrides)
    return header


@dataclass
class Ctx:
    """What a corpus case needs to build its request."""

    keys: dict[str, Any]

    def envelope(
        self,
        action: str = "on-search",
        *,
        key: str = "ed",
        sender_id: str = REGISTRY,
        kid_sender: str | None = None,
        key_id: str | None = None,
        created: int = NOW,
        lifetime: int = 300,
        header: dict[str, Any] | None = None,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        header = header if header is not None else header_for(action, sender_id)
        message = message if message is not None else message_for(action)
        signing_key = self.keys[key]
        signature = dci.sign_envelope(
            header,
            message,
            signing_key,
            sender_id=kid_sender or sender_id,
            key_id=key_id or (RS_ID if key == "rs" else ED_ID),
            created=created,
            lifetime=lifetime,
        )
        return {"signature": signature, "header": header, "message": message}


@dataclass
class Recorder:
    events: list[CallbackEvent] = field(default_factory=list)
    lookups: list[tuple[str, str | None]] = field(default_factory=list)
    error: BaseException | None = None

    def sink(self, event: CallbackEvent) -> None:
        if self.error is not None:
            raise self.error
        self.events.append(event)


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Harness:
    client: TestClient
    recorder: Recorder
    ctx: Ctx
    clock: Clock
    prefix: str = "/registry"

    def post(
        self,
        action: str,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> Any:
        path = self.prefix + CALLBACK_ROUTES[action][len("/registry") :]
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        all_headers = {"content-type": "application/json"}
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        return self.client.post(path, content=body, headers=all_headers)


def key_table(keys: dict[str, Any]) -> dict[str, Any]:
    return {
        REGISTRY: [keys["ed"].public_jwk(REGISTRY, ED_ID), keys["rs"].public_jwk(REGISTRY, RS_ID)],
        OTHER: [keys["other"].public_jwk(OTHER, ED_ID)],
        LONELY: keys["lonely"].public_pem(),
    }


def make_harness(
    keys: dict[str, Any],
    *,
    prefix: str = "/registry",
    lookup: Any = None,
    replay_store: Any = None,
    **options: Any,
) -> Harness:
    recorder = Recorder()
    clock = Clock()
    if replay_store is None:
        replay_store = MemoryReplayStore(clock=clock)
    static = lookup or StaticKeyLookup(key_table(keys))

    def key_lookup(sender_id: str, kid: str | None) -> Any:
        recorder.lookups.append((sender_id, kid))
        return static(sender_id, kid)

    app = FastAPI()
    app.include_router(
        build_callback_router(
            key_lookup=key_lookup,
            replay_store=replay_store,
            sink=recorder.sink,
            prefix=prefix,
            clock=clock,
            **options,
        )
    )
    return Harness(TestClient(app), recorder, Ctx(keys), clock, prefix)


@pytest.fixture
def h(keys: dict[str, Any]) -> Harness:
    return make_harness(keys)


def assert_refused(response: Any, status: int, code: str) -> str:
    """The refusal shape, exactly; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert set(error) == {"code", "message"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    for leak in ("Traceback", 'File "', ".py", "Error(", "0x", "-----BEGIN"):
        assert leak not in response.text
    return str(error["message"])


def assert_ack(response: Any, correlation_id: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {
        "message": {
            "ack_status": "ACK",
            "timestamp": NOW_TS,
            "correlation_id": correlation_id,
        }
    }


# ------------------------------------------------------------------------------------------
# Happy paths
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ed", "rs"])
@pytest.mark.parametrize("action", ROUTES)
def test_accepts_each_callback(h: Harness, action: str, key: str) -> None:
    envelope = h.ctx.envelope(action, key=key)
    raw = json.dumps(envelope).encode()
    response = h.post(action, raw)

    transaction_id, correlation_id, reference_ids = EXPECTED[action]
    assert_ack(response, correlation_id or envelope["header"]["message_id"])
    assert len(h.recorder.events) == 1
    event = h.recorder.events[0]
    assert event.action == action
    assert event.sender_id == REGISTRY
    assert event.message_id == envelope["header"]["message_id"]
    assert (
        event.kid == {"ed": f"{REGISTRY}|{ED_ID}|ed25519", "rs": f"{REGISTRY}|{RS_ID}|rs256"}[key]
    )
    assert event.header == envelope["header"]
    assert event.message == envelope["message"]
    assert event.raw_body == raw
    assert event.transaction_id == transaction_id
    assert event.correlation_id == correlation_id
    assert event.reference_ids == reference_ids
    assert event.received_at == NOW


def test_routes_are_the_five_of_the_spec() -> None:
    assert dict(CALLBACK_ROUTES) == {
        "on-search": "/registry/on-search",
        "on-subscribe": "/registry/on-subscribe",
        "on-unsubscribe": "/registry/on-unsubscribe",
        "notify": "/registry/notify",
        "txn-on-status": "/registry/txn/on-status",
    }


def test_event_is_frozen(h: Harness) -> None:
    assert h.post("on-search", h.ctx.envelope()).status_code == 200
    with pytest.raises(AttributeError):
        h.recorder.events[0].sender_id = "someone"  # type: ignore[misc]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"],
)
def test_accepts_json_content_types(h: Harness, content_type: str) -> None:
    envelope = h.ctx.envelope()
    response = h.post("on-search", envelope, {"content-type": content_type})
    assert_ack(response, "corr-1")


def test_keyid_spelling_of_the_kid_is_accepted(h: Harness) -> None:
    envelope = h.ctx.envelope()
    assert 'kidId="' in envelope["signature"]
    envelope["signature"] = envelope["signature"].replace('kidId="', 'keyId="')
    assert_ack(h.post("on-search", envelope), "corr-1")


def test_single_pem_key_is_tried_whatever_the_key_id(h: Harness) -> None:
    envelope = h.ctx.envelope(key="lonely", sender_id=LONELY, key_id="rotated-7")
    assert_ack(h.post("on-search", envelope), "corr-1")
    assert h.recorder.events[0].kid == f"{LONELY}|rotated-7|ed25519"


def test_jwks_object_and_jwks_dict_are_accepted_as_key_material(keys: dict[str, Any]) -> None:
    jwks_dict = {
        "keys": [keys["ed"].public_jwk(REGISTRY, ED_ID), keys["rs"].public_jwk(REGISTRY, RS_ID)]
    }
    for material in (dci.JWKS.from_json(json.dumps(jwks_dict)), jwks_dict):
        h = make_harness(keys, lookup=StaticKeyLookup({REGISTRY: [material]}))
        for key in ("ed", "rs"):
            assert_ack(h.post("on-search", h.ctx.envelope(key=key)), "corr-1")
        assert len(h.recorder.events) == 2


def test_key_lookup_gets_sender_and_kid(h: Harness) -> None:
    h.post("on-search", h.ctx.envelope(key="rs"))
    assert h.recorder.lookups == [(REGISTRY, f"{REGISTRY}|{RS_ID}|rs256")]


def test_brackets_inside_strings_do_not_count_as_depth(h: Harness) -> None:
    message = message_for("on-search")
    message["note"] = "[{" * 5000 + '\\"[' * 100
    assert_ack(h.post("on-search", h.ctx.envelope(message=message)), "corr-1")


def test_nesting_up_to_max_depth_is_accepted_and_one_more_is_not(h: Harness) -> None:
    # envelope (1) > message (2) > "deep" list levels 3..64
    def nested(levels: int) -> Any:
        value: Any = 0
        for _ in range(levels):
            value = [value]
        return value

    message = message_for("on-search")
    message["deep"] = nested(62)
    assert_ack(h.post("on-search", h.ctx.envelope(message=message)), "corr-1")
    message["deep"] = nested(63)
    response = h.post("on-search", h.ctx.envelope(message=message))
    assert "64" in assert_refused(response, 400, "err.request.bad")
    assert len(h.recorder.events) == 1


def test_big_integer_within_the_limit_is_exact(h: Harness) -> None:
    message = message_for("on-search")
    message["big"] = int("9" * 4300)
    assert_ack(h.post("on-search", h.ctx.envelope(message=message)), "corr-1")
    assert h.recorder.events[0].message["big"] == int("9" * 4300)


def test_non_ascii_and_floats_verify(h: Harness) -> None:
    message = message_for("on-search")
    message.update({"name": "Zoë 测试 🎉", "ratio": 0.1, "whole": 10.0, "tiny": 1e-07})
    raw = json.dumps(h.ctx.envelope(message=message), ensure_ascii=False).encode("utf-8")
    assert_ack(h.post("on-search", raw), "corr-1")
    whole = h.recorder.events[0].message["whole"]
    assert isinstance(whole, float) and whole == 10.0


def test_escaped_surrogate_pairs_are_fine(h: Harness) -> None:
    message = message_for("on-search")
    message["party"] = "🎉 \U0001f600"
    raw_body = json.dumps(h.ctx.envelope(message=message)).encode()  # ensure_ascii: \ud83c\udf89
    assert b"\\ud83c\\udf89" in raw_body
    assert_ack(h.post("on-search", raw_body), "corr-1")
    assert h.recorder.events[0].message["party"] == "🎉 \U0001f600"


def test_correlation_id_falls_back_to_message_id(h: Harness) -> None:
    envelope = h.ctx.envelope("notify")
    assert_ack(h.post("notify", envelope), envelope["header"]["message_id"])


# ------------------------------------------------------------------------------------------
# The hostile corpus
# ------------------------------------------------------------------------------------------

Body = Any  # bytes | dict | Iterator[bytes]


@dataclass(frozen=True)
class Hostile:
    id: str
    build: Callable[[Ctx], tuple[Body, dict[str, Any]]]
    status: int
    code: str
    route: str = "on-search"
    says: str | None = None  # a word the error message must contain


def raw(text: str | bytes, **headers: Any) -> Callable[[Ctx], tuple[Body, dict[str, Any]]]:
    data = text.encode() if isinstance(text, str) else text
    return lambda c: (data, headers)


def signed(**kwargs: Any) -> Callable[[Ctx], tuple[Body, dict[str, Any]]]:
    return lambda c: (c.envelope(**kwargs), {})


def edited(edit: Callable[[dict[str, Any]], Any], **kwargs: Any) -> Callable[[Ctx], Any]:
    """A correctly signed envelope, then changed by `edit` (which may return raw text)."""

    def build(c: Ctx) -> tuple[Body, dict[str, Any]]:
        envelope = c.envelope(**kwargs)
        result = edit(envelope)
        return (envelope if result is None else result), {}

    return build


def text_of(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope)


def with_message_text(message_text: str) -> Callable[[dict[str, Any]], str]:
    """Replace the serialised message by raw text (for what json.dumps cannot produce)."""

    def edit(envelope: dict[str, Any]) -> str:
        body = {"signature": envelope["signature"], "header": envelope["header"], "message": 0}
        return json.dumps(body).replace('"message": 0', '"message": ' + message_text)

    return edit


def set_path(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(envelope: dict[str, Any]) -> None:
        target: Any = envelope
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


def drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(envelope: dict[str, Any]) -> None:
        target: Any = envelope
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return edit


def retag(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(envelope: dict[str, Any]) -> None:
        assert old in envelope["signature"]
        envelope["signature"] = envelope["signature"].replace(old, new)

    return edit


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


def oversized(c: Ctx) -> bytes:
    envelope = c.envelope()
    envelope["message"]["padding"] = "x" * LIMIT
    return json.dumps(envelope).encode()


BAD, SENDER = "err.request.bad", "err.sender_id.invalid"
MISSING, INVALID = "err.signature.missing", "err.signature.invalid"
OTHER_ACTION = {
    "on-search": "on-subscribe",
    "on-subscribe": "on-unsubscribe",
    "on-unsubscribe": "notify",
    "notify": "txn-on-status",
    "txn-on-status": "on-search",
}
JSON = "application/json"

CORPUS: list[Hostile] = [
    # --- malformed JSON -----------------------------------------------------------------
    Hostile("empty-body", raw(b""), 400, BAD),
    Hostile("truncated-object", raw("{"), 400, BAD),
    Hostile("not-json", raw("not json"), 400, BAD),
    Hostile("trailing-comma", raw('{"header": {}, "message": {},}'), 400, BAD),
    Hostile("single-quotes", raw("{'header': {}}"), 400, BAD),
    Hostile("comment", raw('{/* c */ "header": {}}'), 400, BAD),
    Hostile("unterminated-string", raw('{"header": {"a": "abc'), 400, BAD),
    Hostile("two-documents", edited(lambda e: text_of(e) + text_of(e)), 400, BAD),
    Hostile("trailing-garbage", edited(lambda e: text_of(e) + " x"), 400, BAD),
    Hostile("top-level-array", raw("[]"), 400, BAD, says="object"),
    Hostile("top-level-string", raw('"envelope"'), 400, BAD, says="object"),
    Hostile("top-level-null", raw("null"), 400, BAD),
    Hostile("top-level-number", raw("42"), 400, BAD),
    Hostile("utf8-bom", edited(lambda e: ("\ufeff" + text_of(e)).encode()), 400, BAD),
    Hostile("nan", edited(with_message_text('{"x": NaN}')), 400, BAD, says="NaN"),
    Hostile("infinity", edited(with_message_text('{"x": Infinity}')), 400, BAD),
    Hostile("minus-infinity", edited(with_message_text('{"x": -Infinity}')), 400, BAD),
    Hostile("float-overflow", edited(with_message_text('{"x": 1e999}')), 400, BAD),
    Hostile("huge-int", edited(with_message_text('{"x": ' + "7" * 4301 + "}")), 400, BAD),
    Hostile("huge-negative-int", edited(with_message_text('{"x": -' + "7" * 5000 + "}")), 400, BAD),
    Hostile(
        "huge-float-literal", edited(with_message_text('{"x": 0.' + "3" * 100_000 + "}")), 400, BAD
    ),
    Hostile(
        "lone-surrogate", edited(with_message_text('{"x": "\\ud800"}')), 400, BAD, says="surrogate"
    ),
    # --- encoding -------------------------------------------------------------------------
    Hostile(
        "invalid-utf8",
        edited(lambda e: text_of(e).encode()[:-2] + b'\xff"}'),
        400,
        BAD,
        says="UTF-8",
    ),
    Hostile("overlong-utf8", raw(b'{"header": {"a": "\xc0\xaf"}}'), 400, BAD, says="UTF-8"),
    Hostile("utf8-encoded-surrogate", raw(b'{"header": {"a": "\xed\xa0\x80"}}'), 400, BAD),
    Hostile("utf16-body", edited(lambda e: text_of(e).encode("utf-16")), 400, BAD),
    Hostile("latin1-charset", signed(), 400, BAD),  # content type set below
    # --- duplicate keys -------------------------------------------------------------------
    Hostile(
        "dup-top-level",
        edited(lambda e: text_of(e)[:-1] + ', "message": {}}'),
        400,
        BAD,
        says="duplicate",
    ),
    Hostile(
        "dup-header-sender",
        edited(
            lambda e: text_of(e).replace('"sender_id": "', '"sender_id": "evil", "sender_id": "', 1)
        ),
        400,
        BAD,
        says="duplicate",
    ),
    Hostile(
        "dup-nested-item",
        edited(
            lambda e: text_of(e).replace(
                '"reference_id": "ref-1"', '"reference_id": "ref-1", "reference_id": "x"'
            )
        ),
        400,
        BAD,
        says="duplicate",
    ),
    # --- depth ----------------------------------------------------------------------------
    Hostile(
        "deep-10000-arrays",
        edited(with_message_text('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}")),
        400,
        BAD,
        says="deeper",
    ),
    Hostile(
        "deep-10000-objects",
        edited(with_message_text('{"a": ' * 10_000 + "1" + "}" * 10_000)),
        400,
        BAD,
        says="deeper",
    ),
    Hostile("deep-unclosed", raw("[" * 100_000), 400, BAD, says="deeper"),
    Hostile("deep-65", edited(with_message_text("[" * 64 + "]" * 64)), 400, BAD, says="deeper"),
    # --- content type ---------------------------------------------------------------------
    Hostile("text-plain", signed(), 400, BAD),
    Hostile("no-content-type", signed(), 400, BAD),
    Hostile("form-urlencoded", signed(), 400, BAD),
    Hostile("multipart", signed(), 400, BAD),
    Hostile("json-lookalike", signed(), 400, BAD),
    # --- size -----------------------------------------------------------------------------
    Hostile("over-limit-honest-length", lambda c: (oversized(c), {}), 413, BAD, says="bytes"),
    Hostile("over-limit-chunked", lambda c: (chunks(LIMIT + 1), {}), 413, BAD),
    Hostile(
        "over-limit-lying-length", lambda c: (oversized(c), {"content-length": "10"}), 413, BAD
    ),
    Hostile("declared-over-limit", lambda c: (b"{}", {"content-length": str(LIMIT + 1)}), 413, BAD),
    Hostile("bad-content-length", lambda c: (b"{}", {"content-length": "2x"}), 400, BAD),
    # --- envelope shape -------------------------------------------------------------------
    Hostile("no-header", edited(drop("header")), 400, BAD, says="header"),
    Hostile("no-message", edited(drop("message")), 400, BAD, says="message"),
    Hostile("header-list", edited(set_path(("header",), [])), 400, BAD, says="header"),
    Hostile("header-string", edited(set_path(("header",), "header")), 400, BAD, says="header"),
    Hostile("header-null", edited(set_path(("header",), None)), 400, BAD, says="header"),
    Hostile("message-list", edited(set_path(("message",), [])), 400, BAD, says="message"),
    Hostile("message-null", edited(set_path(("message",), None)), 400, BAD, says="message"),
    Hostile("signature-number", edited(set_path(("signature",), 12)), 400, BAD, says="signature"),
    Hostile("signature-object", edited(set_path(("signature",), {})), 400, BAD, says="signature"),
    Hostile("no-message-id", edited(drop("header", "message_id")), 400, BAD, says="message_id"),
    Hostile(
        "empty-message-id",
        edited(set_path(("header", "message_id"), "")),
        400,
        BAD,
        says="message_id",
    ),
    Hostile("no-sender-id", edited(drop("header", "sender_id")), 400, BAD, says="sender_id"),
    Hostile(
        "numeric-sender-id",
        edited(set_path(("header", "sender_id"), 7)),
        400,
        BAD,
        says="sender_id",
    ),
    Hostile("no-action", edited(drop("header", "action")), 400, BAD, says="action"),
    # --- action ---------------------------------------------------------------------------
    *[
        Hostile(
            f"wrong-action-{route}",
            signed(action=OTHER_ACTION[route]),
            400,
            BAD,
            route=route,
            says="action",
        )
        for route in ROUTES
    ],
    Hostile(
        "request-action-on-callback",
        edited(set_path(("header", "action"), "search")),
        400,
        BAD,
        says="action",
    ),
    Hostile("on-status-spelling", signed(action="on-search"), 400, BAD, route="txn-on-status"),
    # --- sender ---------------------------------------------------------------------------
    Hostile(
        "unknown-sender", signed(key="stranger", sender_id="stranger.example.org"), 401, SENDER
    ),
    Hostile(
        "unknown-sender-unsigned",
        edited(drop("signature"), sender_id="stranger.example.org", key="stranger"),
        401,
        SENDER,
    ),
    # --- signature ------------------------------------------------------------------------
    Hostile("signature-absent", edited(drop("signature")), 401, MISSING),
    Hostile("signature-null", edited(set_path(("signature",), None)), 401, MISSING),
    Hostile("signature-empty", edited(set_path(("signature",), "")), 401, MISSING),
    Hostile(
        "kid-of-another-sender",
        signed(key="other", kid_sender=OTHER),
        401,
        INVALID,
        says="sender_id",
    ),
    Hostile(
        "kid-sender-prefix", signed(kid_sender=REGISTRY + ".evil"), 401, INVALID, says="sender_id"
    ),
    Hostile(
        "kid-without-sender",
        edited(retag(f'kidId="{REGISTRY}|{ED_ID}|ed25519"', f'kidId="{ED_ID}"')),
        401,
        INVALID,
        says="sender_id",
    ),
    Hostile(
        "no-kid",
        edited(retag(f'kidId="{REGISTRY}|{ED_ID}|ed25519", ', "")),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "two-kids",
        edited(retag('kidId="', f'kidId="{REGISTRY}|{RS_ID}|rs256", kidId="')),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "tampered-message",
        edited(set_path(("message", "transaction_id"), "txn-X")),
        401,
        INVALID,
        says="invalid",
    ),
    Hostile(
        "tampered-header",
        edited(set_path(("header", "total_count"), 2)),
        401,
        INVALID,
        says="invalid",
    ),
    Hostile(
        "tampered-item",
        edited(set_path(("message", "search_response", 1, "status"), "rjct")),
        401,
        INVALID,
        says="invalid",
    ),
    Hostile("wrong-key-right-kid", signed(key="stranger"), 401, INVALID, says="invalid"),
    Hostile(
        "rs-kid-ed-key", signed(key="stranger", key_id=RS_ID), 401, INVALID, says="unknown_key"
    ),
    Hostile(
        "kid-of-rs-key-signed-by-ed",
        edited(retag(f"{REGISTRY}|{ED_ID}|ed25519", f"{REGISTRY}|{RS_ID}|rs256")),
        401,
        INVALID,
        says="invalid",
    ),
    Hostile("unknown-key-id", signed(key_id="key-zz"), 401, INVALID, says="unknown_key"),
    Hostile("expired", signed(created=NOW - 1000, lifetime=300), 401, INVALID, says="expired"),
    Hostile("not-yet-valid", signed(created=NOW + 600), 401, INVALID, says="not_yet_valid"),
    Hostile("lifetime-too-long", signed(lifetime=7200), 401, INVALID, says="lifetime_too_long"),
    Hostile(
        "malformed-garbage",
        edited(set_path(("signature",), "garbage")),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "malformed-garbage-kid",
        edited(set_path(("signature",), f'kidId="{REGISTRY}|{ED_ID}|ed25519", x')),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "bad-base64",
        edited(lambda e: retag('signature="', 'signature="!!')(e)),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "created-not-a-number",
        edited(retag(f'created="{NOW}"', 'created="soon"')),
        401,
        INVALID,
        says="malformed",
    ),
    Hostile(
        "unknown-algorithm",
        edited(retag('algorithm="ed25519"', 'algorithm="hs256"')),
        401,
        INVALID,
        says="malformed",
    ),
]

CONTENT_TYPES = {
    "latin1-charset": "application/json; charset=iso-8859-1",
    "text-plain": "text/plain",
    "no-content-type": None,
    "form-urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "json-lookalike": "application/jsonp",
}


def test_corpus_is_big_enough_and_named_uniquely() -> None:
    assert len(CORPUS) >= 60
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_input_is_refused(h: Harness, case: Hostile) -> None:
    body, headers = case.build(h.ctx)
    if case.id in CONTENT_TYPES:
        headers = {**headers, "content-type": CONTENT_TYPES[case.id]}
    response = h.post(case.route, body, headers)
    message = assert_refused(response, case.status, case.code)
    if case.says is not None:
        assert case.says in message
    assert h.recorder.events == []


def test_signature_messages_carry_no_key_material(h: Harness, keys: dict[str, Any]) -> None:
    envelope = h.ctx.envelope(key="stranger")
    response = h.post("on-search", envelope)
    assert_refused(response, 401, INVALID)
    jwk = keys["ed"].public_jwk(REGISTRY, ED_ID)
    for secret in (jwk["x"], keys["ed"].public_pem(), envelope["signature"]):
        assert secret not in response.text


def test_refused_bodies_never_reach_the_key_lookup(h: Harness) -> None:
    envelope = h.ctx.envelope()
    h.post("on-search", json.dumps(envelope).encode() + b"x")
    h.post("on-subscribe", envelope)  # wrong action
    assert h.recorder.lookups == []


# ------------------------------------------------------------------------------------------
# Replay and duplicate delivery
# ------------------------------------------------------------------------------------------


def test_replayed_message_id_is_refused(h: Harness) -> None:
    first = h.ctx.envelope()
    assert_ack(h.post("on-search", first), "corr-1")
    # A new, validly signed message that reuses the message_id.
    header = header_for("on-search", message_id=first["header"]["message_id"])
    again = h.ctx.envelope(header=header, message={"transaction_id": "other"})
    message = assert_refused(h.post("on-search", again), 409, "err.request.bad")
    assert "rjct.message_id.duplicate" in message
    assert [e.message["transaction_id"] for e in h.recorder.events] == ["txn-1"]


def test_duplicate_deliveries_reach_the_sink_once(h: Harness) -> None:
    raw_body = json.dumps(h.ctx.envelope("notify")).encode()
    statuses = [h.post("notify", raw_body).status_code for _ in range(4)]
    assert statuses == [200, 409, 409, 409]
    assert len(h.recorder.events) == 1


def test_same_message_id_from_two_senders_is_not_a_replay(h: Harness) -> None:
    first = h.ctx.envelope()
    header = header_for("on-search", OTHER, message_id=first["header"]["message_id"])
    second = h.ctx.envelope(key="other", sender_id=OTHER, header=header)
    assert h.post("on-search", first).status_code == 200
    assert h.post("on-search", second).status_code == 200
    assert [e.sender_id for e in h.recorder.events] == [REGISTRY, OTHER]


def test_memory_replay_store_forgets_after_expiry() -> None:
    clock = Clock(1000)
    store = MemoryReplayStore(clock=clock)
    assert store.remember("s", "m1", 1300) is True
    assert store.remember("s", "m1", 1300) is False
    assert store.remember("s", "m2", 1300) is True
    assert store.remember("t", "m1", 1300) is True
    clock.now = 1300
    assert store.remember("s", "m1", 1600) is False
    clock.now = 1301
    assert store.remember("s", "m1", 1600) is True
    assert store.remember("s", "m1", 1600) is False


def test_memory_replay_store_now_argument_overrides_the_clock() -> None:
    store = MemoryReplayStore(clock=Clock(10**9))
    assert store.remember("s", "m", 500, now=100) is True
    assert store.remember("s", "m", 500, now=499) is False
    assert store.remember("s", "m", 900, now=501) is True


# ------------------------------------------------------------------------------------------
# The sink, the key lookup and errors
# ------------------------------------------------------------------------------------------


def test_full_replay_store_is_a_temporary_refusal(keys: dict[str, Any]) -> None:
    clock = Clock()
    h = make_harness(keys, replay_store=MemoryReplayStore(1, clock=clock))
    assert_ack(h.post("on-search", h.ctx.envelope()), "corr-1")
    message = assert_refused(h.post("on-search", h.ctx.envelope()), 503, "err.service.unavailable")
    assert "retry" in message
    assert len(h.recorder.events) == 1


def test_replay_store_decides_replays(keys: dict[str, Any]) -> None:
    class Seen:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, int]] = []

        def remember(self, sender_id: str, message_id: str, expires: int) -> bool:
            self.calls.append((sender_id, message_id, expires))
            return len(self.calls) == 1

    store = Seen()
    h = make_harness(keys, replay_store=store)
    envelope = h.ctx.envelope(created=NOW - 10, lifetime=120)
    assert_ack(h.post("on-search", envelope), "corr-1")
    assert_refused(h.post("on-search", h.ctx.envelope()), 409, "err.request.bad")
    assert store.calls[0] == (REGISTRY, envelope["header"]["message_id"], NOW + 110)
    assert len(h.recorder.events) == 1


def test_sink_rejection_is_answered_as_the_sink_says(h: Harness) -> None:
    h.recorder.error = CallbackRejected(403, "err.request.forbidden", "not our transaction")
    response = h.post("on-search", h.ctx.envelope())
    assert response.status_code == 403
    assert response.json() == {
        "errors": [{"code": "err.request.forbidden", "message": "not our transaction"}]
    }


def test_sink_rejection_with_a_non_error_status_becomes_500(h: Harness) -> None:
    h.recorder.error = CallbackRejected(200, "err.request.bad", "oops")
    response = h.post("on-search", h.ctx.envelope())
    assert_refused(response, 500, "err.service.unavailable")


def test_sink_crash_is_a_generic_500_and_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.recorder.error = RuntimeError("db password hunter2 at /srv/odoo/secret.py line 3")
    envelope = h.ctx.envelope()
    with caplog.at_level(logging.INFO, logger="spp_dci_ibr.callbacks"):
        response = h.post("on-search", envelope)
    message = assert_refused(response, 500, "err.service.unavailable")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert message == "internal error; the callback was not processed"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "spp_dci_ibr.callbacks"
    assert errors[0].exc_info is not None and "hunter2" in str(errors[0].exc_info[1])
    assert envelope["header"]["message_id"] in errors[0].getMessage()


def test_key_lookup_crash_is_a_generic_500(keys: dict[str, Any]) -> None:
    def broken(sender_id: str, kid: str | None) -> Any:
        raise KeyError("/etc/keys/ibr.pem")

    h = make_harness(keys, lookup=broken)
    response = h.post("on-search", h.ctx.envelope())
    assert_refused(response, 500, "err.service.unavailable")
    assert "/etc/keys" not in response.text


def test_unreadable_configured_key_is_a_server_error(keys: dict[str, Any]) -> None:
    lookup = StaticKeyLookup(
        {REGISTRY: ["-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"]}
    )
    h = make_harness(keys, lookup=lookup)
    response = h.post("on-search", h.ctx.envelope())
    assert_refused(response, 500, "err.service.unavailable")
    assert h.recorder.events == []


def test_two_keys_without_kids_do_not_guess(keys: dict[str, Any]) -> None:
    lookup = StaticKeyLookup({REGISTRY: [keys["ed"].public_pem(), keys["rs"].public_pem()]})
    h = make_harness(keys, lookup=lookup)
    message = assert_refused(h.post("on-search", h.ctx.envelope()), 401, INVALID)
    assert "unknown_key" in message


def test_known_sender_without_keys_is_unknown_key(keys: dict[str, Any]) -> None:
    h = make_harness(keys, lookup=StaticKeyLookup({REGISTRY: []}))
    message = assert_refused(h.post("on-search", h.ctx.envelope()), 401, INVALID)
    assert "unknown_key" in message


def test_logs_name_sender_and_message_id_but_no_signature(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    accepted = h.ctx.envelope()
    refused = h.ctx.envelope(created=NOW - 1000)
    with caplog.at_level(logging.DEBUG, logger="spp_dci_ibr.callbacks"):
        h.post("on-search", accepted)
        h.post("on-search", refused)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert accepted["header"]["message_id"] in text
    assert refused["header"]["message_id"] in text
    assert REGISTRY in text
    for envelope in (accepted, refused):
        assert envelope["signature"] not in text
        assert envelope["signature"].split('signature="')[1][:20] not in text
    assert "ref-1" not in text  # no body content


# ------------------------------------------------------------------------------------------
# Mounting
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/dci/callbacks", ""])
def test_router_works_under_another_prefix(keys: dict[str, Any], prefix: str) -> None:
    h = make_harness(keys, prefix=prefix)
    for action in ROUTES:
        envelope = h.ctx.envelope(action)
        assert_ack(
            h.post(action, envelope), EXPECTED[action][1] or envelope["header"]["message_id"]
        )
    assert len(h.recorder.events) == 5
    assert h.client.post("/registry/on-search", json=h.ctx.envelope()).status_code == 404


@pytest.mark.parametrize("prefix", ["registry", "/registry/"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        build_callback_router(
            key_lookup=StaticKeyLookup({}),
            replay_store=MemoryReplayStore(),
            sink=lambda event: None,
            prefix=prefix,
        )


def test_smaller_body_limit_is_honoured(keys: dict[str, Any]) -> None:
    h = make_harness(keys, max_body_bytes=2048)
    envelope = h.ctx.envelope()
    envelope["message"]["padding"] = "x" * 2048
    message = assert_refused(h.post("on-search", envelope), 413, "err.request.bad")
    assert "2048" in message


def test_get_is_not_allowed(h: Harness) -> None:
    assert h.client.get("/registry/on-search").status_code == 405


def test_oversized_stream_is_abandoned_early(keys: dict[str, Any]) -> None:
    """Drive the ASGI app by hand: a 64 MiB chunked body must not be read to its end."""
    h = make_harness(keys)
    app = h.client.app
    chunk = b" " * (64 * 1024)
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunk, "more_body": received < 1024}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/registry/on-search",
        "raw_path": b"/registry/on-search",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert received <= LIMIT // len(chunk) + 2
    assert json.loads(sent[1]["body"])["errors"][0]["code"] == "err.request.bad"


def test_importing_the_package_does_not_import_fastapi() -> None:
    code = "import sys, spp_dci_ibr; print('fastapi' in sys.modules, 'starlette' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]
