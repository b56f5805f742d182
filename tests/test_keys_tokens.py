"""Keys and tokens (PROTOCOL §4, §5): where a public key is expected a private one is refused
through every entry point; JWKS redirects stay on the origin; the OAuth2 token cache never lets
one client ride on another's token, nor a token travel to another registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import spp_dci_ibr as dci
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from dci_server import JWKS_PATH, SYNC_SEARCH, DCIServer, Reply
from spp_dci_ibr.exceptions import AuthError, DCIError, HTTPStatusError, KeyFormatError
from spp_dci_ibr.sandbox import IBRSandbox

SENDER = "spp.keys.test"
KEY_ID = "k1"

PEM = serialization.Encoding.PEM
NO_PASSWORD = serialization.NoEncryption()
PASSWORD = serialization.BestAvailableEncryption(b"correct horse")


@pytest.fixture(scope="module")
def key() -> dci.SigningKey:
    return dci.SigningKey.generate("ed25519")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_blocks(key: dci.SigningKey, rsa_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Every private key encoding a user could have lying around."""
    ed = ed25519.Ed25519PrivateKey.generate()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    dsa_key = dsa.generate_private_key(2048)
    pkcs8 = serialization.PrivateFormat.PKCS8
    legacy = serialization.PrivateFormat.TraditionalOpenSSL
    openssh = serialization.PrivateFormat.OpenSSH
    return {
        "pkcs8-ed25519": key.private_pem(),
        "pkcs8-rsa": rsa_key.private_bytes(PEM, pkcs8, NO_PASSWORD).decode(),
        "pkcs1-rsa": rsa_key.private_bytes(PEM, legacy, NO_PASSWORD).decode(),
        "pkcs1-rsa-encrypted": rsa_key.private_bytes(PEM, legacy, PASSWORD).decode(),
        "pkcs8-encrypted": ed.private_bytes(PEM, pkcs8, PASSWORD).decode(),
        "openssh-ed25519": ed.private_bytes(PEM, openssh, NO_PASSWORD).decode(),
        "ec": ec_key.private_bytes(PEM, legacy, NO_PASSWORD).decode(),
        "dsa": dsa_key.private_bytes(PEM, legacy, NO_PASSWORD).decode(),
    }


def _body_lines(pem: str) -> list[str]:
    return [
        line
        for line in pem.splitlines()
        if line and not line.startswith("-----") and ":" not in line and len(line) >= 16
    ]


def pem_texts_holding_a_private_key(
    key: dci.SigningKey, rsa_key: rsa.RSAPrivateKey
) -> Iterator[tuple[str, str, list[str]]]:
    """(case id, text, secret body lines): a public key PEM next to a private key, every way."""
    public = key.public_pem()
    for name, private in _private_blocks(key, rsa_key).items():
        secret = _body_lines(private)
        yield f"{name}-after-public", public + private, secret
        yield f"{name}-after-public-no-newline", public.rstrip("\n") + private, secret
        yield f"{name}-before-public", private + public, secret
        yield f"{name}-alone", private, secret
        yield f"{name}-in-explanatory-text", f"Key for the registry\n{private}\n{public}", secret
    pkcs8 = key.private_pem()
    for label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        relabelled = pkcs8.replace("PRIVATE KEY", label)
        yield f"pkcs8-labelled-{label}", relabelled, _body_lines(pkcs8)
    pkcs1 = rsa_key.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, NO_PASSWORD)
    yield "pkcs1-labelled-public", pkcs1.decode().replace("PRIVATE", "PUBLIC"), []
    yield "lower-case-markers", public + pkcs8.replace("PRIVATE KEY", "private key"), []
    yield "crlf", (public + pkcs8).replace("\n", "\r\n"), _body_lines(pkcs8)
    yield "padded", "\n\n  " + public + "\n\n" + pkcs8 + "  \n", _body_lines(pkcs8)


PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def jwks_holding_a_private_key(key: dci.SigningKey) -> Iterator[tuple[str, Any]]:
    """(case id, JWK or JWKS value) where some key carries private members."""
    public = key.public_jwk(SENDER, KEY_ID)
    for member in PRIVATE_MEMBERS:
        for value in ("c2VjcmV0LXNlY3JldC1zZWNyZXQ", "", None, [{"r": "AQAB"}]):
            yield f"jwk-{member}-{value!r}"[:40], {**public, member: value}
    other = dci.SigningKey.generate().public_jwk(SENDER, "k2")
    private = {**other, "d": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}
    yield "jwks-public-then-private", {"keys": [public, private]}
    yield "jwks-private-then-public", {"keys": [private, public]}
    yield "jwks-private-enc-key", {"keys": [public, {**private, "use": "enc"}]}
    ec_private = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA", "kid": "ec"}
    yield "jwks-unsupported-private", {"keys": [public, ec_private]}
    yield "jwks-oct-secret", {"keys": [public, {"kty": "oct", "k": "c2VjcmV0"}]}
    yield "jwks-nested-private-jwk", {"keys": [{**public, "x5u": {"kty": "OKP", "d": "AA"}}]}
    yield "jwks-private-pem-string", {"keys": [public, key.private_pem()]}
    yield "jwks-top-level-private", {"keys": [public], "d": "AA"}


# ---- every entry point that takes a public key -------------------------------------------------


def _check(material: Any) -> None:
    dci.check_signature("", {}, {}, material, now=0)


def _verify(material: Any) -> None:
    dci.verify_signature("", {}, {}, material, now=0)


def _client(material: Any) -> None:
    dci.DCIClient(
        base_url="http://127.0.0.1:9", sender_id=SENDER, unsigned=True, registry_keys=material
    )


def _sandbox(material: Any) -> None:
    with IBRSandbox(synthetic=1) as sb:
        sb.register_client_key(SENDER, material)


def _jwks(material: Any) -> None:
    dci.JWKS.from_json(material)


TEXT_ENTRY_POINTS: dict[str, Callable[[Any], None]] = {
    "check_signature": _check,
    "verify_signature": _verify,
    "pem_to_jwk": dci.pem_to_jwk,
    "DCIClient": _client,
    "sandbox": _sandbox,
}
JSON_ENTRY_POINTS: dict[str, Callable[[Any], None]] = {
    "check_signature": _check,
    "verify_signature": _verify,
    "jwk_to_pem": dci.jwk_to_pem,
    "JWKS.from_json": _jwks,
    "DCIClient": _client,
    "sandbox": _sandbox,
}


def _refused(call: Callable[[Any], None], material: Any, secrets: list[str]) -> None:
    with pytest.raises(KeyFormatError) as info:
        call(material)
    message = str(info.value)
    assert "private" in message, message
    for line in secrets:
        assert line[:16] not in message


@pytest.mark.parametrize("entry", TEXT_ENTRY_POINTS)
def test_a_pem_text_holding_a_private_key_is_refused_everywhere(
    key: dci.SigningKey, rsa_key: rsa.RSAPrivateKey, entry: str
) -> None:
    call = TEXT_ENTRY_POINTS[entry]
    for case, text, secrets in pem_texts_holding_a_private_key(key, rsa_key):
        for material in (text, text.encode()):
            if entry == "DCIClient" and isinstance(material, bytes):
                continue  # registry_keys takes text
            try:
                _refused(call, material, secrets)
            except AssertionError as exc:
                raise AssertionError(f"{entry} accepted {case}: {exc}") from None


@pytest.mark.parametrize("entry", JSON_ENTRY_POINTS)
def test_a_jwk_or_jwks_holding_a_private_key_is_refused_everywhere(
    key: dci.SigningKey, entry: str
) -> None:
    call = JSON_ENTRY_POINTS[entry]
    for case, value in jwks_holding_a_private_key(key):
        is_set = "keys" in value
        if entry == "jwk_to_pem" and is_set:
            continue  # takes one JWK
        if entry == "JWKS.from_json" and not is_set:
            continue  # takes a set
        materials: list[Any] = [value, json.dumps(value)]
        if entry in ("check_signature", "verify_signature", "sandbox", "JWKS.from_json"):
            materials.append(json.dumps(value).encode())
        for material in materials:
            try:
                _refused(call, material, ["c2VjcmV0LXNlY3JldC1zZWNyZXQ"])
            except AssertionError as exc:
                raise AssertionError(
                    f"{entry} accepted {case} as {type(material)}: {exc}"
                ) from None


