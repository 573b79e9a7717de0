"""Run the benchmarks of issue 8, one after another, each in a process of its own; then a summary.

    ./switchboard bench                 # all of them (about N minutes on 2 cores; see bench/README.md)
    ./switchboard bench ingest routing  # some of them, by name
    ./switchboard bench --quick         # small sizes, short steps: checks that everything runs
    .venv/bin/python -m bench --list

Options after the names go to every benchmark (e.g. `--quick`). Each benchmark is a module of this
package; adding one is adding a row to BENCHMARKS and a `measure` function (see bench/harness.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import REPO_ROOT, machine_description, number

# name -> (module, what it measures); run in this order.
BENCHMARKS = {
    "ingest": ("bench.ingest", "1. webhook ingest: signed Twilio SMS at rising rates"),
    "screen": ("bench.inbound_to_screen", "2. inbound -> agent screen, 1,000 agents connected, 50 msgs/s"),
    "routing-choice": ("bench.routing_choice", "3a. routing: the pure choice function"),
    "routing": ("bench.routing_service", "3b. routing: the locked service path, 1 and 4 routers"),
    "websockets": ("bench.websocket_scale", "4. websocket scale: agents per process, RSS, fan-out"),
    "timers": ("bench.timers", "5. timers: 10,000 due in the same minute"),
    "workspace": ("bench.workspace", "6. agent workspace: the desktop's server time and queries"),
}
# The pure choice function needs no database and has options of its own.
QUICK_ARGS = {"bench.routing_choice": ["--sizes", "1000,10000", "--rounds", "3", "--samples", "300"]}


def main(
    argv: list[str], table: dict[str, tuple[str, str]] = BENCHMARKS, doc: str = __doc__, kind: str = "bench"
) -> int:
    """Run the named modules of `table` (all when none is named), each in a process of its own, and
    print the summary of their figures. The fault drills (bench/drills.py) use it with their own table."""
    if "--list" in argv or "-h" in argv or "--help" in argv:
        print(doc)
        for name, (module, what) in table.items():
            print(f"  {name:<15} {what}  ({module})")
        return 0
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]  # names first, then options for each benchmark
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"{kind}: unknown name {', '.join(unknown)}; known: {', '.join(table)}", file=sys.stderr)
        return 2
    print(f"machine: {machine_description()}")
    summary = Path(tempfile.mkstemp(prefix="sb-bench-summary-", suffix=".jsonl")[1])
    env = {**os.environ, "BENCH_SUMMARY": str(summary)}
    failed = []
    started = time.monotonic()
    for name in names or list(table):
        module, _ = table[name]
        args = QUICK_ARGS.get(module, options) if "--quick" in options else ([] if module in QUICK_ARGS else options)
        code = subprocess.call([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env)
        if code != 0:
            failed.append(name)
    rows = [json.loads(line) for line in summary.read_text().splitlines() if line.strip()]
    summary.unlink()
    print(
        f"\n=== summary ({time.monotonic() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}) ==="
    )
    for row in rows:
        limit = f"limit {number(row['limit'])} ({row['ratio']:.2f}x)" if row["ratio"] is not None else ""
        verdict = {True: "met", False: "MISSED", None: ""}[row["met"]]
        print(f"  {row['what']:<52} {number(row['value']):>9} {row['unit']:<8} {limit:<26} {verdict}")
    if failed:
        print(f"{kind}: {', '.join(failed)} failed (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
