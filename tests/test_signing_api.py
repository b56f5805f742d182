"""The signing API as a user sees it: outcomes, argument errors, keys, JWKS, replay guard,
the exception tree, and what `import spp_dci_ibr` does (and does not do)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import spp_dci_ibr as dci
from spp_dci_ibr import exceptions
from spp_dci_ibr.exceptions import (
    CanonicalJSONError,
    CapacityError,
    DCIError,
    DCITimeoutError,
    HTTPStatusError,
    KeyFormatError,
    SignatureError,
    TransportError,
)

T0 = 1_705_315_800  # created, in every test that fixes the clock

# RFC 8032 §7.1 TEST 1 seed and its public key as RFC 8037 A.2 publishes it.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"


def header(**changes: Any) -> dict[str, Any]:
    h: dict[str, Any] = {
        "version": "1.0.0",
        "message_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "message_ts": "2024-01-15T10:30:00Z",
        "action": "search",
        "sender_id": "spp.example.org",
        "sender_uri": "https://spp.example.org/callback",
        "receiver_id": "ibr.gov",
        "total_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    h.update(changes)
    return h


MESSAGE = {"transaction_id": "t-1", "search_request": [{"reference_id": "r-1", "name": "Zoë"}]}


@pytest.fixture(scope="module")
def ed() -> dci.SigningKey:
    return dci.SigningKey.from_seed(RFC8032_SEED)


@pytest.fixture(scope="module")
def rs() -> dci.SigningKey:
    return dci.SigningKey.generate("rs256")


def sign(key: dci.SigningKey, h: dict[str, Any], m: dict[str, Any] = MESSAGE, **kw: Any) -> str:
    kw.setdefault("created", T0)
    return dci.sign_envelope(h, m, key, sender_id=h["sender_id"], key_id="k1", **kw)


# --- check_signature outcomes -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "rs256"])
def test_valid_within_the_window_with_pem_bytes_jwk_and_jwks(
    alg: str, ed: dci.SigningKey, rs: dci.SigningKey
) -> None:
    key = ed if alg == "ed25519" else rs
    h = header()
    field = sign(key, h)
    jwk = key.public_jwk("spp.example.org", "k1")
    jwks = dci.JWKS.from_json({"keys": [jwk]})
    for public in (key.public_pem(), key.public_pem().encode(), jwk, jwks):
        for now in (T0 - 60, T0, T0 + 300):
            check = dci.check_signature(field, h, MESSAGE, public, now=now)
            assert check.outcome == "valid"
            assert bool(check) is True
            assert check.kid == f"spp.example.org|k1|{alg}"
            assert check.algorithm == alg
            assert (check.created, check.expires) == (T0, T0 + 300)
            assert check.detail is None
            assert dci.verify_signature(field, h, MESSAGE, public, now=now) is True


@pytest.mark.parametrize(
    ("now", "kw", "outcome"),
    [
        (T0 + 301, {}, "expired"),
        (T0 + 10_000, {}, "expired"),
        (T0 - 61, {}, "not_yet_valid"),
        (T0 - 100, {"max_skew": 100}, "valid"),
        (T0 - 101, {"max_skew": 100}, "not_yet_valid"),
        (T0 + 1, {"max_lifetime": 299}, "lifetime_too_long"),
        (T0 + 1, {"max_lifetime": 300}, "valid"),
    ],
)
def test_time_outcomes(ed: dci.SigningKey, now: int, kw: dict[str, int], outcome: str) -> None:
    h = header()
    check = dci.check_signature(sign(ed, h), h, MESSAGE, ed.public_pem(), now=now, **kw)
    assert check.outcome == outcome
    assert bool(check) is (outcome == "valid")
    assert check.kid == "spp.example.org|k1|ed25519"
    assert dci.verify_signature(sign(ed, h), h, MESSAGE, ed.public_pem(), now=now, **kw) is (
        outcome == "valid"
    )


def test_lifetime_too_long_by_default_and_with_a_custom_maximum(ed: dci.SigningKey) -> None:
    h = header()
    field = sign(ed, h, lifetime=3601)
    check = dci.check_signature(field, h, MESSAGE, ed.public_pem(), now=T0)
    assert (check.outcome, check.expires) == ("lifetime_too_long", T0 + 3601)
    assert not check
    assert dci.check_signature(field, h, MESSAGE, ed.public_pem(), now=T0, max_lifetime=7200)
    at_limit = sign(ed, h, lifetime=3600)
    assert dci.check_signature(at_limit, h, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"


def test_default_clock_is_now(ed: dci.SigningKey) -> None:
    h = header()
    before = int(time.time())
    field = dci.sign_envelope(h, MESSAGE, ed, sender_id="spp.example.org", key_id="k1")
    after = int(time.time())
    check = dci.check_signature(field, h, MESSAGE, ed.public_pem())
    assert check.outcome == "valid"
    assert check.created is not None and before <= check.created <= after
    assert check.expires == check.created + 300


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, m: (header(action="subscribe"), m),
        lambda h, m: (header(total_count=2), m),
        lambda h, m: (header(is_msg_encrypted=True), m),
        lambda h, m: (h, {**m, "transaction_id": "t-2"}),
        lambda h, m: (h, {**m, "extra": None}),
        lambda h, m: ({**h, "extra": "x"}, m),
    ],
)
def test_tampered_envelope_is_invalid(ed: dci.SigningKey, tamper: Any) -> None:
    h = header()
    field = sign(ed, h)
    h2, m2 = tamper(h, MESSAGE)
    check = dci.check_signature(field, h2, m2, ed.public_pem(), now=T0)
    assert check.outcome == "invalid" and not check
    assert check.kid == "spp.example.org|k1|ed25519"


def test_altered_times_or_signature_bytes_are_invalid(ed: dci.SigningKey) -> None:
    h = header()
    field = sign(ed, h)
    moved = field.replace(f'expires="{T0 + 300}"', f'expires="{T0 + 301}"')
    assert moved != field
    assert dci.check_signature(moved, h, MESSAGE, ed.public_pem(), now=T0).outcome == "invalid"
    sig = field.rsplit('signature="', 1)[1].rstrip('"')
    raw = bytearray(base64.b64decode(sig))
    raw[0] ^= 1
    flipped = field.replace(sig, base64.b64encode(bytes(raw)).decode())
    assert dci.check_signature(flipped, h, MESSAGE, ed.public_pem(), now=T0).outcome == "invalid"


def test_key_of_the_other_algorithm_is_invalid(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    h = header()
    check = dci.check_signature(sign(ed, h), h, MESSAGE, rs.public_pem(), now=T0)
    assert (check.outcome, check.algorithm) == ("invalid", "ed25519")
    check = dci.check_signature(sign(rs, h), h, MESSAGE, ed.public_jwk("a", "b"), now=T0)
    assert (check.outcome, check.algorithm) == ("invalid", "rs256")


@pytest.mark.parametrize(
    ("field", "detail"),
    [
        ("", "missing 'created' parameter"),
        ("garbage", "parameter without '='"),
        ('created=10, expires="20"', "parameter value is not quoted"),
        ('created="10', "unterminated parameter value"),
        ('created="10" expires="20"', "parameters must be separated by ','"),
        ('created="10", expires="20", algorithm="ed25519"', "missing 'signature' parameter"),
        ('created="10", expires="20", signature="AAAA"', "missing 'algorithm' parameter"),
        ('expires="20", algorithm="ed25519", signature="AAAA"', "missing 'created' parameter"),
        ('created="10", algorithm="ed25519", signature="AAAA"', "missing 'expires' parameter"),
        ('created="-1", expires="20", algorithm="ed25519", signature="AAAA"', "Unix seconds"),
        ('created="1e3", expires="20", algorithm="ed25519", signature="AAAA"', "Unix seconds"),
        ('created="10", expires="20", algorithm="ed25519", signature="AA*A"', "strict base64"),
        ('created="10", expires="20", algorithm="ed25519", signature="AAA"', "strict base64"),
        (
            'created="10", created="11", expires="20", algorithm="ed25519", signature="AAAA"',
            "twice",
        ),
        (
            'namespace="x", created="10", expires="20", algorithm="ed25519", signature="AAAA"',
            "namespace",
        ),
        (
            'created="10", expires="20", algorithm="hs256", signature="AAAA"',
            "unsupported algorithm",
        ),
    ],
)
def test_malformed_fields_say_why(ed: dci.SigningKey, field: str, detail: str) -> None:
    check = dci.check_signature(field, header(), MESSAGE, ed.public_pem(), now=15)
    assert check.outcome == "malformed"
    assert not check
    assert check.detail is not None and detail in check.detail
    assert dci.verify_signature(field, header(), MESSAGE, ed.public_pem(), now=15) is False


def test_expires_before_created_is_malformed_with_a_detail(ed: dci.SigningKey) -> None:
    field = 'created="20", expires="10", algorithm="ed25519", signature="AAAA"'
    check = dci.check_signature(field, header(), MESSAGE, ed.public_pem(), now=15)
    assert check.outcome == "malformed"
    assert (check.created, check.expires) == (20, 10)
    assert check.detail is not None and "expires" in check.detail


def test_lenient_parameter_names_and_case(ed: dci.SigningKey) -> None:
    h = header()
    field = sign(ed, h)
    variant = (
        field.replace("kidId=", "keyId=")
        .replace('namespace="dci"', 'namespace="spdci"')
        .replace('algorithm="ed25519"', 'algorithm="Ed25519"')
    )
    # reordered parameters, extra unknown ones, no namespace/headers at all
    params = dict(p.split("=", 1) for p in variant.split(", "))
    reordered = ", ".join(f"{k}={params[k]}" for k in reversed(list(params)))
    minimal = ", ".join(
        f"{k}={params[k]}" for k in ("signature", "expires", "created", "algorithm")
    )
    for f in (variant, reordered, minimal + ', ext="1"'):
        check = dci.check_signature(f, h, MESSAGE, ed.public_pem(), now=T0)
        assert check.outcome == "valid"
        assert check.algorithm == "ed25519"
    assert dci.check_signature(minimal, h, MESSAGE, ed.public_pem(), now=T0).kid is None


def test_unknown_key_with_a_jwks(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    h = header()
    field = sign(ed, h)
    other = dci.SigningKey.generate()
    two = dci.JWKS.from_json(
        {
            "keys": [
                other.public_jwk("spp.example.org", "k2"),
                rs.public_jwk("spp.example.org", "k1"),
            ]
        }
    )
    check = dci.check_signature(field, h, MESSAGE, two, now=T0)
    assert check.outcome == "unknown_key" and not check
    assert check.kid == "spp.example.org|k1|ed25519"
    assert dci.verify_signature(field, h, MESSAGE, two, now=T0) is False
    # the full kid selects the key among several
    three = dci.JWKS.from_json(
        {"keys": [*two.to_dict()["keys"], ed.public_jwk("spp.example.org", "k1")]}
    )
    assert dci.check_signature(field, h, MESSAGE, three, now=T0).outcome == "valid"
    # a set of exactly one key: that key is tried whatever the kid says
    one = dci.JWKS.from_json({"keys": [ed.public_jwk("spp.example.org", "other")]})
    assert dci.check_signature(field, h, MESSAGE, one, now=T0).outcome == "valid"
    one_wrong = dci.JWKS.from_json({"keys": [other.public_jwk("spp.example.org", "other")]})
    assert dci.check_signature(field, h, MESSAGE, one_wrong, now=T0).outcome == "invalid"


def test_kid_sender_must_be_the_header_sender(ed: dci.SigningKey) -> None:
    # PROTOCOL §3: the kid's sender part must equal header.sender_id, whatever key verifies it.
    h = header(sender_id="honest.example.org")
    field = dci.sign_envelope(
        h, MESSAGE, ed, sender_id="other.example.org", key_id="k1", created=T0
    )
    check = dci.check_signature(field, h, MESSAGE, ed.public_pem(), now=T0)
    assert check.outcome == "invalid"
    assert check.kid == "other.example.org|k1|ed25519"
    assert check.detail is not None and "sender" in check.detail
    assert not dci.verify_signature(field, h, MESSAGE, ed.public_pem(), now=T0)


# --- the OpenSPP header normalisation fallback --------------------------------------------------


def test_signed_with_defaults_received_without_them(ed: dci.SigningKey) -> None:
    signed = header()
    field = sign(ed, signed)
    received = {k: v for k, v in signed.items() if k not in ("version", "is_msg_encrypted")}
    assert dci.check_signature(field, received, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"
    for missing in ("version", "is_msg_encrypted"):
        one = {k: v for k, v in signed.items() if k != missing}
        assert dci.check_signature(field, one, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"


def test_signed_with_nulls_dropped_received_with_nulls(ed: dci.SigningKey) -> None:
    signed = header()
    del signed["sender_uri"]
    field = sign(ed, signed)
    received = {**signed, "sender_uri": None, "status_reason_code": None}
    assert dci.check_signature(field, received, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"
    # both at once: defaults missing and nulls present
    bare = {k: v for k, v in received.items() if k not in ("version", "is_msg_encrypted")}
    assert dci.check_signature(field, bare, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"


def test_signed_with_nulls_kept_received_without_defaults(ed: dci.SigningKey) -> None:
    signed = header(sender_uri=None)
    field = sign(ed, signed)
    received = {k: v for k, v in signed.items() if k != "version"}
    assert dci.check_signature(field, received, MESSAGE, ed.public_pem(), now=T0).outcome == "valid"


def test_normalisation_never_hides_tampering(ed: dci.SigningKey) -> None:
    signed = header()
    field = sign(ed, signed)
    base = {k: v for k, v in signed.items() if k not in ("version", "is_msg_encrypted")}
    for received in (
        {**base, "action": "subscribe"},
        {**base, "version": "2.0.0"},
        {**base, "is_msg_encrypted": True},
        {**base, "sender_uri": None},  # a real value replaced by null is not a dropped null
    ):
        check = dci.check_signature(field, received, MESSAGE, ed.public_pem(), now=T0)
        assert check.outcome == "invalid", received
    # it only fills in: a signature over a bare header does not verify a header with defaults
    bare = {k: v for k, v in signed.items() if k != "version"}
    field = sign(ed, bare)
    assert dci.check_signature(field, signed, MESSAGE, ed.public_pem(), now=T0).outcome == "invalid"


# --- sign_envelope arguments --------------------------------------------------------------------


def test_sign_envelope_key_forms_give_the_same_field(ed: dci.SigningKey) -> None:
    h = header()
    want = sign(ed, h)
    assert sign(ed, h, algorithm="ed25519") == want
    assert sign(ed, h, algorithm="ED25519") == want
    for key in (ed.private_pem(), ed.private_pem().encode(), RFC8032_SEED):
        assert (
            dci.sign_envelope(h, MESSAGE, key, sender_id="spp.example.org", key_id="k1", created=T0)
            == want
        )


def test_sign_envelope_field_shape(ed: dci.SigningKey) -> None:
    field = sign(ed, header(), lifetime=60)
    prefix = (
        'namespace="dci", kidId="spp.example.org|k1|ed25519", algorithm="ed25519", '
        f'created="{T0}", expires="{T0 + 60}", headers="(created) (expires) digest", signature="'
    )
    assert field.startswith(prefix)
    assert len(base64.b64decode(field[len(prefix) : -1], validate=True)) == 64


def test_sign_envelope_argument_errors(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    h = header()
    with pytest.raises(KeyFormatError, match="'rs256' does not match the ed25519 key"):
        sign(ed, h, algorithm="rs256")
    with pytest.raises(KeyFormatError, match="'ed25519' does not match the rs256 key"):
        sign(rs, h, algorithm="ed25519")
    with pytest.raises(ValueError, match="algorithm must be 'ed25519' or 'rs256'"):
        sign(ed, h, algorithm="hs256")
    for lifetime in (0, -1):
        with pytest.raises(ValueError, match="lifetime must be a positive"):
            sign(ed, h, lifetime=lifetime)
    for bad in ("a|b", "", 'a"b', "a\nb", "a\rb"):
        with pytest.raises(SignatureError, match="sender_id"):
            dci.sign_envelope(h, MESSAGE, ed, sender_id=bad, key_id="k1", created=T0)
        with pytest.raises(SignatureError, match="key_id"):
            dci.sign_envelope(h, MESSAGE, ed, sender_id="s", key_id=bad, created=T0)
    with pytest.raises(TypeError, match="private_key must be str or bytes"):
        dci.sign_envelope(h, MESSAGE, 42, sender_id="s", key_id="k1")  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError, match="public key"):
        dci.sign_envelope(h, MESSAGE, ed.public_pem(), sender_id="s", key_id="k1")
    with pytest.raises(KeyFormatError, match="not a PEM block"):
        dci.sign_envelope(h, MESSAGE, b"\x00" * 31, sender_id="s", key_id="k1")
    with pytest.raises(CanonicalJSONError):
        dci.sign_envelope(h, {"bad": {1, 2}}, ed, sender_id="s", key_id="k1")
    with pytest.raises(CanonicalJSONError):
        dci.sign_envelope({1: "x"}, MESSAGE, ed, sender_id="s", key_id="k1")


@pytest.mark.parametrize(
    ("created", "lifetime"),
    [(-5, 300), (10**12, 300), (2**62, 2**62), (2**63 - 1, 1)],
    ids=["negative", "13-digits", "overflow", "max-plus-one"],
)
def test_sign_envelope_never_returns_a_field_its_verifier_cannot_read(
    ed: dci.SigningKey, created: int, lifetime: int
) -> None:
    # Either sign_envelope refuses the times (ValueError), or check_signature accepts what it
    # signed. `created + lifetime` beyond i64 can only be refused.
    try:
        field = sign(ed, header(), created=created, lifetime=lifetime)
    except ValueError:
        return
    check = dci.check_signature(
        field, header(), MESSAGE, ed.public_pem(), now=created, max_lifetime=lifetime
    )
    assert check.outcome == "valid", f"signed {field!r}; check says {check.outcome}"
    assert (check.created, check.expires) == (created, created + lifetime)


def test_public_key_argument_errors(ed: dci.SigningKey) -> None:
    h = header()
    field = sign(ed, h)
    with pytest.raises(KeyFormatError, match="holds a private key"):
        dci.check_signature(field, h, MESSAGE, ed.private_pem(), now=T0)
    for junk in ("junk", b"junk", {"kty": "EC"}, {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}):
        with pytest.raises(KeyFormatError):
            dci.check_signature(field, h, MESSAGE, junk, now=T0)
        with pytest.raises(KeyFormatError):
            dci.verify_signature(field, h, MESSAGE, junk, now=T0)
    with pytest.raises(TypeError, match="public_key must be"):
        dci.check_signature(field, h, MESSAGE, 42, now=T0)  # type: ignore[arg-type]


# --- SigningKey ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "alg"), [("ed25519", "ed25519"), ("EdDSA", "ed25519"), ("RS256", "rs256")]
)
def test_generate_both_algorithms(name: str, alg: str) -> None:
    key = dci.SigningKey.generate(name)
    assert key.algorithm == alg
    again = dci.SigningKey.from_pem(key.private_pem())
    assert again.public_pem() == key.public_pem()
    assert again.algorithm == alg
    h = header()
    field = sign(again, h)
    assert dci.check_signature(field, h, MESSAGE, key.public_pem(), now=T0).outcome == "valid"
    assert key.public_pem().startswith("-----BEGIN PUBLIC KEY-----\n")
    assert key.public_pem().endswith("\n-----END PUBLIC KEY-----\n")
    assert all(len(line) <= 64 for line in key.public_pem().splitlines())


def test_generate_distinct_keys() -> None:
    assert dci.SigningKey.generate().public_pem() != dci.SigningKey.generate().public_pem()


def test_generate_bounds() -> None:
    assert dci.SigningKey.generate("ed25519", bits=1).algorithm == "ed25519"  # bits is RSA only
    for bits in (0, 1024, 2047, 4097, 8192):
        with pytest.raises(KeyFormatError, match=f"2048 to 4096 bits, not {bits}"):
            dci.SigningKey.generate("rs256", bits)
    with pytest.raises(ValueError, match="algorithm must be"):
        dci.SigningKey.generate("es256")


def test_from_seed(ed: dci.SigningKey) -> None:
    assert ed.algorithm == "ed25519"
    assert ed.public_jwk("a", "b") == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC8037_X,
        "use": "sig",
        "alg": "EdDSA",
        "kid": "a|b|ed25519",
    }
    assert dci.SigningKey.from_pem(ed.private_pem()).public_pem() == ed.public_pem()
    for n in (0, 31, 33, 64):
        with pytest.raises(KeyFormatError, match=f"32 bytes, not {n}"):
            dci.SigningKey.from_seed(b"\x01" * n)
    with pytest.raises(TypeError):
        dci.SigningKey.from_seed(RFC8032_SEED.hex())  # type: ignore[arg-type]


def test_from_pem_refusals(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    for key in (ed, rs):
        with pytest.raises(KeyFormatError, match="this is a public key; a private key is needed"):
            dci.SigningKey.from_pem(key.public_pem())
        with pytest.raises(KeyFormatError, match="this is a public key"):
            dci.SigningKey.from_pem(key.public_pem().encode())
    with pytest.raises(KeyFormatError, match="not a PEM block"):
        dci.SigningKey.from_pem("not a key")
    with pytest.raises(KeyFormatError, match="encrypted private keys are not supported"):
        dci.SigningKey.from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
    with pytest.raises(KeyFormatError, match="unsupported PEM block 'CERTIFICATE'"):
        dci.SigningKey.from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def _pem_body(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if not line.startswith("-----")]


def test_repr_and_errors_show_no_key_material(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    seed_hex = RFC8032_SEED.hex()
    for key in (ed, rs):
        text = repr(key) + str(key) + f"{key!r} {key}"
        assert text.startswith(f"SigningKey(algorithm='{key.algorithm}', public_sha256='")
        for line in _pem_body(key.private_pem()):
            assert line not in text
            assert line[:16] not in text
        assert seed_hex not in text and seed_hex.upper() not in text
        assert base64.b64encode(RFC8032_SEED).decode() not in text
    # a damaged private key: the error names the problem, not the bytes
    body = _pem_body(rs.private_pem())
    damaged = (
        "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body[:5]) + "\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFormatError) as info:
        dci.SigningKey.from_pem(damaged)
    assert all(line[:16] not in str(info.value) for line in body)


# --- JWKS ---------------------------------------------------------------------------------------


def test_jwks_from_str_bytes_and_dict(ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    doc = {"keys": [ed.public_jwk("spp.example.org", "k1"), rs.public_jwk("spp.example.org", "k2")]}
    text = json.dumps(doc)
    for source in (doc, text, text.encode()):
        jwks = dci.JWKS.from_json(source)
        assert len(jwks) == 2
        assert jwks.kids == ["spp.example.org|k1|ed25519", "spp.example.org|k2|rs256"]
        assert jwks.skipped == []
        assert jwks.to_dict() == doc
        assert jwks.get("spp.example.org|k2|rs256") == rs.public_jwk("spp.example.org", "k2")
        # by full kid only: not by key_id, not by a prefix, not case-folded
        for partial in ("k1", "spp.example.org|k1", "SPP.example.org|k1|ed25519", ""):
            assert jwks.get(partial) is None
    assert repr(dci.JWKS.from_json(doc)) == (
        'JWKS(kids=["spp.example.org|k1|ed25519", "spp.example.org|k2|rs256"])'
    )


def test_jwks_skips_unusable_keys_with_reasons(ed: dci.SigningKey) -> None:
    good = ed.public_jwk("s", "k1")
    doc = {
        "keys": [
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
            {"kty": "OKP", "crv": "X25519", "x": RFC8037_X, "kid": "x25519"},
            {**ed.public_jwk("s", "k3"), "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"},
            "not an object",
            good,
            {k: v for k, v in good.items() if k != "kid"},
        ]
    }
    jwks = dci.JWKS.from_json(doc)
    assert len(jwks) == 2
    assert jwks.kids == ["s|k1|ed25519", None]
    reasons = dict(jwks.skipped)
    assert list(reasons) == ["ec", "x25519", "s|k3|ed25519", "short", None]
    assert "key type 'EC' is not supported" in reasons["ec"]
    assert "X25519" in reasons["x25519"]
    assert "'enc'" in reasons["s|k3|ed25519"]
    assert "32 bytes, not 3" in reasons["short"]
    assert "JSON object" in reasons[None]
    assert jwks.to_dict() == {"keys": [good, {k: v for k, v in good.items() if k != "kid"}]}
    # A private key is not an unusable key to skip: the whole set is refused.
    doc["keys"].append({**ed.public_jwk("s", "k2"), "d": "AAAA"})
    with pytest.raises(KeyFormatError, match="private member 'd'"):
        dci.JWKS.from_json(doc)


def test_jwks_refusals(ed: dci.SigningKey) -> None:
    padded = json.dumps({"keys": [ed.public_jwk("s", "k")]}) + " " * (1 << 20)
    for big in (padded, padded.encode()):
        with pytest.raises(KeyFormatError, match="at most 1048576"):
            dci.JWKS.from_json(big)
    just_fits = json.dumps({"keys": [ed.public_jwk("s", "k")]})
    just_fits += " " * ((1 << 20) - len(just_fits))
    assert len(dci.JWKS.from_json(just_fits)) == 1
    for doc in ({"nokeys": []}, {"keys": {}}, {"keys": None}, "[]", "null", "not json", b"\xff"):
        with pytest.raises(KeyFormatError):
            dci.JWKS.from_json(doc)
    with pytest.raises(KeyFormatError, match="at most 256"):
        dci.JWKS.from_json({"keys": [ed.public_jwk("s", "k")] * 257})
    with pytest.raises(TypeError):
        dci.JWKS.from_json([])  # type: ignore[arg-type]


# --- pem_to_jwk / jwk_to_pem --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "rs256"])
def test_pem_jwk_round_trips(alg: str, ed: dci.SigningKey, rs: dci.SigningKey) -> None:
    key = ed if alg == "ed25519" else rs
    pem = key.public_pem()
    jwk = dci.pem_to_jwk(pem)
    assert "kid" not in jwk
    assert jwk["use"] == "sig"
    assert jwk["alg"] == ("EdDSA" if alg == "ed25519" else "RS256")
    assert dci.jwk_to_pem(jwk) == pem
    assert dci.jwk_to_pem(json.dumps(jwk)) == pem
    assert dci.pem_to_jwk(pem.encode(), kid="s|k|" + alg) == key.public_jwk("s", "k")
    assert dci.jwk_to_pem(key.public_jwk("s", "k")) == pem
    with pytest.raises(KeyFormatError, match="private key"):
        dci.pem_to_jwk(key.private_pem())


def test_jwk_to_pem_refusals(ed: dci.SigningKey) -> None:
    jwk = ed.public_jwk("s", "k")
    for bad in (
        {**jwk, "d": "AAAA"},
        {**jwk, "crv": "X25519"},
        {**jwk, "kty": "EC"},
        {**jwk, "x": "!!!"},
        {**jwk, "alg": "RS256"},
        {k: v for k, v in jwk.items() if k != "x"},
        "not json",
        "[]",
    ):
        with pytest.raises(KeyFormatError):
            dci.jwk_to_pem(bad)
    with pytest.raises(TypeError):
        dci.jwk_to_pem(42)  # type: ignore[arg-type]


# --- ReplayGuard --------------------------------------------------------------------------------


def test_replay_guard_first_replay_and_expiry() -> None:
    guard = dci.ReplayGuard()
    assert len(guard) == 0
    assert guard.check("s", "m1", expires=100, now=0) is True
    assert guard.check("s", "m1", expires=100, now=50) is False
    assert guard.check("s", "m1", expires=100, now=100) is False  # live through its expiry second
    assert guard.check("other", "m1", expires=100, now=50) is True  # per sender
    assert guard.check("s", "m2", expires=100, now=50) is True
    assert len(guard) == 3
    assert guard.check("s", "m1", expires=300, now=101) is True  # forgotten after expiry
    assert len(guard) == 1


def test_replay_guard_without_explicit_now() -> None:
    guard = dci.ReplayGuard()
    far = int(time.time()) + 3600
    assert guard.check("s", "m", far) is True
    assert guard.check("s", "m", far) is False
    assert guard.check("s", "old", 0) is True  # already expired: remembered, then purged
    assert guard.check("s", "other", far) is True
    assert len(guard) == 2


def test_replay_guard_capacity() -> None:
    guard = dci.ReplayGuard(max_entries=3)
    for i in range(3):
        assert guard.check("s", f"m{i}", expires=100, now=0)
    with pytest.raises(CapacityError, match="3 unexpired"):
        guard.check("s", "m3", expires=100, now=0)
    assert guard.check("s", "m0", expires=100, now=0) is False  # a replay is still recognised
    assert len(guard) == 3
    assert guard.check("s", "m3", expires=200, now=101) is True  # room after expiry
    assert len(guard) == 1


def test_replay_guard_is_thread_safe() -> None:
    guard = dci.ReplayGuard(max_entries=10_000)
    ids = [f"m{i}" for i in range(2000)]
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    firsts: list[int] = [0] * n_threads

    def worker(slot: int) -> None:
        barrier.wait()
        order = ids if slot % 2 else list(reversed(ids))
        firsts[slot] = sum(guard.check("s", m, expires=100, now=0) for m in order)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(firsts) == len(ids)  # each message accepted exactly once across all threads
    assert len(guard) == len(ids)


# --- the exception tree -------------------------------------------------------------------------


def test_every_exception_derives_from_dcierror() -> None:
    assert len(exceptions.__all__) >= 13
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert isinstance(cls, type) and issubclass(cls, DCIError), name
        assert cls.__module__ == "spp_dci_ibr.exceptions"
        assert cls.__doc__


def test_builtin_bases() -> None:
    assert issubclass(KeyFormatError, ValueError)
    assert issubclass(exceptions.ConfigError, ValueError)
    assert issubclass(CanonicalJSONError, TypeError)
    assert issubclass(DCITimeoutError, TimeoutError)
    assert issubclass(DCITimeoutError, TransportError)
    assert not issubclass(SignatureError, ValueError)
    err = HTTPStatusError("registry said no", status=503, code="err.service.unavailable")
    assert (err.status, err.code, str(err)) == (503, "err.service.unavailable", "registry said no")
    assert (HTTPStatusError("x").status, HTTPStatusError("x").code) == (0, None)
    assert exceptions.RegistryError("nack", code="rjct.reference_id.invalid").code == (
        "rjct.reference_id.invalid"
    )


def test_native_errors_are_the_python_classes() -> None:
    with pytest.raises(KeyFormatError) as info:
        dci.SigningKey.from_seed(b"")
    assert type(info.value) is exceptions.KeyFormatError
    with pytest.raises(CanonicalJSONError) as cj:
        dci.canonical_json({1, 2})
    assert type(cj.value) is exceptions.CanonicalJSONError


# --- import side effects ------------------------------------------------------------------------

_IMPORT_PROBE = """
import json, os, sys, threading
before = (threading.active_count(), len(os.listdir("/proc/self/task")))
import spp_dci_ibr
after = (threading.active_count(), len(os.listdir("/proc/self/task")))
print(json.dumps({
    "before": before,
    "after": after,
    "heavy": sorted(m for m in ("fastapi", "httpx", "starlette", "pydantic", "cryptography")
                    if m in sys.modules),
}))
"""


def test_import_starts_no_thread_and_pulls_in_no_web_stack() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    probe = json.loads(out.stdout)
    assert probe["after"] == probe["before"]  # neither Python nor OS threads
    assert probe["heavy"] == []
