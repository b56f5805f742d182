"""Duplication checks per second against the same embedded sandbox, side by side in one run.

- ours: `IBRService.check_many` (many identifiers per signed envelope, several in flight);
- "OpenSPP-style": one sync request per identifier, sequential, a new `httpx.Client` per request,
  stdlib json + `cryptography` signing and answer verification (how the reference client works);
- "good Python client": the same, but one `httpx.Client` with keep-alive.

Targets (issue 4): ours >= 50x OpenSPP-style, >= 10x the good client, >= 20,000 identifiers/s;
1,000,000 registrants streamed through `check_many` with peak RSS < 150 MB (`--million`, run in a
child process so its RSS is its own). Exit status 1 when a target is missed.

    .venv/bin/python bench/bench_ibr.py [--million]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import spp_dci_ibr as dci
from spp_dci_ibr.sandbox import IBRSandbox

SENDER, KEY_ID = "bench.sp.local", "bench-key"


class PythonClient:
    """Signed sync searches the way a plain Python DCI client does them, one per identifier."""

    def __init__(self, sb: IBRSandbox, *, keep_alive: bool) -> None:
        # Imported here: the 1,000,000-registrant child measures its own memory without them.
        import httpx
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.httpx = httpx
        self.sb = sb
        self.key = ed25519.Ed25519PrivateKey.generate()
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sb.register_client_key(SENDER, pem.decode())
        jwk = sb.public_jwks()["keys"][0]
        self.registry_key = ed25519.Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(jwk["x"] + "==")
        )
        self.keep_alive = keep_alive
        self.http = httpx.Client(timeout=30) if keep_alive else None
        token = httpx.post(
            sb.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": sb.client_id,
                "client_secret": sb.client_secret,
            },
        ).json()
        self.token = token["access_token"]

    def _sign(self, header: dict[str, Any], message: dict[str, Any]) -> str:
        canonical = json.dumps(
            {"header": header, "message": message}, sort_keys=True, separators=(",", ":")
        )
        digest = base64.b64encode(hashlib.sha256(canonical.encode()).digest()).decode()
        created = int(time.time())
        expires = created + 300
        text = f"(created): {created}\n(expires): {expires}\ndigest: {digest}"
        sig = base64.b64encode(self.key.sign(text.encode())).decode()
        return (
            f'namespace="dci", kidId="{SENDER}|{KEY_ID}|ed25519", algorithm="ed25519", '
            f'created="{created}", expires="{expires}", headers="(created) (expires) digest", '
            f'signature="{sig}"'
        )

    def _verify(self, body: dict[str, Any]) -> None:
        params = dict(
            part.strip().split("=", 1) for part in body["signature"].split('", ') if "=" in part
        )
        params = {k: v.strip('"') for k, v in params.items()}
        canonical = json.dumps(
            {"header": body["header"], "message": body["message"]},
            sort_keys=True,
            separators=(",", ":"),
        )
        digest = base64.b64encode(hashlib.sha256(canonical.encode()).digest()).decode()
        text = f"(created): {params['created']}\n(expires): {params['expires']}\ndigest: {digest}"
        self.registry_key.verify(base64.b64decode(params["signature"]), text.encode())

    def check(self, id_type: str, id_value: str) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        header = {
            "version": "1.0.0",
            "message_id": str(uuid.uuid4()),
            "message_ts": ts,
            "action": "search",
            "sender_id": SENDER,
            "receiver_id": self.sb.sender_id,
            "total_count": 1,
            "is_msg_encrypted": False,
            "meta": {},
        }
        message = {
            "transaction_id": str(uuid.uuid4()),
            "search_request": [
                {
                    "reference_id": str(uuid.uuid4()),
                    "timestamp": ts,
                    "search_criteria": {
                        "version": "1.0.0",
                        "reg_type": "ns:org:RegistryType:IBR",
                        "query_type": "idtype-value",
                        "query": {"type": id_type, "value": id_value},
                        "pagination": {"page_size": 100, "page_number": 1},
                    },
                }
            ],
        }
        body = {"signature": self._sign(header, message), "header": header, "message": message}
        url = self.sb.url + "/registry/sync/search"
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.http is not None:
            resp = self.http.post(url, json=body, headers=headers)
        else:
            with self.httpx.Client(timeout=30) as http:
                resp = http.post(url, json=body, headers=headers)
        resp.raise_for_status()
        answer = resp.json()
        self._verify(answer)
        item = answer["message"]["search_response"][0]
        return "match" if item["data"]["reg_records"] else "no_match"


def identifiers(sb: IBRSandbox, n: int) -> list[tuple[str, str]]:
    pool = []
    for status in ("active", "unknown", "graduated", "suspended", "deceased"):
        pool += sb.sample_identifiers(status, 200)
    return [pool[i % len(pool)] for i in range(n)]


def rate(fn: Callable[[list[tuple[str, str]]], None], ids: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    fn(ids)
    return len(ids) / (time.perf_counter() - start)


def ours(service: dci.IBRService) -> Callable[[list[tuple[str, str]]], None]:
    def run(ids: list[tuple[str, str]]) -> None:
        for r in service.check_many(
            ((i, [x]) for i, x in enumerate(ids)), batch_size=200, concurrency=4
        ):
            if r.state != "completed":
                raise RuntimeError(r.reasons)

    return run


def python(client: PythonClient) -> Callable[[list[tuple[str, str]]], None]:
    def run(ids: list[tuple[str, str]]) -> None:
        for id_type, id_value in ids:
            client.check(id_type, id_value)

    return run


def million() -> int:
    """Child process: streams 1,000,000 registrants, prints the peak RSS in MB and the rate."""
    with IBRSandbox(synthetic=10_000, seed=3) as sb:
        service = dci.IBRService(sb.client(max_retries=2))
        pool = identifiers(sb, 1000)

        def registrants() -> Iterator[tuple[int, list[tuple[str, str]]]]:
            for i in range(1_000_000):
                yield i, [pool[i % len(pool)]]

        start = time.perf_counter()
        done = failed = 0
        for r in service.check_many(registrants(), batch_size=200, concurrency=4):
            done += 1
            failed += r.state != "completed"
        elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"done": done, "failed": failed, "seconds": elapsed, "peak_rss_mb": peak_mb}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--million", action="store_true", help="also stream 1,000,000 registrants")
    parser.add_argument("--child-million", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_million:
        return million()

    status = 0
    with IBRSandbox(synthetic=10_000, seed=3) as sb:
        service = dci.IBRService(sb.client(max_retries=2))
        openspp, good = PythonClient(sb, keep_alive=False), PythonClient(sb, keep_alive=True)
        small, large = identifiers(sb, 300), identifiers(sb, 60_000)
        # Warm up every path once (token, connections, caches), then measure interleaved.
        for fn in (ours(service), python(openspp), python(good)):
            fn(small[:20])
        rates = {"ours": 0.0, "openspp": 0.0, "good": 0.0}
        for _ in range(2):
            rates["ours"] = max(rates["ours"], rate(ours(service), large))
            rates["openspp"] = max(rates["openspp"], rate(python(openspp), small))
            rates["good"] = max(rates["good"], rate(python(good), small))
    rows = [
        ("vs OpenSPP-style client", rates["ours"] / rates["openspp"], 50.0),
        ("vs good Python client", rates["ours"] / rates["good"], 10.0),
    ]
    print("\nIBR duplication checks against the embedded sandbox (identifiers/s)")
    print(f"  ours (check_many, 200/envelope, 4 in flight) {rates['ours']:>12,.0f}")
    print(f"  OpenSPP-style (new httpx.Client per request) {rates['openspp']:>12,.0f}")
    print(f"  good Python client (one httpx.Client)        {rates['good']:>12,.0f}")
    for name, ratio, target in rows:
        ok = ratio >= target
        status |= not ok
        print(f"  {name:<44} {ratio:>8.1f}x  target >= {target:g}x  {'pass' if ok else 'FAIL'}")
    ok = rates["ours"] >= 20_000
    status |= not ok
    print(f"  absolute rate {rates['ours']:,.0f}/s  target >= 20,000/s  {'pass' if ok else 'FAIL'}")
    if args.million:
        out = subprocess.run(
            [sys.executable, __file__, "--child-million"],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        ok = m["peak_rss_mb"] < 150 and m["done"] == 1_000_000 and m["failed"] == 0
        status |= not ok
        print(
            f"  1,000,000 registrants: {m['seconds']:.1f} s ({m['done'] / m['seconds']:,.0f}/s), "
            f"{m['failed']} failed, peak RSS {m['peak_rss_mb']:.0f} MB  target < 150 MB  "
            f"{'pass' if ok else 'FAIL'}"
        )
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
