"""``spp-dci-ibr doctor`` and ``spp-dci-ibr verify --explain``: every step listed, exit codes
(0 all passed, 1 warnings, 2 configuration, 3 failures), JSON for CI, no secret in the output,
and the explanation of the signature vectors."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_main
from doctor_support import STEP_IDS, published_jwks
from spp_dci_ibr import SigningKey
from spp_dci_ibr.sandbox import IBRSandbox

SENDER = "cli.doctor.test"
KEY_ID = "k1"


class Registry:
    """A sandbox with our key trusted, and the SPP_DCI_* settings of a client for it."""

    def __init__(self, sb: IBRSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sb = sb
        self.key = SigningKey.generate()
        key_file = tmp_path / "client.pem"
        key_file.write_text(self.key.private_pem())
        key_file.chmod(0o600)
        sb.register_client_key(SENDER, self.key.public_jwk(SENDER, KEY_ID))
        self.env = {
            "SPP_DCI_BASE_URL": sb.url,
            "SPP_DCI_SENDER_ID": SENDER,
            "SPP_DCI_RECEIVER_ID": sb.sender_id,
            "SPP_DCI_TOKEN_URL": sb.token_url,
            "SPP_DCI_CLIENT_ID": sb.client_id,
            "SPP_DCI_CLIENT_SECRET": sb.client_secret,
            "SPP_DCI_KEY_FILE": str(key_file),
            "SPP_DCI_KEY_ID": KEY_ID,
            "SPP_DCI_REGISTRY_JWKS_URL": sb.jwks_url,
            "SPP_DCI_ALLOW_INSECURE_JWKS": "1",
        }
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)

    def our_jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk(SENDER, KEY_ID)]}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    with IBRSandbox(synthetic=10) as sb:
        yield Registry(sb, tmp_path, monkeypatch)


def test_doctor_healthy_lists_every_step_and_exits_0(
    capsys: pytest.CaptureFixture[str], registry: Registry
) -> None:
    with published_jwks(registry.our_jwks()) as url:
        code, out, err = run_main(capsys, "doctor", "--our-jwks-url", url)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"doctor: {registry.sb.url}"
    for step_id in STEP_IDS:
        assert any(line.split()[1:2] == [step_id] for line in lines), step_id
    assert "FAIL" not in out and "WARN" not in out
    assert lines[-1] == "9 passed, 0 warned, 0 failed, 1 skipped"
    assert registry.sb.client_secret not in out + err


def test_doctor_json_for_ci(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    code, out, _ = run_main(capsys, "doctor", "--json", "--id", "UIN=NOBODY-1")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["exit_code"] == 0
    assert [s["id"] for s in report["steps"]] == list(STEP_IDS)
    our_key = next(s for s in report["steps"] if s["id"] == "our_key")
    assert our_key["status"] == "skip" and "our_jwks_url" in our_key["found"]


@pytest.mark.parametrize(
    ("faults", "step_id", "word"),
    [
        ({"unsigned_rate": 1.0}, "answer_signature", "not signed"),
        ({"wrong_key_rate": 1.0}, "answer_signature", "does not publish"),
        ({"clock_skew_s": 600}, "clock_skew", "ahead of ours"),
        ({"bad_token_rate": 1.0}, "search", "refused our token"),
        ({"refuse_tokens": True}, "token", "invalid_client"),
    ],
)
def test_doctor_names_each_fault_and_exits_3(
    capsys: pytest.CaptureFixture[str],
    registry: Registry,
    faults: dict[str, Any],
    step_id: str,
    word: str,
) -> None:
    registry.sb.set_faults(faults)
    code, out, _ = run_main(capsys, "doctor")
    assert code == 3, out
    [line_no] = [
        i for i, line in enumerate(out.splitlines()) if line.split()[:2] == ["FAIL", step_id]
    ]
    block = "\n".join(out.splitlines()[line_no : line_no + 3])
    assert word in block, block
    code, out, _ = run_main(capsys, "doctor", "--json")
    step = next(s for s in json.loads(out)["steps"] if s["id"] == step_id)
    assert code == 3 and step["status"] == "fail" and step["fix"]


def test_doctor_warnings_exit_1(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    registry.sb.set_faults({"clock_skew_s": 30})
    code, out, _ = run_main(capsys, "doctor")
    assert code == 1, out
    assert any(line.split()[:2] == ["WARN", "clock_skew"] for line in out.splitlines())


def test_doctor_without_registry_keys_is_a_finding_not_an_error(
    capsys: pytest.CaptureFixture[str], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPP_DCI_REGISTRY_JWKS_URL")
    code, out, err = run_main(capsys, "doctor")
    assert code == 1, out + err
    assert any(line.split()[:2] == ["WARN", "registry_jwks"] for line in out.splitlines())


def test_doctor_configuration_error_exits_2(
    capsys: pytest.CaptureFixture[str], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPP_DCI_BASE_URL")
    code, out, err = run_main(capsys, "doctor")
    assert code == 2 and out == ""
    assert "registry URL is not set" in err


def test_doctor_wrong_secret_is_named_and_never_printed(
    capsys: pytest.CaptureFixture[str], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wrong-secret-4f1d2c9b7e"
    monkeypatch.setenv("SPP_DCI_CLIENT_SECRET", secret)
    code, out, err = run_main(capsys, "doctor", "--json")
    token = next(s for s in json.loads(out)["steps"] if s["id"] == "token")
    assert code == 3 and token["status"] == "fail" and "invalid_client" in token["found"]
    assert secret not in out + err


# ---- verify --explain ------------------------------------------------------------------------


def envelope_of(tmp_path: Path, case: dict[str, Any]) -> str:
    path = tmp_path / "envelope.json"
    path.write_text(
        json.dumps(
            {"header": case["header"], "message": case["message"], "signature": case["signature"]}
        )
    )
    return str(path)


def key_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "key.txt"
    path.write_text(text)
    return str(path)


def case_named(vectors: dict[str, Any], name: str) -> dict[str, Any]:
    [case] = [c for c in vectors["verify_cases"] if c["name"] == name]
    return case


def test_verify_explain_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vectors: dict[str, Any]
) -> None:
    case = case_named(vectors, "valid at created")
    key = key_file(tmp_path, vectors["keys"]["ed25519"]["public_pem"])
    args = ["verify", envelope_of(tmp_path, case), "--key", key, "--now", str(case["now"])]
    code, out, _ = run_main(capsys, *args, "--explain")
    assert code == 0, out
    assert out.startswith("outcome:        valid\n")
    assert "signing string:\n  (created): 1705315800\n  (expires): 1705316100\n  digest: " in out
    assert "verified with:  the header as_received" in out
    code, out, _ = run_main(capsys, *args, "--explain", "--json")
    e = json.loads(out)
    assert code == 0 and e["valid"] is True and e["verified_form"] == "as_received"
    assert f"sha256 {e['canonical_sha256']}" in run_main(capsys, *args, "--explain")[1]


def test_verify_explain_tampered_exits_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vectors: dict[str, Any]
) -> None:
    case = case_named(vectors, "tampered message")
    key = key_file(tmp_path, vectors["keys"]["ed25519"]["public_pem"])
    code, out, _ = run_main(
        capsys, "verify", envelope_of(tmp_path, case), "--key", key, "--now", str(case["now"]),
        "--explain",
    )  # fmt: skip
    assert code == 4
    assert out.startswith("outcome:        invalid\n")
    assert "as_received" in out and "does not verify" in out
    assert "why not valid:" in out


def test_verify_explain_unknown_and_wrong_kid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vectors: dict[str, Any]
) -> None:
    case = case_named(vectors, "valid at created")
    renamed = copy.deepcopy(vectors["keys"]["ed25519"]["jwk"])
    renamed["kid"] = "openspp.example.org|key-ed-9|ed25519"
    rsa = vectors["keys"]["rs256"]["jwk"]
    envelope = envelope_of(tmp_path, case)

    key = key_file(tmp_path, json.dumps({"keys": [renamed, rsa]}))
    code, out, _ = run_main(
        capsys, "verify", envelope, "--key", key, "--now", str(case["now"]), "--explain"
    )
    assert code == 4
    assert out.startswith("outcome:        unknown_key\n")
    assert "key tried:      none" in out
    assert "why not valid:  no key for kid openspp.example.org|key-ed-1|ed25519" in out

    key = key_file(tmp_path, json.dumps({"keys": [renamed]}))
    code, out, _ = run_main(
        capsys, "verify", envelope, "--key", key, "--now", str(case["now"]), "--explain"
    )
    assert code == 0, out  # the set's only key is tried whatever the kid
    assert f"key tried:      {renamed['kid']} (ed25519): only key of the set" in out
