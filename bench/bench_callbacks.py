"""The callback router under a flood of unauthenticated bogus callbacks (issue 9 item 7).

A valid, signed callback is posted behind N bogus ones, all in flight at once through the ASGI
app (httpx's ASGITransport: Starlette's thread pool, the GIL and the event loop as in a real
server, without sockets). Its latency is printed side by side with the same callback posted
alone (the baseline), for each kind of bogus callback; the delay the flood adds must stay under
one second. A second table compares the old way of reading the kid (the regex the router used
before the core took over) with the core's verification of the same signature field.

    .venv/bin/python bench/bench_callbacks.py [--flood N] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import spp_dci_ibr as dci
from _util import Row, compare, report
from fastapi import FastAPI
from spp_dci_ibr.callbacks import MemoryReplayStore, StaticKeyLookup, build_callback_router

REGISTRY, KEY_ID = "ibr.example.org", "key-1"
MAX_DELAY_S = 1.0
KEY = dci.SigningKey.generate("ed25519")
STRANGER = dci.SigningKey.generate("ed25519")


def header(sender: str = REGISTRY) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "message_id": str(uuid.uuid4()),
        "message_ts": "2026-01-01T00:00:00Z",
        "action": "on-search",
        "status": "succ",
        "sender_id": sender,
        "receiver_id": "spmis.example.org",
        "total_count": 1,
        "completed_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }


MESSAGE = {
    "transaction_id": "txn-1",
    "search_response": [{"reference_id": "ref-1", "status": "succ", "data": {"reg_records": []}}],
}


def body(signature: str, sender: str = REGISTRY, message: Any = None) -> bytes:
    envelope = {"signature": signature, "header": header(sender), "message": message or MESSAGE}
    return json.dumps(envelope).encode()


def signed(key: dci.SigningKey = KEY, sender: str = REGISTRY, key_id: str = KEY_ID) -> bytes:
    h, m = header(sender), MESSAGE
    signature = dci.sign_envelope(h, m, key, sender_id=sender, key_id=key_id)
    return json.dumps({"signature": signature, "header": h, "message": m}).encode()


def tampered() -> bytes:
    envelope = json.loads(signed())
    envelope["message"]["transaction_id"] = "txn-forged"
    return json.dumps(envelope).encode()


# Each kind of bogus callback: a fresh body per request (fresh message_ids).
BOGUS: dict[str, Callable[[], bytes]] = {
    "16 KB signature of letters": lambda: body("a" * 16 * 1024),
    "4 KB signature, near the cap": lambda: body('kidId="' + "a" * 4000 + '"'),
    "unknown sender, well-formed": lambda: signed(STRANGER, "stranger.example.org"),
    "known sender, unknown kid": lambda: signed(STRANGER, key_id="bogus"),
    "known sender, forged message": tampered,
    "1 MiB body, unknown sender": lambda: body(
        dci.sign_envelope(header(), MESSAGE, STRANGER, sender_id="x.example.org", key_id="k"),
        "x.example.org",
        {"padding": ["x" * 100] * 9_500},
    ),
}


def make_app() -> FastAPI:
    app = FastAPI()
    app.include_router(
        build_callback_router(
            key_lookup=StaticKeyLookup({REGISTRY: KEY.public_jwk(REGISTRY, KEY_ID)}),
            replay_store=MemoryReplayStore(1 << 20),
            sink=lambda event: None,
        )
    )
    return app


async def valid_latency(app: FastAPI, bogus: list[bytes]) -> float:
    """Seconds until the valid callback, posted behind ``bogus``, is acknowledged."""
    transport = httpx.ASGITransport(app=app)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def post(content: bytes) -> int:
            response = await client.post("/registry/on-search", content=content, headers=headers)
            return response.status_code

        flood = [asyncio.create_task(post(b)) for b in bogus]
        await asyncio.sleep(0)  # the flood is in flight before the valid callback
        valid = signed()
        start = time.perf_counter()
        status = await post(valid)
        elapsed = time.perf_counter() - start
        statuses = await asyncio.gather(*flood)
    assert status == 200, status
    assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    return elapsed


def old_kid_regex(field: str) -> str | None:
    """The router's kid extraction before the core took over (quadratic on a run of letters)."""
    pattern = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"')
    kids = {v for n, v in pattern.findall(field) if n in ("kidId", "keyId")}
    return kids.pop() if len(kids) == 1 else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging_off()
    app = make_app()

    def median_latency(bogus: Callable[[], list[bytes]]) -> float:
        return statistics.median(
            asyncio.run(valid_latency(app, bogus())) for _ in range(args.repeats)
        )

    alone = median_latency(list)
    print(f"\nvalid callback behind {args.flood} bogus ones (median of {args.repeats} runs)")
    head = f"{'bogus callbacks':<32} {'alone ms':>9} {'flooded ms':>11} {'delay ms':>9}  result"
    print(head)
    print("-" * len(head))
    failed = []
    for name, make in BOGUS.items():
        flooded = median_latency(lambda make=make: [make() for _ in range(args.flood)])
        delay = flooded - alone
        ok = delay < MAX_DELAY_S
        failed += [] if ok else [name]
        print(
            f"{name:<32} {alone * 1e3:>9.1f} {flooded * 1e3:>11.1f} {delay * 1e3:>9.1f}  "
            f"{'pass' if ok else 'FAIL'} (< {MAX_DELAY_S * 1e3:.0f} ms)"
        )
    sys.stdout.flush()

    # The signature field the old router ran its kid regex over, before any key was known.
    verifier = dci.CallbackVerifier()
    rows = []
    for size in (1024, 4096, 16 * 1024):
        raw = body("a" * size)

        def core(raw: bytes = raw) -> object:
            return verifier.verify(raw, "application/json", lambda s, k: None)

        def old(field: str = "a" * size) -> object:
            return old_kid_regex(field)

        ours, baseline = compare(core, old, repeats=3)
        rows.append(Row(f"{size // 1024} KiB signature field", ours, baseline, None))
    status = report("one bogus callback: core check of the whole body vs old kid regex", rows)
    if failed:
        print(f"MISSED: {', '.join(failed)}")
    return 1 if failed else status


def logging_off() -> None:
    import logging

    logging.getLogger("spp_dci_ibr").setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
