"""Run the fault drills of issue 9, one after another, each in a process of its own; then a summary.

    ./switchboard drills                    # all of them
    ./switchboard drills worker database    # some of them, by name
    ./switchboard drills --quick            # small sizes: checks that everything runs (a few minutes)
    ./switchboard drills --list

Each drill runs the product's own processes (web, worker, beat) on a database of its own, puts real
traffic through them, breaks one part the hard way (`kill -9`, a stopped server) and counts what was
sent, stored, duplicated and lost, and how long recovery took. A drill exits 1 when anything was lost
or duplicated, and so does this command. Figures and what they showed are in bench/README.md.
"""

from __future__ import annotations

import sys

from bench.__main__ import main

# name -> (module, what it does to the product); run in this order.
DRILLS = {
    "worker": ("bench.drill_worker", "kill -9 the Celery worker mid-sweep and mid-send"),
    "realtime": ("bench.drill_realtime", "restart Redis empty, then the web server, with agents connected"),
    "database": ("bench.drill_database", "stop PostgreSQL (fast, then kill -9) during webhook traffic"),
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], table=DRILLS, doc=__doc__, kind="drills"))
