"""Every case of spec/signature_vectors.json, through the Python API."""

from __future__ import annotations

import json
from typing import Any

import pytest
import spp_dci_ibr as dci
from conftest import VECTORS
from spp_dci_ibr.exceptions import KeyFormatError

_DATA = json.loads(VECTORS.read_text(encoding="utf-8"))


def _key_id(vectors: dict[str, Any], alg: str) -> str:
    kid: str = vectors["keys"][alg]["jwk"]["kid"]
    return kid.split("|")[1]


@pytest.mark.parametrize("case", _DATA["sign_cases"], ids=lambda c: c["name"])
def test_sign_case_reproduces_the_exact_signature(
    case: dict[str, Any], vectors: dict[str, Any]
) -> None:
    alg = case["algorithm"]
    header, message = case["header"], case["message"]
    assert dci.canonical_json({"header": header, "message": message}) == case["canonical"]
    for key in (
        vectors["keys"][alg]["private_pem"],
        dci.SigningKey.from_pem(vectors["keys"][alg]["private_pem"]),
    ):
        sig = dci.sign_envelope(
            header,
            message,
            key,
            sender_id=header["sender_id"],
            key_id=_key_id(vectors, alg),
            created=case["created"],
            lifetime=case["expires"] - case["created"],
        )
        assert sig == case["signature"]
    check = dci.check_signature(
        case["signature"], header, message, vectors["keys"][alg]["jwk"], now=case["created"]
    )
    assert check.outcome == "valid" and bool(check)
    assert check.algorithm == alg and check.kid == vectors["keys"][alg]["jwk"]["kid"]


@pytest.mark.parametrize("case", _DATA["verify_cases"], ids=lambda c: c["name"])
def test_verify_case_gives_its_outcome(case: dict[str, Any], vectors: dict[str, Any]) -> None:
    for public_key in (
        vectors["keys"][case["key"]]["public_pem"],
        vectors["keys"][case["key"]]["jwk"],
    ):
        check = dci.check_signature(
            case["signature"], case["header"], case["message"], public_key, now=case["now"]
        )
        assert check.outcome == case["expect"]
        assert bool(check) is (case["expect"] == "valid")
        assert dci.verify_signature(
            case["signature"], case["header"], case["message"], public_key, now=case["now"]
        ) is (case["expect"] == "valid")


@pytest.mark.parametrize("case", _DATA["jwk_cases"], ids=lambda c: c["name"])
def test_jwk_case(case: dict[str, Any]) -> None:
    if case["expect"] == "ok":
        assert dci.jwk_to_pem(case["jwk"]) == case["pem"]
        assert dci.jwk_to_pem(json.dumps(case["jwk"])) == case["pem"]
        back = dci.pem_to_jwk(case["pem"])
        for member in ("kty", "crv", "x", "n", "e"):
            assert back.get(member) == case["jwk"].get(member)
    else:
        with pytest.raises(KeyFormatError):
            dci.jwk_to_pem(case["jwk"])


def test_seed_key_matches_the_vector_key(vectors: dict[str, Any]) -> None:
    ed = vectors["keys"]["ed25519"]
    key = dci.SigningKey.from_seed(bytes.fromhex(ed["seed_hex"]))
    assert key.public_pem() == ed["public_pem"]
    assert key.public_jwk("openspp.example.org", "key-ed-1") == ed["jwk"]
    rsa = dci.SigningKey.from_pem(vectors["keys"]["rs256"]["private_pem"])
    assert (
        rsa.public_jwk("openspp.example.org", "key-rs-1")["n"]
        == vectors["keys"]["rs256"]["jwk"]["n"]
    )


def test_expired_vector_checked_against_a_jwks_by_full_kid(vectors: dict[str, Any]) -> None:
    case = _DATA["sign_cases"][0]
    jwks = dci.JWKS.from_json(
        {"keys": [vectors["keys"]["rs256"]["jwk"], vectors["keys"]["ed25519"]["jwk"]]}
    )
    assert len(jwks) == 2
    check = dci.check_signature(
        case["signature"], case["header"], case["message"], jwks, now=case["created"]
    )
    assert check.outcome == "valid"
    other = dci.JWKS.from_json(
        {
            "keys": [
                vectors["keys"]["rs256"]["jwk"],
                {**vectors["keys"]["ed25519"]["jwk"], "kid": "x|y|ed25519"},
            ]
        }
    )
    assert (
        dci.check_signature(
            case["signature"], case["header"], case["message"], other, now=case["created"]
        ).outcome
        == "unknown_key"
    )
