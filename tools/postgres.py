"""A PostgreSQL server to work against: TEST_POSTGRES_URL, or the machine's own cluster.

Used by the tests (root conftest.py) and `make deploy-check`. The machine's cluster is
started with pg_ctlcluster (safe to repeat) and a role is given a random password,
generated once and kept in a file only root reads (``PASSWORD_FILE``): every process
that asks gets the same one, so the suite's workers and `make deploy-check` can share the
cluster. Debian's cluster takes passwords on 127.0.0.1 and peer authentication on its
socket. A test that restarts its server gets a cluster of its own (``throwaway_cluster``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROLE = "platform_test"
THROWAWAY = "platform_throwaway"  # the name of throwaway_cluster's clusters
PASSWORD_FILE = Path(os.getenv("XDG_CACHE_HOME") or Path.home() / ".cache") / "platform" / "postgres_test_password"


def _kept_password() -> str:
    """The test role's password: read from ``PASSWORD_FILE``, or generated and written there
    (mode 600) by the first process that finds it missing or empty, under a lock, so that
    every process gets the same one."""
    import fcntl

    PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(PASSWORD_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as kept:
        fcntl.flock(kept, fcntl.LOCK_EX)
        if not (password := kept.read().strip()):
            password = secrets.token_hex(16)
            kept.seek(0)
            kept.truncate()
            kept.write(password)
        return password


def _clusters() -> list[list[str]]:
    """pg_lsclusters' rows: version, name, port, status, ..."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def _machine_clusters() -> list[list[str]]:
    """The machine's own clusters: not those ``throwaway_cluster`` makes."""
    return [c for c in _clusters() if not c[1].startswith(THROWAWAY)]


def _set_password(port: str, role: str, password: str) -> bool:
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
            return True
        time.sleep(1)
    return False


def local_cluster_url(role: str = ROLE) -> str | None:
    """An admin (superuser) URL on the machine's cluster, or None when there is none."""
    if not shutil.which("pg_lsclusters") or os.geteuid() != 0:
        return None
    clusters = _machine_clusters()
    if not clusters:
        return None
    version, name, port = clusters[0][:3]
    subprocess.run(["pg_ctlcluster", version, name, "start"], capture_output=True)  # fails if up: fine
    password = _kept_password()
    if not _set_password(port, role, password):
        return None
    return f"postgresql+psycopg2://{role}:{password}@127.0.0.1:{port}/postgres"


def can_make_clusters() -> bool:
    return bool(shutil.which("pg_createcluster") and _machine_clusters()) and os.geteuid() == 0


@contextmanager
def throwaway_cluster(role: str = ROLE) -> Iterator[tuple[str, str]]:
    """A PostgreSQL cluster of its own (Debian's pg_createcluster, the machine's version),
    started, for a test that restarts its server without cutting anyone else's
    connections; yields its admin URL and name, and drops it afterwards. Named after this
    process: a cluster left by a process that no longer exists (killed) is dropped first."""
    version = _machine_clusters()[0][0]
    name = f"{THROWAWAY}_{os.getpid()}"
    for other_version, other, *_ in _clusters():
        # Left by this process's number before (a killed process whose pid came back), or by
        # a process that no longer exists.
        pid = other.removeprefix(f"{THROWAWAY}_")
        gone = not (pid.isdigit() and Path(f"/proc/{pid}").exists())
        if other.startswith(THROWAWAY) and (other == name or gone):
            subprocess.run(["pg_dropcluster", "--stop", other_version, other], capture_output=True)
    subprocess.run(["pg_createcluster", version, name, "--start"], check=True, capture_output=True)
    try:
        port = next(c[2] for c in _clusters() if c[:2] == [version, name])
        password = secrets.token_hex(16)
        if not _set_password(port, role, password):
            raise RuntimeError(f"cluster {version}/{name} on port {port} took no password for {role}")
        yield f"postgresql+psycopg2://{role}:{password}@127.0.0.1:{port}/postgres", name
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True)


def restart_local_cluster(name: str) -> None:
    """Restart the machine's cluster ``name`` (a ``throwaway_cluster``) in fast mode (every
    connection is cut), as a server restart or failover does to its clients; back up when
    this returns."""
    version = _machine_clusters()[0][0]
    subprocess.run(["pg_ctlcluster", version, name, "restart", "-m", "fast"], check=True, capture_output=True)


def admin_url() -> str | None:
    """TEST_POSTGRES_URL when set, else the machine's cluster, else None."""
    return os.getenv("TEST_POSTGRES_URL") or local_cluster_url()