def test_public_keys_are_still_accepted_in_every_form(key: dci.SigningKey) -> None:
    jwk = key.public_jwk(SENDER, KEY_ID)
    jwks = {"keys": [jwk]}
    h = {"sender_id": SENDER, "message_id": "m"}
    m = {"transaction_id": "t"}
    field = dci.sign_envelope(h, m, key, sender_id=SENDER, key_id=KEY_ID, created=1000)
    for material in (
        key.public_pem(),
        key.public_pem().encode(),
        "\ufeff" + key.public_pem().replace("\n", "\r\n"),
        jwk,
        json.dumps(jwk),
        jwks,
        json.dumps(jwks).encode(),
        dci.JWKS.from_json(jwks),
    ):
        assert dci.verify_signature(field, h, m, material, now=1000), material
        _client(material)
        _sandbox(material)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        '{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "x": "BBBB"}',
        '{"keys": []}',
        '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}',
        "not a key",
    ],
    ids=["empty", "bad-der", "duplicate-member", "empty-set", "no-usable-key", "junk"],
)
def test_unusable_public_key_text_is_a_key_format_error(text: str) -> None:
    with pytest.raises(KeyFormatError):
        _check(text)
    with pytest.raises(KeyFormatError):
        _client(text)


def test_two_public_keys_in_one_pem_text_are_refused(key: dci.SigningKey) -> None:
    # Which one would be meant? Refused rather than guessed.
    other = dci.SigningKey.generate()
    with pytest.raises(KeyFormatError, match="one"):
        _check(key.public_pem() + other.public_pem())


# ---- JWKS redirects --------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[DCIServer]:
    with DCIServer() as s:
        yield s


@pytest.fixture
def elsewhere() -> Iterator[DCIServer]:
    with DCIServer() as s:
        yield s


def _redirect(to: str, status: int = 302) -> Reply:
    return Reply(status, {"detail": "moved"}, headers={"Location": to})


def test_jwks_redirect_within_the_origin_is_followed(origin: DCIServer) -> None:
    origin.queue(JWKS_PATH, _redirect(f"{origin.base_url}{JWKS_PATH}?moved=1"))
    assert dci.JWKS.fetch(origin.jwks_url, allow_http=True).kids == [origin.kid]
    assert len(origin.received(JWKS_PATH)) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_jwks_redirect_to_another_port_is_not_followed(
    origin: DCIServer, elsewhere: DCIServer, status: int
) -> None:
    origin.queue(JWKS_PATH, _redirect(elsewhere.jwks_url, status))
    with pytest.raises(HTTPStatusError) as info:
        dci.JWKS.fetch(origin.jwks_url, allow_http=True)
    assert info.value.status == status
    assert "redirect" in str(info.value)
    assert elsewhere.received() == []


def test_jwks_redirect_to_another_host_is_not_followed(origin: DCIServer) -> None:
    origin.queue(JWKS_PATH, _redirect(f"http://localhost:{origin.port}{JWKS_PATH}"))
    with pytest.raises(HTTPStatusError):
        dci.JWKS.fetch(origin.jwks_url, allow_http=True)
    assert len(origin.received(JWKS_PATH)) == 1


def test_jwks_redirect_carrying_credentials_is_not_followed(origin: DCIServer) -> None:
    origin.queue(JWKS_PATH, _redirect(f"http://user:pw@127.0.0.1:{origin.port}{JWKS_PATH}"))
    with pytest.raises(HTTPStatusError):
        dci.JWKS.fetch(origin.jwks_url, allow_http=True)
    assert len(origin.received(JWKS_PATH)) == 1


