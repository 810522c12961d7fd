"""Each location's own tests on the PostgreSQL server, in the location's own environment.

They run from a worker of the suite's (group postgres-location, conftest.py), beside the
suite's other tests on the server, on the same admin URL (the test role's password is
kept: tools/postgres.py). make test runs each location's other tests beside the suite.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from platform_shared.workspace import locations

REPO = Path(__file__).resolve().parents[1]
# The environment make test gave the suite, read at collection: before any fixture (the
# session's platform) sets its settings.
LAUNCH_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
ON_SERVER = [
    loc.path
    for loc in locations(REPO)
    if any("postgres_database" in f.read_text() for f in (REPO / loc.path / "tests").glob("*.py"))
]


def test_the_ingestion_location_has_tests_on_the_server():
    assert "ingestion" in ON_SERVER


@pytest.mark.postgres
@pytest.mark.parametrize("location", ON_SERVER)
def test_a_location_s_postgres_tests_pass_in_its_own_environment(location, postgres_admin_url):
    venv = REPO / location / ".venv" / "bin"
    assert (venv / "pytest").exists(), f"run `make envs` ({location}/.venv)"
    env = {**LAUNCH_ENV, "TEST_POSTGRES_URL": postgres_admin_url, "PATH": f"{venv}:/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run(
        [str(venv / "pytest"), f"{location}/tests", "-m", "postgres", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout, done.stdout[-3000:]
