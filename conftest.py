"""Fixtures every test folder shares: a real PostgreSQL server.

``TEST_POSTGRES_URL`` (an admin URL) is used when set; otherwise the machine's own
cluster is started (``pg_ctlcluster``, safe to repeat) and a test role is given a fresh
random password. Without PostgreSQL the tests that need it skip, unless
``REQUIRE_POSTGRES=1`` (set by .ci/run), where they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tools import postgres


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "postgres: uses the PostgreSQL server (added to every test that does)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    # Before `-m` selects: `make test` runs the tests on the server apart from the others.
    for item in items:
        if "postgres_admin_url" in getattr(item, "fixturenames", ()):
            item.add_marker("postgres")
    if getattr(config.option, "loadgroup", False):
        # pytest-xdist hands the groups to the workers in the order of their first test
        # (tools/test_all.py passes --no-loadscope-reorder: by default it orders them by
        # their number of tests, which started the long groups with few tests last).
        order = {group: rank for rank, group in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: order.get(_group(item), len(order)))


# The worker groups that take longest, longest first (`make test PYTEST_ARGS=--durations=40`
# on 2026-12-04, seconds of a worker under the suite's load: the platform's tests about
# 360, the postgres group 350, the faults' 300, the deploy tests 280 (one restarts a
# PostgreSQL server of its own), the platform's analytics 230, the webserver's 200, the
# locations' own tests on PostgreSQL 165, the new location 105, the alerts 105): each
# starts on the first free worker, so the long ones run side by side from the start
# instead of one of them at the end. The others follow in their collection order.
LONGEST_FIRST = [
    "platform",
    "postgres",
    "tests.test_faults",
    "tests.test_deploy",
    "platform-analytics",
    "webserver",
    "postgres-location",
    "tests.test_new_location",
    "tests.test_alerts",
]


def pytest_itemcollected(item) -> None:
    # Before any pytest_collection_modifyitems: pytest-xdist's reads the groups there.
    if getattr(item.config.option, "loadgroup", False):  # set by pytest-xdist in its workers
        item.add_marker(pytest.mark.xdist_group(_group(item)))


def _group(item) -> str:
    """The worker group of a test under `pytest -n N --dist loadgroup` (make test).

    Tests on the PostgreSQL server share one worker (module fixtures there build a platform
    on the server once), except the locations' own tests on it, which run in one pytest
    process of their own (tests/test_location_postgres_tests.py) beside them: the test
    role's password is the same for every process (tools/postgres.py), and the one test
    that restarts a server restarts a cluster of its own. The tests on the session's
    webserver share one (it starts once), the other tests on the session's platform
    another, its analytics tests a third (the platform is built once for all workers:
    tests/conftest.py). The others go by module (module fixtures are built once)."""
    names = getattr(item, "fixturenames", ())
    module = getattr(item, "module", None)
    if module and module.__name__.endswith("test_location_postgres_tests"):
        return "postgres-location"
    if "postgres_admin_url" in names or item.get_closest_marker("postgres"):
        return "postgres"
    if "webserver" in names:
        return "webserver"
    if "platform" in names:
        # The analytics tests (dbt on copies of the platform's warehouse) in a group of
        # their own: one worker ran every test on the platform, the suite's longest chain.
        return "platform-analytics" if item.module.__name__.endswith("test_analytics") else "platform"
    return item.module.__name__ if getattr(item, "module", None) else item.nodeid.split("::")[0]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = postgres.admin_url()
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
def postgres_database(postgres_admin_url, request):
    """A fresh, empty database; its URL. Dropped afterwards."""
    if getattr(request.config.option, "loadgroup", False) and not request.node.nodeid.endswith("@postgres"):
        # Asked for by name at run time (getfixturevalue): its test must carry the marker.
        pytest.fail(f"{request.node.nodeid} uses the PostgreSQL server outside the postgres group: mark it postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    # pre-ping: a test may restart the server, which cuts the pooled connection.
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()
