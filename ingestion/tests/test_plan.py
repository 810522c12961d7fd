"""What a run of a table reads, decided before any row moves (``engine.plan_load``): a
pure function, checked without a database."""

import doctest
from datetime import UTC, date, datetime, timedelta

from platform_ingestion import audit as wap
from platform_ingestion import engine
from platform_ingestion.engine import Recorded, plan_load
from platform_ingestion.loading import LoadRequest
from platform_shared import CatalogTable

ORDERS = CatalogTable("orders", "orders", ("order_id",), load="incremental", cursor="updated_at", overlap_minutes=10)
PUBLISHED = Recorded(
    published=3, resumable=True, staged_max=datetime(2026, 12, 1, 8), last_started=datetime(2026, 12, 1, 9)
)
BEGINNING = datetime.min


PLAIN, NO_DRIFT = LoadRequest(), wap.Drift()


def _plan(table=ORDERS, request=PLAIN, drift=NO_DRIFT, recorded=PUBLISHED):
    return plan_load(table, request=request, drift=drift, recorded=recorded, beginning=BEGINNING)


def test_the_docstring_s_example_holds():
    [test] = [t for t in doctest.DocTestFinder().find(engine) if t.name.endswith(".plan_load")]
    assert test.examples
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_a_full_table_a_first_load_and_a_full_refresh_are_dlt_loads():
    full = CatalogTable("products", "products", ("product_id",))
    assert _plan(full) == engine.Plan("dlt", LoadRequest(), None)
    assert _plan(recorded=Recorded()) == engine.Plan("dlt", LoadRequest(), 1)
    refresh = LoadRequest(full_refresh=True)
    assert _plan(request=refresh) == engine.Plan("dlt", refresh, 4)


def test_a_published_table_merges_its_changes_from_the_largest_staged_cursor():
    assert _plan() == engine.Plan("direct", LoadRequest(), 4, datetime(2026, 12, 1, 8))


def test_a_cursor_past_the_last_run_s_start_is_read_from_that_start_instead():
    ahead = Recorded(
        published=3, resumable=True, staged_max=datetime(2031, 1, 1), last_started=datetime(2026, 12, 1, 9)
    )
    assert _plan(recorded=ahead) == engine.Plan(
        "direct", LoadRequest(), 4, datetime(2026, 12, 1, 9), cursor_ahead=datetime(2031, 1, 1)
    )
    aware = Recorded(
        published=3, resumable=True, staged_max=datetime(2031, 1, 1, tzinfo=UTC), last_started=datetime(2026, 12, 1, 9)
    )
    assert _plan(recorded=aware).mark == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_added_columns_read_every_row_again_and_other_drift_reads_the_overlap_with_dlt():
    added = _plan(drift=wap.Drift(added=["coupon"]))
    assert (added.path, added.whole_table, added.window.backfill_from) == ("dlt", True, BEGINNING)
    retyped = _plan(drift=wap.Drift(retyped={"total": ("INTEGER", "REAL")}))
    assert (retyped.path, retyped.whole_table) == ("dlt", False)
    assert retyped.window.backfill_from == datetime(2026, 12, 1, 8) - timedelta(minutes=10)


def test_a_date_cursor_is_read_from_its_mark_less_a_day_never_from_dlt_s_state():
    visits = CatalogTable("visits", "visits", ("visit_id",), load="incremental", cursor="day", overlap_minutes=10)
    recorded = Recorded(
        published=2, resumable=True, staged_max=date(2026, 11, 30), last_started=datetime(2026, 12, 1, 9)
    )
    assert _plan(visits, recorded=recorded) == engine.Plan(
        "dlt", LoadRequest(date(2026, 11, 29), date(9999, 12, 31)), 3, date(2026, 11, 30)
    )
    ahead = Recorded(published=2, resumable=True, staged_max=date(2099, 1, 1), last_started=datetime(2026, 12, 1, 9))
    assert _plan(visits, recorded=ahead) == engine.Plan(
        "dlt", LoadRequest(date(2026, 11, 30), date(9999, 12, 31)), 3, date(2026, 12, 1), cursor_ahead=date(2099, 1, 1)
    )
