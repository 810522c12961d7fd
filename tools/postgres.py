"""A PostgreSQL server to work against: TEST_POSTGRES_URL, or the machine's own cluster.

Used by the tests (root conftest.py) and `make deploy-check`. The machine's cluster is
started with pg_ctlcluster (safe to repeat) and a role is given a fresh random password;
Debian's cluster takes passwords on 127.0.0.1 and peer authentication on its socket.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

ROLE = "platform_test"


def local_cluster_url(role: str = ROLE) -> str | None:
    """An admin (superuser) URL on the machine's cluster, or None when there is none."""
    if not shutil.which("pg_lsclusters") or os.geteuid() != 0:
        return None
    clusters = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.split()
    if len(clusters) < 3:
        return None
    version, name, port = clusters[:3]
    subprocess.run(["pg_ctlcluster", version, name, "start"], capture_output=True)  # fails if up: fine
    password = secrets.token_hex(16)
    sql = (
        f"do $$ begin if not exists (select from pg_roles where rolname = '{role}') then "
        f"create role {role} login superuser; end if; end $$; "
        f"alter role {role} password '{password}';"
    )
    for _ in range(30):
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-p", port, "-qc", sql], capture_output=True, text=True
        )
        if done.returncode == 0:
            return f"postgresql+psycopg2://{role}:{password}@127.0.0.1:{port}/postgres"
        time.sleep(1)
    return None


def restart_local_cluster() -> None:
    """Restart the machine's cluster (fast mode: every connection is cut), as a server
    restart or failover does to its clients; back up when this returns."""
    version, name = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    subprocess.run(["pg_ctlcluster", version, name, "restart", "-m", "fast"], check=True, capture_output=True)


def admin_url() -> str | None:
    """TEST_POSTGRES_URL when set, else the machine's cluster, else None."""
    return os.getenv("TEST_POSTGRES_URL") or local_cluster_url()
