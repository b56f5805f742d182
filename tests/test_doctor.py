"""``spp_dci_ibr.doctor`` against the embedded sandbox (healthy, then each fault, which the report
must name: the right step fails with the right explanation), and ``explain_signature`` on the
signature vectors."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from doctor_support import STEP_IDS, published_jwks
from spp_dci_ibr import SigningKey, doctor, explain_signature
from spp_dci_ibr.sandbox import IBRSandbox

SENDER = "doctor.py.test"
KEY_ID = "doc-1"


def run_doctor(faults: dict[str, Any] | None = None, **client: Any) -> dict[str, Any]:
    key = SigningKey.generate()
    with IBRSandbox(synthetic=10, faults=faults) as sb:
        dci = sb.client(
            sender_id=SENDER,
            key_id=KEY_ID,
            signing_key=key,
            registry_keys=None,
            registry_jwks_url=sb.jwks_url,
            allow_insecure_jwks=True,
            **client,
        )
        with published_jwks({"keys": [key.public_jwk(SENDER, KEY_ID)]}) as url:
            report: dict[str, Any] = doctor(dci, our_jwks_url=url)
        report["_secret"] = sb.client_secret
        return report


def step(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    [found] = [s for s in report["steps"] if s["id"] == step_id]
    return found


@pytest.fixture(scope="module")
def healthy() -> Iterator[dict[str, Any]]:
    yield run_doctor()


def test_a_healthy_sandbox_passes_every_step(healthy: dict[str, Any]) -> None:
    assert [s["id"] for s in healthy["steps"]] == list(STEP_IDS)
    statuses = {s["id"]: s["status"] for s in healthy["steps"]}
    assert statuses.pop("tls") == "skip"  # plain http to loopback: nothing to verify
    assert set(statuses.values()) == {"pass"}, healthy
    assert healthy["ok"] is True and healthy["exit_code"] == 0
    assert healthy["summary"] == {"pass": 9, "warn": 0, "fail": 0, "skip": 1}
    assert f"{SENDER}|{KEY_ID}|ed25519" in step(healthy, "our_key")["found"]
    assert "sandbox-key-1" in step(healthy, "registry_jwks")["found"]
    assert all(s["fix"] is None for s in healthy["steps"])


def test_the_report_holds_no_secret(healthy: dict[str, Any]) -> None:
    secret = healthy.pop("_secret")
    assert secret not in repr(healthy)
    assert "access_token" not in repr(healthy)


@pytest.mark.parametrize(
    ("faults", "step_id", "words"),
    [
        ({"unsigned_rate": 1.0}, "answer_signature", ["not signed", "must sign"]),
        (
            {"wrong_key_rate": 1.0},
            "answer_signature",
            ["sandbox-key-1-unpublished", "does not publish"],
        ),
        ({"bad_signature_rate": 1.0}, "answer_signature", ["does not verify"]),
        ({"clock_skew_s": 300}, "clock_skew", ["s ahead of ours", "NTP"]),
        ({"clock_skew_s": -300}, "clock_skew", ["s behind ours", "signatures are refused"]),
        ({"bad_token_rate": 1.0}, "search", ["401", "refused our token"]),
        ({"refuse_tokens": True}, "token", ["invalid_client", "client_secret"]),
    ],
)
def test_each_fault_is_named_by_its_step(
    faults: dict[str, Any], step_id: str, words: list[str]
) -> None:
    report = run_doctor(faults)
    found = step(report, step_id)
    text = f"{found['found']} || {found['fix']}"
    assert found["status"] == "fail", report
    for word in words:
        assert word in text, text
    assert report["exit_code"] == 3 and report["ok"] is False
    # Nothing before the faulty part fails for it.
    assert step(report, "reachable")["status"] == "pass"
    assert step(report, "our_key")["status"] == "pass"


def test_a_small_skew_warns() -> None:
    report = run_doctor({"clock_skew_s": 30})
    assert step(report, "clock_skew")["status"] == "warn"
    assert step(report, "answer_signature")["status"] == "pass"
    assert report["exit_code"] == 1


def test_a_skewed_registry_signature_is_explained_as_a_clock_problem() -> None:
    report = run_doctor({"clock_skew_s": 300})
    sig = step(report, "answer_signature")
    assert sig["status"] == "fail"
    assert "not_yet_valid" in sig["found"] and "clock" in sig["fix"]


def test_no_registry_keys_warns() -> None:
    with IBRSandbox(synthetic=10) as sb:
        dci = sb.client(registry_keys=None, accept_unverified_answers=True)
        report = doctor(dci)
    assert step(report, "registry_jwks")["status"] == "warn"
    assert step(report, "answer_signature")["status"] == "warn"
    assert step(report, "our_key")["status"] == "skip"
    assert report["exit_code"] == 1


# ---- explain_signature on the vectors ------------------------------------------------------


def vector_case(vectors: dict[str, Any], name: str) -> dict[str, Any]:
    [case] = [c for c in vectors["verify_cases"] if c["name"] == name]
    return case


def explain(vectors: dict[str, Any], case: dict[str, Any], key: Any) -> dict[str, Any]:
    result: dict[str, Any] = explain_signature(
        case["signature"], case["header"], case["message"], key, now=case["now"]
    )
    return result


def test_explain_valid(vectors: dict[str, Any]) -> None:
    case = vector_case(vectors, "valid at created")
    e = explain(vectors, case, vectors["keys"]["ed25519"]["public_pem"])
    assert e["valid"] is True and e["outcome"] == "valid"
    assert e["verified_form"] == "as_received"
    assert e["signing_string"].startswith("(created): 1705315800\n(expires): 1705316100\ndigest: ")
    assert e["signing_string"].endswith(e["canonical_sha256"])
    assert e["key"]["chosen"] == "the one key given"
    assert e["key"]["forms"][0] == {
        "form": "as_received",
        "digest": e["canonical_sha256"],
        "same_as": None,
        "verified": True,
    }
    assert e["reasons"] == []


def test_explain_tampered(vectors: dict[str, Any]) -> None:
    case = vector_case(vectors, "tampered message")
    e = explain(vectors, case, vectors["keys"]["ed25519"]["public_pem"])
    assert e["outcome"] == "invalid" and e["verified_form"] is None
    assert e["key"]["forms"] and not any(f["verified"] for f in e["key"]["forms"])
    assert any("does not verify" in r for r in e["reasons"])


def test_explain_unknown_and_wrong_kid(vectors: dict[str, Any]) -> None:
    case = vector_case(vectors, "valid at created")
    ours = copy.deepcopy(vectors["keys"]["ed25519"]["jwk"])
    ours["kid"] = "openspp.example.org|key-ed-9|ed25519"
    other = vectors["keys"]["rs256"]["jwk"]
    # Unknown kid: a set of two keys, none under the signature's kid.
    e = explain(vectors, case, {"keys": [ours, other]})
    assert e["outcome"] == "unknown_key" and e["key"] is None
    assert e["reasons"][0].startswith("no key for kid openspp.example.org|key-ed-1|ed25519")
    assert set(e["available_kids"]) == {ours["kid"], other["kid"]}
    # Wrong kid: the set's only key is tried whatever the kid (here the wrong key: RSA).
    e = explain(vectors, case, {"keys": [other]})
    assert e["outcome"] == "invalid"
    assert e["key"]["chosen"] == "only key of the set"
    assert any("is not in the set" in r for r in e["reasons"])
    assert any("cannot verify" in r for r in e["reasons"])


def test_explain_agrees_with_check_on_every_vector(vectors: dict[str, Any]) -> None:
    for case in vectors["verify_cases"]:
        key = vectors["keys"][case["key"]]["public_pem"]
        assert explain(vectors, case, key)["outcome"] == case["expect"], case["name"]
