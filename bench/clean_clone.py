"""How long `make test` takes on a clean clone of HEAD with CI's variables (the REQUIRE_*
of .ci/run: no test may skip), on this machine: what a newcomer's first `make test` and
CI's test step cost, environments and all.

    python -m bench.clean_clone        (make bench-test; about 9 minutes here)

The clone gets this shell's environment without what this checkout's Makefile or
environment put in it (its DAGSTER_HOME, its .venv on PATH, make's own variables), so
that it sets itself up as on a fresh machine. Prints make test's output and the time,
and records it in docs/performance.md (``bench.figures``). Figures only: no assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.figures import record

ROOT = Path(__file__).resolve().parents[1]
CI = {"REQUIRE_POSTGRES": "1", "REQUIRE_BROWSER": "1", "REQUIRE_DEPLOY_TOOLS": "1", "REQUIRE_IMMUTABLE_FILES": "1"}
INHERITED = ("DAGSTER_HOME", "VIRTUAL_ENV", "PYTHONPATH", "UV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def fresh_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not Path(p).resolve().is_relative_to(ROOT)]
    return env | {"PATH": os.pathsep.join(path)} | CI


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clean_clone_") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        head = ["git", "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(head, cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
        started = time.perf_counter()
        done = subprocess.run(["make", "test"], cwd=clone, env=fresh_environment())
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"make test failed on the clean clone (exit {done.returncode}) after {seconds:.0f} s")
    reads = f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    print(f"make test on a clean clone: {reads}")
    record({"make_test": (seconds / 60, reads)}, commit=commit)


if __name__ == "__main__":
    main()