def test_jwks_redirects_are_followed_at_most_three_times(origin: DCIServer) -> None:
    hop = _redirect(f"{origin.base_url}{JWKS_PATH}")
    origin.queue(JWKS_PATH, hop, hop, hop)
    assert dci.JWKS.fetch(origin.jwks_url, allow_http=True).kids == [origin.kid]
    origin.queue(JWKS_PATH, hop, hop, hop, hop)
    with pytest.raises(HTTPStatusError):
        dci.JWKS.fetch(origin.jwks_url, allow_http=True)


def test_https_jwks_is_never_redirected_to_http() -> None:
    with DCIServer(tls=True) as tls:
        # Same host and port, plain http: a downgrade, not the same origin.
        tls.queue(JWKS_PATH, _redirect(f"http://127.0.0.1:{tls.port}{JWKS_PATH}"))
        with pytest.raises(HTTPStatusError) as info:
            dci.JWKS.fetch(tls.jwks_url, verify_tls=False, allow_http=True)
        assert info.value.status == 302
        assert tls.handler_errors == 0  # no plain-http request reached the TLS port


def test_client_jwks_url_redirected_elsewhere_verifies_nothing(
    origin: DCIServer, elsewhere: DCIServer, key: dci.SigningKey
) -> None:
    origin.queue(JWKS_PATH, _redirect(elsewhere.jwks_url))
    client = dci.DCIClient(
        base_url=origin.base_url,
        sender_id=SENDER,
        signing_key=key,
        key_id=KEY_ID,
        registry_jwks_url=origin.jwks_url,
        allow_insecure_jwks=True,
        timeout=5.0,
    )
    with pytest.raises(DCIError):
        client.search_by_id("NID", "1")
    assert elsewhere.received() == []


# ---- the OAuth2 token cache ------------------------------------------------------------------


def _oauth(server: DCIServer, key: dci.SigningKey, **kw: Any) -> dci.DCIClient:
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "sender_id": SENDER,
        "signing_key": key,
        "key_id": KEY_ID,
        "registry_keys": server.public_pem(),
        "auth": "oauth2",
        "token_url": server.token_url,
        "timeout": 5.0,
    }
    args.update(kw)
    return dci.DCIClient(**args)


def test_a_wrong_secret_fails_even_after_the_right_one_got_a_token(
    origin: DCIServer, key: dci.SigningKey
) -> None:
    client_id, secret = f"cid-{uuid.uuid4().hex}", f"right-{uuid.uuid4().hex}"
    origin.add_client(client_id, secret)
    origin.require_token = True
    right = _oauth(origin, key, client_id=client_id, client_secret=secret)
    right.check_auth()
    right.search_by_id("NID", "1")
    wrong = _oauth(origin, key, client_id=client_id, client_secret="wrong-" + secret)
    with pytest.raises(AuthError) as info:
        wrong.check_auth()
    assert info.value.status == 401
    with pytest.raises(AuthError):
        wrong.search_by_id("NID", "2")
    assert len(origin.received(SYNC_SEARCH)) == 1  # only the right client's call got through
    # ... and the right client still works, on its own cached token.
    right.search_by_id("NID", "3")
    assert {r.authorization for r in origin.received(SYNC_SEARCH)} == {
        f"Bearer {origin.tokens_ever[0]}"
    }


def test_a_token_goes_only_to_the_registry_it_was_fetched_for(
    origin: DCIServer, elsewhere: DCIServer, key: dci.SigningKey
) -> None:
    client_id, secret = f"cid-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
    origin.add_client(client_id, secret)
    same = {"client_id": client_id, "client_secret": secret, "token_url": origin.token_url}
    _oauth(origin, key, **same).search_by_id("NID", "1")
    _oauth(origin, key, **same, base_url=origin.base_url + "/").search_by_id("NID", "2")
    assert origin.token_fetches == 1  # the same registry shares its token
    other = _oauth(elsewhere, key, **same)
    other.search_by_id("NID", "3")
    assert origin.token_fetches == 2
    first, second = origin.tokens_ever
    assert {r.authorization for r in origin.received(SYNC_SEARCH)} == {f"Bearer {first}"}
    assert [r.authorization for r in elsewhere.received(SYNC_SEARCH)] == [f"Bearer {second}"]
