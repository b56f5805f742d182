"""Constructing a client is cheap: ``DCIClient(...)`` (OAuth2, a registry JWKS URL) against the
baseline a Python integration would hold, one ``httpx.Client``. Neither opens a connection.

Moved here from tests/test_client.py (a wall-clock assertion does not belong in the test suite;
the test keeps what it can observe: no connection, no request, no thread).

Target: ours at least as cheap as the baseline (ratio >= 1x).
"""

from __future__ import annotations

import argparse
import sys

import httpx
import spp_dci_ibr as dci
from _util import REPEATS, Row, compare, report

SENDER = "spp.example.org"
BASE = "http://127.0.0.1:9"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    key = dci.SigningKey.generate("ed25519")

    def ours() -> object:
        return dci.DCIClient(
            base_url=BASE,
            sender_id=SENDER,
            signing_key=key,
            key_id="k1",
            auth="oauth2",
            token_url=BASE + "/oauth2/client/token",
            client_id="c",
            client_secret="s",
            registry_jwks_url=BASE + "/.well-known/jwks.json",
            allow_insecure_jwks=True,
        )

    def base() -> object:
        client = httpx.Client(base_url=BASE, timeout=30)
        client.close()
        return client

    ours_us, base_us = compare(ours, base, repeats=args.repeats)
    rows = [Row("construct a client", ours_us, base_us, 1.0)]
    notes = [
        "ours: DCIClient with OAuth2 and a registry JWKS URL; baseline: one httpx.Client",
        f"best of {args.repeats} interleaved batches per side; ratio = baseline / ours",
    ]
    return report("bench_construction: DCIClient vs httpx.Client", rows, notes)


if __name__ == "__main__":
    sys.exit(main())
