"""Cross-checks with `cryptography` as an independent oracle, for both algorithms.

What we sign, cryptography verifies over a signing string rebuilt here from PROTOCOL §2 with the
stdlib; what cryptography signs (a signature field built here per §2.5), we accept. Keys travel
both ways as PEM (PKCS#8, PKCS#1, SubjectPublicKeyInfo) and raw seeds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any

import pytest
import spp_dci_ibr as dci
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spp_dci_ibr.exceptions import KeyFormatError

ALGS = ("ed25519", "rs256")
PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
NO_ENC = serialization.NoEncryption()

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


# --- the protocol, rebuilt with the stdlib ------------------------------------------------------


def canonical(header: dict[str, Any], message: dict[str, Any]) -> str:
    return json.dumps({"header": header, "message": message}, sort_keys=True, separators=(",", ":"))


def signing_string(
    header: dict[str, Any], message: dict[str, Any], created: int, expires: int
) -> bytes:
    digest = base64.b64encode(hashlib.sha256(canonical(header, message).encode()).digest()).decode()
    return f"(created): {created}\n(expires): {expires}\ndigest: {digest}".encode()


def signature_field(kid: str, alg: str, created: int, expires: int, sig: bytes) -> str:
    return (
        f'namespace="dci", kidId="{kid}", algorithm="{alg}", created="{created}", '
        f'expires="{expires}", headers="(created) (expires) digest", '
        f'signature="{base64.b64encode(sig).decode()}"'
    )


PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_field(field: str) -> dict[str, str]:
    params = dict(PARAM.findall(field))
    assert list(params) == [
        "namespace",
        "kidId",
        "algorithm",
        "created",
        "expires",
        "headers",
        "signature",
    ]
    return params


def oracle_sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def oracle_verify(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def oracle_jwk(key: PublicKey, kid: str) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}
    numbers = key.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url_uint(numbers.n),
        "e": b64url_uint(numbers.e),
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
    }


def public_pem(key: PublicKey) -> str:
    return key.public_bytes(PEM, SPKI).decode()


# --- keys, generated once per module ------------------------------------------------------------


@pytest.fixture(scope="module")
def ours() -> dict[str, dci.SigningKey]:
    return {alg: dci.SigningKey.generate(alg) for alg in ALGS}


@pytest.fixture(scope="module")
def ours_with_oracle() -> dict[str, tuple[dci.SigningKey, PrivateKey]]:
    """Our keys, each with the same key loaded in cryptography.

    The Ed25519 key goes over as a raw seed so the signing property does not depend on the PEM
    interop (tested on its own below).
    """
    seed = os.urandom(32)
    rsa_key = dci.SigningKey.generate("rs256")
    rsa_oracle = serialization.load_pem_private_key(rsa_key.private_pem().encode(), None)
    assert isinstance(rsa_oracle, rsa.RSAPrivateKey)
    return {
        "ed25519": (
            dci.SigningKey.from_seed(seed),
            ed25519.Ed25519PrivateKey.from_private_bytes(seed),
        ),
        "rs256": (rsa_key, rsa_oracle),
    }


@pytest.fixture(scope="module")
def theirs() -> dict[str, PrivateKey]:
    return {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "rs256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


# --- envelopes ----------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec=None, exclude_categories=("Cs",)), max_size=20)
ID_TEXT = st.text(
    st.characters(codec=None, exclude_categories=("Cs",), exclude_characters='|"\r\n'),
    min_size=1,
    max_size=20,
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=15,
)
HEADERS = st.fixed_dictionaries(
    {
        "version": st.just("1.0.0"),
        "message_id": st.uuids().map(str),
        "message_ts": st.just("2024-01-15T10:30:00Z"),
        "action": st.sampled_from(["search", "on-search", "subscribe"]),
        "sender_id": ID_TEXT,
        "sender_uri": st.none() | TEXT,
        "receiver_id": TEXT,
        "total_count": st.integers(0, 1000),
        "is_msg_encrypted": st.just(False),
        "meta": st.dictionaries(TEXT, JSON, max_size=3),
    }
)
MESSAGES = st.dictionaries(TEXT, JSON, max_size=5)
CREATED = st.integers(0, 10**11)
LIFETIME = st.integers(1, 3600)

ENVELOPE_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- what we sign, cryptography verifies --------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
@ENVELOPE_SETTINGS
@given(header=HEADERS, message=MESSAGES, key_id=ID_TEXT, created=CREATED, lifetime=LIFETIME)
def test_our_signature_verifies_in_cryptography(
    ours_with_oracle: dict[str, tuple[dci.SigningKey, PrivateKey]],
    alg: str,
    header: dict[str, Any],
    message: dict[str, Any],
    key_id: str,
    created: int,
    lifetime: int,
) -> None:
    key, oracle_private = ours_with_oracle[alg]
    sender = header["sender_id"]
    field = dci.sign_envelope(
        header, message, key, sender_id=sender, key_id=key_id, created=created, lifetime=lifetime
    )
    params = parse_field(field)
    expires = created + lifetime
    assert params["namespace"] == "dci"
    assert params["kidId"] == f"{sender}|{key_id}|{alg}"
    assert params["algorithm"] == alg
    assert (params["created"], params["expires"]) == (str(created), str(expires))
    assert params["headers"] == "(created) (expires) digest"
    sig = base64.b64decode(params["signature"], validate=True)
    assert field == signature_field(params["kidId"], alg, created, expires, sig)

    oracle_key = serialization.load_pem_public_key(key.public_pem().encode())
    assert isinstance(oracle_key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey)
    assert public_pem(oracle_private.public_key()) == key.public_pem()
    data = signing_string(header, message, created, expires)
    assert oracle_verify(oracle_key, sig, data)
    assert not oracle_verify(oracle_key, sig, signing_string(header, message, created, expires + 1))
    tampered = {**message, "tampered": True}
    assert not oracle_verify(oracle_key, sig, signing_string(header, tampered, created, expires))

    # Both schemes are deterministic: the oracle, with the same private key, signs the same bytes.
    assert oracle_sign(oracle_private, data) == sig


# --- what cryptography signs, we verify ---------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
@ENVELOPE_SETTINGS
@given(header=HEADERS, message=MESSAGES, key_id=ID_TEXT, created=CREATED, lifetime=LIFETIME)
def test_cryptography_signature_is_accepted(
    theirs: dict[str, PrivateKey],
    alg: str,
    header: dict[str, Any],
    message: dict[str, Any],
    key_id: str,
    created: int,
    lifetime: int,
) -> None:
    private = theirs[alg]
    kid = f"{header['sender_id']}|{key_id}|{alg}"
    expires = created + lifetime
    sig = oracle_sign(private, signing_string(header, message, created, expires))
    field = signature_field(kid, alg, created, expires, sig)
    pem = public_pem(private.public_key())
    jwk = oracle_jwk(private.public_key(), kid)
    for public_key in (pem, pem.encode(), jwk, dci.JWKS.from_json({"keys": [jwk]})):
        check = dci.check_signature(field, header, message, public_key, now=created)
        assert (check.outcome, check.kid, check.algorithm) == ("valid", kid, alg)
        assert (check.created, check.expires) == (created, expires)
        assert dci.verify_signature(field, header, message, public_key, now=expires)
        tampered = {**message, "tampered": True}
        assert dci.check_signature(field, header, tampered, public_key, now=created).outcome == (
            "invalid"
        )


@pytest.mark.parametrize("alg", ALGS)
def test_cryptography_signature_with_wrong_key_is_invalid(
    theirs: dict[str, PrivateKey], ours: dict[str, dci.SigningKey], alg: str
) -> None:
    header, message = {"sender_id": "s"}, {"a": 1}
    sig = oracle_sign(theirs[alg], signing_string(header, message, 100, 400))
    field = signature_field(f"s|k|{alg}", alg, 100, 400, sig)
    assert dci.check_signature(
        field, header, message, public_pem(theirs[alg].public_key()), now=100
    )
    check = dci.check_signature(field, header, message, ours[alg].public_pem(), now=100)
    assert check.outcome == "invalid" and not check


def test_rsa_public_exponent_3_verifies() -> None:
    # PROTOCOL §4 allows any odd e >= 3.
    private = rsa.generate_private_key(public_exponent=3, key_size=2048)
    header, message = {"sender_id": "s"}, {"a": 1}
    sig = oracle_sign(private, signing_string(header, message, 100, 400))
    field = signature_field("s|k|rs256", "rs256", 100, 400, sig)
    jwk = dci.pem_to_jwk(public_pem(private.public_key()))
    assert jwk["e"] == "Aw"
    assert dci.check_signature(field, header, message, jwk, now=100).outcome == "valid"


# --- keys both ways -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_generated_public_keys_load_in_cryptography(
    ours: dict[str, dci.SigningKey], alg: str
) -> None:
    key = ours[alg]
    public = serialization.load_pem_public_key(key.public_pem().encode())
    assert isinstance(public, ed25519.Ed25519PublicKey | rsa.RSAPublicKey)
    # Our PEM writer matches OpenSSL's byte for byte (64-character lines, \n endings).
    assert public_pem(public) == key.public_pem()
    assert key.public_jwk("sender", "k1") == oracle_jwk(public, f"sender|k1|{alg}")
    assert key.kid("sender", "k1") == f"sender|k1|{alg}"
    if alg == "rs256":
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == 2048
        assert public.public_numbers().e == 65537


@pytest.mark.parametrize("alg", ALGS)
def test_generated_private_pem_loads_in_cryptography(
    ours: dict[str, dci.SigningKey], alg: str
) -> None:
    key = ours[alg]
    private = serialization.load_pem_private_key(key.private_pem().encode(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey)
    assert public_pem(private.public_key()) == key.public_pem()
    # The plain PKCS#8 (RFC 5208 / RFC 8410) form OpenSSL writes, byte for byte.
    assert private.private_bytes(PEM, PKCS8, NO_ENC).decode() == key.private_pem()


@pytest.mark.parametrize(
    ("alg", "fmt"),
    [("ed25519", PKCS8), ("rs256", PKCS8), ("rs256", PKCS1)],  # PKCS#1 is RSA only
    ids=["ed25519-pkcs8", "rs256-pkcs8", "rs256-pkcs1"],
)
def test_cryptography_keys_load_into_signing_key(
    theirs: dict[str, PrivateKey], alg: str, fmt: serialization.PrivateFormat
) -> None:
    private = theirs[alg]
    pem = private.private_bytes(PEM, fmt, NO_ENC)
    header = "-----BEGIN RSA PRIVATE KEY-----" if fmt is PKCS1 else "-----BEGIN PRIVATE KEY-----"
    assert pem.decode().startswith(header)
    for text in (pem, pem.decode()):
        key = dci.SigningKey.from_pem(text)
        assert key.algorithm == alg
        assert key.public_pem() == public_pem(private.public_key())
        again = dci.SigningKey.from_pem(key.private_pem())
        assert again.public_pem() == key.public_pem()
        assert dci.pem_to_jwk(key.public_pem(), kid="s|k|" + alg) == oracle_jwk(
            private.public_key(), "s|k|" + alg
        )
        header_, message = {"sender_id": "s"}, {"x": "ÿ"}
        field = dci.sign_envelope(header_, message, key, sender_id="s", key_id="k", created=5)
        sig = base64.b64decode(parse_field(field)["signature"])
        assert sig == oracle_sign(private, signing_string(header_, message, 5, 305))
        assert oracle_verify(private.public_key(), sig, signing_string(header_, message, 5, 305))


def test_ed25519_raw_seed_matches_cryptography(theirs: dict[str, PrivateKey]) -> None:
    private = theirs["ed25519"]
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, NO_ENC
    )
    assert len(seed) == 32
    key = dci.SigningKey.from_seed(seed)
    assert key.public_pem() == public_pem(private.public_key())
    header, message = {"sender_id": "s"}, {}
    ours_field = dci.sign_envelope(header, message, seed, sender_id="s", key_id="k", created=1)
    sig = oracle_sign(private, signing_string(header, message, 1, 301))
    assert ours_field == signature_field("s|k|ed25519", "ed25519", 1, 301, sig)


@pytest.mark.parametrize("alg", ALGS)
def test_jwk_to_pem_matches_cryptography(theirs: dict[str, PrivateKey], alg: str) -> None:
    public = theirs[alg].public_key()
    jwk = oracle_jwk(public, "s|k|" + alg)
    assert dci.jwk_to_pem(jwk) == public_pem(public)
    assert dci.jwk_to_pem(json.dumps(jwk)) == public_pem(public)


@pytest.fixture(scope="module")
def rsa1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.mark.parametrize("fmt", [PKCS8, PKCS1], ids=["pkcs8", "pkcs1"])
def test_rsa_1024_private_key_is_refused(
    rsa1024: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    with pytest.raises(KeyFormatError, match="1024 bits is too small"):
        dci.SigningKey.from_pem(rsa1024.private_bytes(PEM, fmt, NO_ENC))


def test_rsa_1024_public_key_is_refused(rsa1024: rsa.RSAPrivateKey) -> None:
    public = rsa1024.public_key()
    header, message = {"sender_id": "s"}, {}
    sig = oracle_sign(rsa1024, signing_string(header, message, 1, 301))
    field = signature_field("s|k|rs256", "rs256", 1, 301, sig)
    with pytest.raises(KeyFormatError, match="too small"):
        dci.check_signature(field, header, message, public_pem(public), now=1)
    with pytest.raises(KeyFormatError, match="too small"):
        dci.verify_signature(field, header, message, public_pem(public), now=1)
    with pytest.raises(KeyFormatError, match="too small"):
        dci.jwk_to_pem(oracle_jwk(public, "s|k|rs256"))
    with pytest.raises(KeyFormatError, match="too small"):
        dci.pem_to_jwk(public_pem(public))
    jwks = dci.JWKS.from_json({"keys": [oracle_jwk(public, "s|k|rs256")]})
    assert len(jwks) == 0
    assert jwks.skipped[0][0] == "s|k|rs256" and "too small" in jwks.skipped[0][1]
