"""The embedded IBR sandbox through the installed wheel, driven with httpx."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import spp_dci_ibr as dci
from callback_receiver import Receiver
from spp_dci_ibr.exceptions import ConfigError, KeyFormatError, SignatureError, TransportError
from spp_dci_ibr.sandbox import IBRSandbox

SP = "test.sp.local"


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Caller:
    """A minimal signing client for the tests: token, signed envelopes, checks of answers."""

    def __init__(
        self,
        sb: IBRSandbox,
        key: dci.SigningKey | None = None,
        key_id: str = "k1",
        register: bool = True,
    ) -> None:
        self.sb = sb
        self.key = key or dci.SigningKey.generate()
        self.key_id = key_id
        if register:
            sb.register_client_key(SP, self.key.public_jwk(SP, key_id))
        self.http = httpx.Client(timeout=20)
        token = self.http.post(
            sb.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": sb.client_id,
                "client_secret": sb.client_secret,
            },
        )
        assert token.status_code == 200
        self.token = token.json()["access_token"]
        self.jwks = dci.JWKS.from_json(sb.public_jwks())

    def envelope(
        self, action: str, message: dict[str, Any], total: int = 1, sender_uri: str | None = None
    ) -> dict[str, Any]:
        header: dict[str, Any] = {
            "version": "1.0.0",
            "message_id": str(uuid.uuid4()),
            "message_ts": _now(),
            "action": action,
            "sender_id": SP,
            "receiver_id": self.sb.sender_id,
            "total_count": total,
            "is_msg_encrypted": False,
            "meta": {},
        }
        if sender_uri is not None:  # omitted, never null (the spec types it as a URI string)
            header["sender_uri"] = sender_uri
        if action == "notify":  # enrollment updates carry the spec's callback-style header
            header.update(status="succ", completed_count=total)
        signature = dci.sign_envelope(header, message, self.key, sender_id=SP, key_id=self.key_id)
        return {"signature": signature, "header": header, "message": message}

    def post(self, path: str, body: Any, token: str | None = "default") -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        return self.http.post(self.sb.url + path, json=body, headers=headers)

    def search(self, *ids: tuple[str, str, str], **criteria: Any) -> httpx.Response:
        message = search_message(*ids, **criteria)
        return self.post("/registry/sync/search", self.envelope("search", message, len(ids)))

    def outcome(self, envelope: dict[str, Any]) -> str:
        check = dci.check_signature(
            envelope["signature"], envelope["header"], envelope["message"], self.jwks
        )
        return check.outcome


def search_message(*ids: tuple[str, str, str], **criteria: Any) -> dict[str, Any]:
    return {
        "transaction_id": str(uuid.uuid4()),
        "search_request": [
            {
                "reference_id": ref,
                "timestamp": _now(),
                "search_criteria": {
                    "query_type": "idtype-value",
                    "query": {"type": id_type, "value": value},
                    **criteria,
                },
            }
            for ref, id_type, value in ids
        ],
    }


@pytest.fixture
def sandbox() -> Iterator[IBRSandbox]:
    with IBRSandbox(synthetic=60, seed=3) as sb:
        yield sb


@pytest.fixture
def caller(sandbox: IBRSandbox) -> Iterator[Caller]:
    c = Caller(sandbox)
    yield c
    c.http.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver("/registry/on-search")
    yield r
    r.close()


def test_lifecycle_urls_and_repr(sandbox: IBRSandbox) -> None:
    assert sandbox.running
    assert sandbox.url.startswith("http://127.0.0.1:")
    assert sandbox.token_url == sandbox.url + "/oauth2/client/token"
    assert sandbox.jwks_url == sandbox.url + "/.well-known/jwks.json"
    assert sandbox.sender_id == "ibr.sandbox.local"
    assert sandbox.client_secret and sandbox.client_secret not in repr(sandbox)
    assert "running=True" in repr(sandbox)
    port = sandbox.port
    sandbox.stop()
    assert not sandbox.running and "running=False" in repr(sandbox)
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=5)
    with IBRSandbox(port=port, prefix="/ibr/") as again:
        assert again.url == f"http://127.0.0.1:{port}/ibr"


def test_token_credentials_and_refusals(sandbox: IBRSandbox) -> None:
    basic = httpx.post(
        sandbox.token_url,
        data={"grant_type": "client_credentials"},
        auth=(sandbox.client_id, sandbox.client_secret),
    )
    assert basic.status_code == 200
    body = basic.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]
    wrong = httpx.post(
        sandbox.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": "x",
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert sandbox.client_secret not in wrong.text


def test_jwks_and_signed_sync_search(sandbox: IBRSandbox, caller: Caller) -> None:
    assert httpx.get(sandbox.jwks_url).json() == sandbox.public_jwks()
    assert dci.JWKS.from_json(sandbox.public_jwks()).kids == [
        "ibr.sandbox.local|sandbox-key-1|ed25519"
    ]
    (id_type, value) = sandbox.sample_identifiers("active", 1)[0]
    resp = caller.search(("r1", id_type, value), ("r2", "UIN", "UIN-99999999"))
    assert resp.status_code == 200
    answer = resp.json()
    assert caller.outcome(answer) == "valid"
    assert answer["header"]["action"] == "on-search" and answer["header"]["status"] == "succ"
    assert answer["header"]["receiver_id"] == SP
    first, second = answer["message"]["search_response"]
    assert (first["reference_id"], second["reference_id"]) == ("r1", "r2")
    person = first["data"]["reg_records"][0]["member"]["demographic_info"]["person"]
    assert person["identifier_value"] == value
    assert second["status"] == "succ" and second["data"]["reg_records"] == []
    assert sandbox.stats()["search_items"] == 2


def test_bad_query_rejects_only_its_item(caller: Caller) -> None:
    # A query the spec allows but the registry cannot read: that item is rejected alone.
    message = search_message(("a", "UIN", "UIN-00000001"), ("b", "UIN", "UIN-00000002"))
    message["search_request"][1]["search_criteria"]["query"] = {"type": "UIN"}
    answer = caller.post("/registry/sync/search", caller.envelope("search", message, 2)).json()
    items = answer["message"]["search_response"]
    assert items[0]["status"] == "succ"
    assert items[1]["status"] == "rjct"
    assert items[1]["status_reason_code"] == "rjct.search_criteria.invalid"


def test_a_query_type_outside_the_spec_is_refused_whole_unless_not_strict() -> None:
    message = search_message(("a", "UIN", "UIN-00000001"), ("b", "UIN", "UIN-00000002"))
    message["search_request"][1]["search_criteria"] = {"query_type": "graphql", "query": {}}
    with IBRSandbox(synthetic=5) as strict:
        caller = Caller(strict)
        resp = caller.post("/registry/sync/search", caller.envelope("search", message, 2))
        assert resp.status_code == 400
        error = resp.json()["errors"][0]
        assert error["code"] == "err.request.bad"
        assert "message.search_request[1].search_criteria.query_type" in error["message"]
        assert "(rjct.search_criteria.invalid)" in error["message"]
        assert strict.stats()["spec_violations"] == 1
    # Not strict (a body sent non-conforming on purpose): only that item is rejected.
    with IBRSandbox(synthetic=5, strict=False) as lax:
        caller = Caller(lax)
        answer = caller.post("/registry/sync/search", caller.envelope("search", message, 2)).json()
        items = answer["message"]["search_response"]
        assert [i["status"] for i in items] == ["succ", "rjct"]
        assert items[1]["status_reason_code"] == "rjct.search_criteria.invalid"
        assert lax.stats()["spec_violations"] == 0


def test_refusals_carry_spec_codes(sandbox: IBRSandbox, caller: Caller) -> None:
    envelope = caller.envelope("search", search_message(("r", "UIN", "UIN-00000001")))
    resp = caller.post("/registry/sync/search", envelope, token=None)
    assert (
        resp.status_code == 401 and resp.json()["errors"][0]["code"] == "err.request.unauthorized"
    )
    tampered = json.loads(json.dumps(envelope))
    tampered["message"]["transaction_id"] = "changed"
    resp = caller.post("/registry/sync/search", tampered)
    assert resp.status_code == 401 and resp.json()["errors"][0]["code"] == "err.signature.invalid"
    unsigned = dict(envelope, signature="")
    resp = caller.post("/registry/sync/search", unsigned)
    assert resp.json()["errors"][0]["code"] == "err.signature.missing"
    resp = caller.post("/registry/sync/search", {"header": 1})
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "err.request.bad"
    stats = sandbox.stats()
    assert stats["auth_failures"] == 1 and stats["signature_failures"] == 2


def test_register_client_key_takes_pem_and_rejects_private_keys(sandbox: IBRSandbox) -> None:
    key = dci.SigningKey.generate("rs256")
    sandbox.register_client_key("pem.sender", key.public_pem())
    with pytest.raises(KeyFormatError):
        sandbox.register_client_key("x", key.private_pem())
    with pytest.raises(TypeError):
        sandbox.register_client_key("x", 42)  # type: ignore[arg-type]


def test_async_search_calls_back_signed(
    sandbox: IBRSandbox, caller: Caller, receiver: Receiver
) -> None:
    message = search_message(("r1", "UIN", "UIN-00000001"))
    resp = caller.post(
        "/registry/search", caller.envelope("search", message, sender_uri=receiver.url)
    )
    assert resp.status_code == 202
    ack = resp.json()["message"]
    assert ack["ack_status"] == "ACK" and "error" not in ack
    path, callback = receiver.next()
    assert path == "/registry/on-search"
    assert caller.outcome(callback) == "valid"
    assert callback["message"]["correlation_id"] == ack["correlation_id"]
    assert callback["message"]["search_response"][0]["reference_id"] == "r1"
    status = {
        "transaction_id": "t-status",
        "txnstatus_request": {
            "reference_id": "s",
            "txn_type": "search",
            "attribute_type": "transaction_id",
            "attribute_value": message["transaction_id"],
        },
    }
    resp = caller.post(
        "/registry/txn/status", caller.envelope("txn-status", status, sender_uri=receiver.url)
    )
    assert resp.status_code == 202
    path, callback = receiver.next()
    assert path == "/registry/txn/on-status"
    assert callback["header"]["action"] == "txn-on-status"
    # The sandbox counts a callback once the receiver's answer is back.
    assert _eventually(lambda: sandbox.stats()["callbacks_sent"] == 2)


def test_duplicate_callbacks_repeat_the_same_message(
    sandbox: IBRSandbox, caller: Caller, receiver: Receiver
) -> None:
    sandbox.set_faults({"duplicate_callback_rate": 1.0})
    assert sandbox.faults()["duplicate_callback_rate"] == 1.0
    message = search_message(("r1", "UIN", "UIN-00000001"))
    caller.post("/registry/search", caller.envelope("search", message, sender_uri=receiver.url))
    first, second = receiver.next(), receiver.next()
    assert first == second


def _statuses(sb: IBRSandbox, caller: Caller, n: int = 30) -> list[str]:
    out = []
    for _ in range(n):
        try:
            resp = caller.search(("r", "UIN", "UIN-00000001"))
        except httpx.TransportError:
            out.append("dropped")
            continue
        try:
            resp.json()
            out.append(str(resp.status_code))
        except ValueError:
            out.append("garbage")
    return out


def test_faults_are_deterministic_for_a_seed(sandbox: IBRSandbox, caller: Caller) -> None:
    faults = {
        "seed": 11,
        503: 0.2,
        "error_rates": {500: 0.2},
        "drop_rate": 0.1,
        "garbage_rate": 0.1,
    }
    sandbox.set_faults(faults)
    first = _statuses(sandbox, caller)
    sandbox.set_faults(faults)
    assert _statuses(sandbox, caller) == first
    assert {"200", "500", "503", "dropped", "garbage"} <= set(first)
    sandbox.set_faults(dict(faults, seed=12))
    assert _statuses(sandbox, caller) != first
    counted = sandbox.stats()["faults"]
    assert counted["status_503"] >= 1 and counted["drop"] >= 1
    sandbox.set_faults(None)
    assert _statuses(sandbox, caller, 5) == ["200"] * 5
    with pytest.raises(ConfigError):
        sandbox.set_faults({"drop_rat": 0.1})


def test_synthetic_dataset_has_every_status_and_non_ascii_names() -> None:
    with IBRSandbox(synthetic=200, seed=5) as sb:
        records = sb.records()
        assert len(records) == 200
        text = json.dumps(records, ensure_ascii=False)
        for needle in (
            "Active",
            "Deceased",
            "Graduated",
            "Suspended",
            "enrollment_status",
            "enrolment_status",
        ):
            assert needle in text
        assert any(ord(c) > 127 for c in text)
        assert (
            records[41]["member"]["demographic_info"]["person"]["identifier_value"]
            == "UIN-00000042"
        )
        shapes = {type(r["member"]["programme_identifier"]).__name__ for r in records}
        assert shapes == {"dict", "list"}
        for status in ("active", "suspended", "graduated", "deceased"):
            assert len(sb.sample_identifiers(status, 3)) == 3
        known = {
            (p["identifier_type"], p["identifier_value"])
            for r in records
            for p in [r["member"]["demographic_info"]["person"]]
        }
        assert not set(sb.sample_identifiers("unknown", 5)) & known
        with pytest.raises(ValueError):
            sb.sample_identifiers("retired")
    with IBRSandbox(synthetic=200, seed=5) as again:
        assert again.records() == records


def test_records_from_list_json_and_csv(tmp_path: Path) -> None:
    with IBRSandbox(synthetic=3) as sb:
        records = sb.records()
    with IBRSandbox(records=records[:2]) as sb:
        assert len(sb.records()) == 2
    json_file = tmp_path / "records.json"
    json_file.write_text(json.dumps({"reg_records": records}), encoding="utf-8")
    with IBRSandbox(records_file=str(json_file)) as sb:
        assert sb.records() == records
    csv_file = tmp_path / "records.csv"
    with csv_file.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id_type",
                "id_value",
                "given_name",
                "family_name",
                "programme_id",
                "programme_name",
                "enrolment_status",
                "enrolment_date",
            ]
        )
        w.writerow(["UIN", "C-1", "Ådne", "Þórsdóttir", "P1", "Cash", "Active", "2024-01-01"])
        w.writerow(["UIN", "C-1", "Ådne", "Þórsdóttir", "P2", "Food", "4", "2024-02-01"])
    with IBRSandbox(records_file=str(csv_file)) as sb:
        (record,) = sb.records()
        assert record["member"]["demographic_info"]["person"]["name"]["first_name"] == "Ådne"
        assert len(record["member"]["programme_identifier"]) == 2
        assert sb.sample_identifiers("active") == [("UIN", "C-1")]
    with pytest.raises(ConfigError):
        IBRSandbox(records_file=str(tmp_path / "missing.json")).start()
    with pytest.raises(ValueError):
        IBRSandbox(records=records, records_file=str(json_file))


def test_enrolled_bare_and_enrollment_updates() -> None:
    with IBRSandbox(synthetic=20, bare_enrolled=True) as sb:
        caller = Caller(sb)
        (id_type, value) = sb.sample_identifiers("active")[0]
        message = {
            "transaction_id": "t",
            "enrolled_criteria": {
                "query_type": "idtype-value",
                "query": {"type": id_type, "value": value},
            },
        }
        answer = caller.post("/registry/sync/enrolled", caller.envelope("search", message)).json()
        assert "header" not in answer
        assert answer["enrolled_response"][0]["enrolled_status"] == "yes"
        update = {
            "transaction_id": "u",
            "enrolled_updates": {
                "beneficiaries": [
                    {
                        "member": {
                            "demographic_info": {
                                "person": {"identifier_type": "NID", "identifier_value": "N-1"}
                            },
                            "programme_identifier": {
                                "programme": {"programme_identifier": "P"},
                                "enrolment_status": "Active",
                            },
                        }
                    }
                ]
            },
        }
        answer = caller.post(
            "/registry/sync/enrollment/updates", caller.envelope("notify", update)
        ).json()
        assert answer["enrolled_response"][0]["status"] == "succ"
        assert len(sb.records()) == 21
        found = caller.search(("r", "NID", "N-1")).json()
        assert len(found["message"]["search_response"][0]["data"]["reg_records"]) == 1


def test_unsigned_unauthenticated_mode() -> None:
    with IBRSandbox(require_auth=False, require_signatures=False, synthetic=5) as sb:
        body = {
            "signature": "",
            "header": {
                "message_id": "m",
                "message_ts": _now(),
                "sender_id": "x",
                "action": "search",
                "total_count": 1,
            },
            "message": search_message(("r", "UIN", "UIN-00000001")),
        }
        resp = httpx.post(sb.url + "/registry/sync/search", json=body)
        assert resp.status_code == 200


def test_error_style_detail() -> None:
    with IBRSandbox(error_style="detail", synthetic=1) as sb:
        resp = httpx.post(sb.url + "/registry/sync/search", json={})
        assert resp.status_code == 401
        assert resp.json()["detail"]["code"] == "err.request.unauthorized"
    with pytest.raises(ValueError):
        IBRSandbox(error_style="html")


def test_client_is_configured_for_the_sandbox(sandbox: IBRSandbox) -> None:
    client = sandbox.client(max_retries=0)
    (id_type, value) = sandbox.sample_identifiers("active")[0]
    found = client.search_by_id(id_type, value)
    assert found["status"] == "succ" and len(found["records"]) == 1
    (id_type, value) = sandbox.sample_identifiers("unknown")[0]
    assert client.search_by_id(id_type, value)["records"] == []
    sandbox.set_faults({"bad_signature_rate": 1.0})
    with pytest.raises(SignatureError):
        client.search_by_id(id_type, value)
    sandbox.set_faults({"drop_rate": 1.0})
    with pytest.raises(TransportError):
        client.search_by_id(id_type, value)


def test_client_wiring_against_the_documented_constructor(
    sandbox: IBRSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """client() passes the documented DCIClient keywords; its key is trusted by the sandbox."""
    seen: dict[str, Any] = {}

    class FakeClient:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(dci, "DCIClient", FakeClient, raising=False)
    sandbox.client(timeout=5.0)
    assert seen["base_url"] == sandbox.url and seen["token_url"] == sandbox.token_url
    assert seen["sender_id"] == SP and seen["receiver_id"] == sandbox.sender_id
    assert seen["auth"] == "oauth2" and seen["client_secret"] == sandbox.client_secret
    assert seen["timeout"] == 5.0 and seen["key_id"] == "test-key-1"
    assert seen["registry_keys"].kids == dci.JWKS.from_json(sandbox.public_jwks()).kids
    # The generated key was registered: a request it signs is accepted.
    caller = Caller(sandbox, key=seen["signing_key"], key_id="test-key-1", register=False)
    assert caller.search(("r", "UIN", "UIN-00000001")).status_code == 200
    seen.clear()
    sandbox.client(unsigned=True, sender_id="other.sp")
    assert "signing_key" not in seen and seen["unsigned"] is True


def test_start_releases_the_gil() -> None:
    """Python threads keep running while start() generates a synthetic dataset.

    With a long switch interval the main thread can only run during start() if start() released
    the GIL; it counts how often it does.
    """
    sb = IBRSandbox(synthetic=20_000, seed=1)
    entering, done = threading.Event(), threading.Event()

    def start() -> None:
        entering.set()
        sb.start()
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        thread = threading.Thread(target=start)
        thread.start()
        entering.wait()
        ticks = 0
        while not done.is_set():
            ticks += 1
            time.sleep(0)  # lets the start thread take the GIL back as soon as it wants it
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    try:
        assert sb.running and len(sb.sample_identifiers("active", 2)) == 2
        assert ticks > 100, ticks
    finally:
        sb.stop()


def test_an_idle_keep_alive_connection_does_not_starve_new_ones() -> None:
    """New connections are served while another client holds an idle keep-alive connection."""
    with IBRSandbox(synthetic=1000, seed=3) as sb, httpx.Client(timeout=10) as held:
        assert held.get(sb.jwks_url).status_code == 200  # then idle in httpx's pool
        service = dci.IBRService(sb.client(max_retries=0, timeout=5))
        ids = sb.sample_identifiers("active", 300) + sb.sample_identifiers("unknown", 100)
        rows = ((i, [x]) for i, x in enumerate(ids))
        results = list(service.check_many(rows, batch_size=50, concurrency=8))
        assert [r.state for r in results] == ["completed"] * len(ids)
        assert held.get(sb.jwks_url).status_code == 200


def test_stop_closes_a_held_keep_alive_connection() -> None:
    """After stop() a client's pooled connection fails at once instead of timing out."""
    with IBRSandbox(synthetic=10) as sb, httpx.Client(timeout=10) as held:
        url = sb.jwks_url
        assert held.get(url).status_code == 200
        sb.stop()
        with pytest.raises(httpx.TransportError) as failed:
            held.get(url)
        assert not isinstance(failed.value, httpx.TimeoutException)


