"""Bad input in the source: each either loads under a tested policy or fails clearly."""

import pytest

CATALOG = """
tables:
  - source: notes
    primary_key: note_id
"""


@pytest.fixture
def notes(ingestion):
    ingestion.sql("create table notes (note_id integer primary key, body text, at text);")
    ingestion.catalog_path.write_text(CATALOG)
    return ingestion


def test_an_empty_table_loads_as_an_empty_table(notes):
    assert notes.run("notes").success
    assert notes.query("select count(*) from raw.notes") == [(0,)]


def test_control_characters_and_huge_text_arrive_unchanged(notes):
    huge = "x" * 5_000_000
    notes.sql(f"insert into notes values (1, 'tab\tnew\nline\r\x01\x1f end', null), (2, '{huge}', null);")
    assert notes.run("notes").success
    assert notes.query("select body from raw.notes where note_id = 1") == [("tab\tnew\nline\r\x01\x1f end",)]
    assert notes.query("select length(body) from raw.notes where note_id = 2") == [(5_000_000,)]


def test_invalid_utf8_is_replaced_not_a_table_failure(notes):
    # SQLite stores these bytes as TEXT as they are; they are not valid UTF-8.
    notes.sql("insert into notes values (1, 'fine', null), (2, cast(x'41ff42c3' as text), null);")
    assert notes.run("notes").success, notes.failure_message(notes.run("notes"))
    assert notes.query("select body from raw.notes order by note_id") == [("fine",), ("A\ufffdB\ufffd",)]


def test_timestamps_with_mixed_time_zones_are_kept_as_written(notes):
    notes.sql(
        "insert into notes values (1, 'a', '2026-03-01 12:00:00+02:00'), (2, 'b', '2026-03-01 10:00:00Z'),"
        " (3, 'c', '2026-03-01 10:00:00');"
    )
    assert notes.run("notes").success
    # SQLite has no timestamp type: the text arrives as written, for dbt to parse per zone.
    assert [r[0] for r in notes.query('select "at" from raw.notes order by note_id')] == [
        "2026-03-01 12:00:00+02:00",
        "2026-03-01 10:00:00Z",
        "2026-03-01 10:00:00",
    ]
