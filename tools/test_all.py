"""`make test` once set up and linted: the cross-location suite and each location's tests,
each location's in its own environment (as its team's CI runs them).

- The suite (tests/, shared/tests/) runs under pytest-xdist in TEST_WORKERS processes, its
  groups side by side (conftest.py): its tests wait on servers and daemons more than they
  compute. Its postgres group also runs each location's PostgreSQL tests in the location's
  environment (tests/test_location_postgres_tests.py).
- The other tests of every location but analytics_dbt run beside the suite, one location
  after another; their output follows the suite's.
- The analytics location's tests run last, and `make lint` before everything: both ran
  beside the suite once, and on two cores the suite slowed by more than they took (a
  clean clone's `make test` 10 min 23 s, against 10 min 0 s; docs/performance.md).

``--location-args`` narrows the location tests (``-k ...``; not ``-m``, which would replace
the postgres split); the other arguments go to the suite's pytest. ``--workers 0`` runs the
suite in one process; ``--only <location>`` runs one location's tests, all of them (`make
test-locations`). Exit status 1 when any part failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from platform_shared.workspace import locations

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / ".test-logs"
LAST = "analytics_dbt"


def location_tests(location: str, args: list[str], out=None) -> int:
    """pytest of ``location``/tests in ``location``/.venv, only that environment on PATH."""
    venv = REPO / location / ".venv" / "bin"
    print(f"== {location}/tests in {location}/.venv", flush=True, file=out or sys.stdout)
    return subprocess.run(
        [str(venv / "pytest"), f"{location}/tests", *args],
        cwd=REPO,
        env={**os.environ, "PATH": f"{venv}:/usr/sbin:/usr/bin:/sbin:/bin"},
        stdout=out,
        stderr=out,
    ).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", default=os.environ.get("TEST_WORKERS", "4"))
    parser.add_argument("--location-args", default="", help="extra pytest arguments of the location tests")
    parser.add_argument("--only", help="run only this location's tests, all of them (make test-locations)")
    args, suite_args = parser.parse_known_args()
    # One OpenMP thread per process, in every test process: the workers already keep both
    # cores busy, and scikit-learn's OpenMP threads spin while they wait for each other (a
    # 5 s model test took 153 s beside the other workers; `make test` 10 min 25 s with
    # them, 9 min 24 s without, docs/performance.md).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = [loc.path for loc in locations(REPO)]
    extra = shlex.split(args.location_args)
    if args.only:
        return 1 if location_tests(args.only, extra) else 0
    failed: list[str] = []
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / "locations.log", "w") as log:

        def beside() -> None:
            for name in names:
                if name != LAST and location_tests(name, ["-m", "not postgres", *extra], log):
                    failed.append(name)

        thread = threading.Thread(target=beside)
        thread.start()
        suite = ["tests", "shared/tests", *suite_args]
        if args.workers != "0":
            suite += ["-n", args.workers, "--dist", "loadgroup", "--no-loadscope-reorder"]
        if subprocess.run([sys.executable, "-m", "pytest", *suite], cwd=REPO).returncode:
            failed.append("the suite")
        thread.join()
    print((LOGS / "locations.log").read_text(), end="", flush=True)
    if LAST in names and location_tests(LAST, extra):
        failed.append(LAST)
    if failed:
        print(f"make test: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
