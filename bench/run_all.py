"""Runs every `bench/bench_*.py` in turn (each in its own process, so one benchmark's allocations
and imports do not disturb the next) and exits 1 if any of them missed a target.

    .venv/bin/python bench/run_all.py [extra arguments passed to every benchmark]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    benches = sorted(HERE.glob("bench_*.py"))
    if not benches:
        print(f"no bench_*.py in {HERE}")
        return 1
    results: list[tuple[str, int, float]] = []
    for path in benches:
        print(f"\n=== {path.name}", flush=True)
        start = time.perf_counter()
        status = subprocess.run([sys.executable, str(path), *sys.argv[1:]], cwd=HERE).returncode
        results.append((path.name, status, time.perf_counter() - start))
    print("\n=== summary")
    for name, status, seconds in results:
        print(f"{name:<40} {'ok' if status == 0 else f'FAILED ({status})':<12} {seconds:6.1f} s")
    return 1 if any(status != 0 for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