def test_cli_sandbox_options_not_strict_and_one_callback_url(receiver: Receiver) -> None:
    options = ["--synthetic", "5", "--no-auth", "--no-signatures", "--no-strict"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spp_dci_ibr", "sandbox", *options, "--one-callback-url"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        fields = {}
        for line in proc.stdout:
            if line.startswith("  "):
                fields[line[2:16].strip()] = line[16:].strip()
            if line.startswith("Press Ctrl-C"):
                break
        assert fields["enforces"] == "nothing"
        header = {
            "message_id": str(uuid.uuid4()),
            "message_ts": _now(),
            "action": "search",
            "sender_id": SP,
            "total_count": 1,
            "sender_uri": receiver.url.replace("/registry/on-search", "/one/url"),
        }
        body = {"signature": "", "header": header, "message": search_message(("r", "UIN", "x"))}
        body["message"]["search_request"][0]["timestamp"] = ""  # refused in strict mode
        resp = httpx.post(fields["url"] + "/registry/search", json=body, timeout=20)
        assert resp.status_code == 202, resp.text
        path, callback = receiver.next()
        assert (path, callback["header"]["action"]) == ("/one/url", "on-search")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_one_class_every_native_option_reachable() -> None:
    """``IBRSandbox`` is the native sandbox (one class), so its options are all reachable:
    the sandbox's own key, fixed OAuth2 credentials, replay and callback policy."""
    key = dci.SigningKey.generate()
    sandbox = IBRSandbox(
        synthetic=3,
        signing_key=key,
        key_id="k9",
        client_id="fixed-client",
        client_secret="fixed-secret-value",
        reject_replays=False,
        allow_remote_callbacks=False,
    )
    assert isinstance(sandbox, dci._native.Sandbox)
    assert sandbox.start() is sandbox
    try:
        assert (sandbox.client_id, sandbox.client_secret) == ("fixed-client", "fixed-secret-value")
        (published,) = sandbox.public_jwks()["keys"]
        assert published["kid"] == f"{sandbox.sender_id}|k9|ed25519"
        assert published["x"] == key.public_jwk(sandbox.sender_id, "k9")["x"]
        assert repr(sandbox).startswith("IBRSandbox(") and "fixed-secret-value" not in repr(sandbox)
    finally:
        sandbox.stop()
