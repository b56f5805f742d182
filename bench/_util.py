"""Side-by-side timing shared by the benchmarks.

Candidates are interleaved (ours, baseline, baseline, ours, ...) in batches sized to take a few
milliseconds each, and each side keeps its best batch: the minimum is the least disturbed by
other processes on the machine, which matters on a shared 2-core box.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

BATCH_NS = 5_000_000  # aim for ~5 ms per timed batch
REPEATS = 25


def _batch_ns(fn: Callable[[], object], number: int) -> int:
    start = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return time.perf_counter_ns() - start


def _calibrate(fn: Callable[[], object]) -> int:
    """Calls per batch so that one batch takes about BATCH_NS."""
    number = 1
    while True:
        elapsed = _batch_ns(fn, number)
        if elapsed >= BATCH_NS // 4 or number >= 1 << 20:
            return max(1, int(number * BATCH_NS / max(elapsed, 1)))
        number *= 4


def compare(
    ours: Callable[[], object], baseline: Callable[[], object], repeats: int = REPEATS
) -> tuple[float, float]:
    """Best time per call in microseconds of (ours, baseline), measured interleaved."""
    n_ours, n_base = _calibrate(ours), _calibrate(baseline)
    best_ours = best_base = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            order = ((ours, n_ours, True), (baseline, n_base, False))
            for fn, number, is_ours in order if i % 2 == 0 else reversed(order):
                per_call = _batch_ns(fn, number) / number / 1000
                if is_ours:
                    best_ours = min(best_ours, per_call)
                else:
                    best_base = min(best_base, per_call)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best_ours, best_base


@dataclass
class Row:
    operation: str
    ours_us: float
    baseline_us: float
    target: float | None  # minimum ratio baseline/ours, None for an informational row

    @property
    def ratio(self) -> float:
        return self.baseline_us / self.ours_us

    @property
    def passed(self) -> bool:
        return self.target is None or self.ratio >= self.target


def report(title: str, rows: list[Row], notes: Sequence[str] = ()) -> int:
    """Prints the table; returns the exit status (1 when a target is missed)."""
    print(f"\n{title}")
    head = (
        f"{'operation':<34} {'ours µs':>10} {'baseline µs':>12} {'ratio':>8} {'target':>8}  result"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        target = f">={r.target:g}x" if r.target is not None else "-"
        result = ("pass" if r.passed else "FAIL") if r.target is not None else "info"
        print(
            f"{r.operation:<34} {r.ours_us:>10.2f} {r.baseline_us:>12.2f} "
            f"{r.ratio:>7.2f}x {target:>8}  {result}"
        )
    for note in notes:
        print(f"  * {note}")
    failed = [r.operation for r in rows if not r.passed]
    if failed:
        print(f"MISSED: {', '.join(failed)}")
    sys.stdout.flush()
    return 1 if failed else 0
