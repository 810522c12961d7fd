"""Fixtures every test folder shares: a real PostgreSQL server.

``TEST_POSTGRES_URL`` (an admin URL) is used when set; otherwise the machine's own
cluster is started (``pg_ctlcluster``, safe to repeat) and a test role is given a fresh
random password. Without PostgreSQL the tests that need it skip, unless
``REQUIRE_POSTGRES=1`` (set by .ci/run), where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

TEST_ROLE = "platform_test"


def _local_cluster_url() -> str | None:
    if not shutil.which("pg_lsclusters") or os.geteuid() != 0:
        return None
    clusters = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.split()
    if len(clusters) < 3:
        return None
    version, name, port = clusters[:3]
    subprocess.run(["pg_ctlcluster", version, name, "start"], capture_output=True)  # fails if up: fine
    password = secrets.token_hex(16)
    sql = (f"do $$ begin if not exists (select from pg_roles where rolname = '{TEST_ROLE}') then "
           f"create role {TEST_ROLE} login superuser; end if; end $$; "
           f"alter role {TEST_ROLE} password '{password}';")
    for _ in range(30):
        done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", port, "-qc", sql],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return f"postgresql+psycopg2://{TEST_ROLE}:{password}@127.0.0.1:{port}/postgres"
        time.sleep(1)
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.getenv("TEST_POSTGRES_URL") or _local_cluster_url()
    reason = "no PostgreSQL: set TEST_POSTGRES_URL or install the postgresql package"
    if url:
        try:
            engine = sa.create_engine(url)
            with engine.connect():
                pass
            engine.dispose()
            return url
        except sa.exc.OperationalError as e:
            reason = f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} refused: {e}"
    if os.getenv("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_database(postgres_admin_url):
    """A fresh, empty database; its URL. Dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()
