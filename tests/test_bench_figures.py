"""docs/performance.md opens with the figures the benches printed (bench/figures.py): the
table is docs/bench/figures.json as written by them, never typed by hand."""

import json

from bench import figures


def test_the_table_of_docs_performance_is_the_one_the_benches_wrote():
    kept = json.loads(figures.FIGURES.read_text())
    page = figures.PAGE.read_text()
    between = page.split(figures.BEGIN, 1)[1].split(figures.END, 1)[0]
    assert between.strip() == figures.table(kept)
    assert set(kept) <= set(figures.ROWS)
    for name, figure in kept.items():
        assert figure["command"].startswith("python -m bench."), name
        assert ", commit " in figure["provenance"], name


def test_recording_a_figure_rewrites_the_table_and_computes_the_target(tmp_path, monkeypatch):
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\n{figures.BEGIN}\nold\n{figures.END}\n\nHistory.\n")
    monkeypatch.setattr(figures, "PAGE", page)
    monkeypatch.setattr(figures, "FIGURES", tmp_path / "figures.json")
    monkeypatch.setattr(figures, "provenance", lambda commit: "2026-12-05 04:00 UTC, commit abc1234, 2 cores")
    figures.record({"reconcile_duckdb": (0.4249, "0.42 (8.1 s against 19.0 s)")}, printed_by="python -m bench.a")
    figures.record(
        {"reconcile_postgres": (0.99, "0.99 (44.1 s)"), "make_ingest": (0.5, "0.50")}, printed_by="python -m bench.b"
    )
    lines = page.read_text().splitlines()
    assert lines[:3] == ["# Performance", "", figures.BEGIN]
    assert lines[-3:] == [figures.END, "", "History."]
    by = "(2026-12-05 04:00 UTC, commit abc1234, 2 cores) |"
    what = {name: row[0] for name, row in figures.ROWS.items()}
    assert lines[3:-3] == [
        "| measures | figure | target | printed by |",
        "|---|---|---|---|",
        f"| {what['make_ingest']} | 0.50 | at least 0.5: met | `python -m bench.b` {by}",
        f"| {what['reconcile_duckdb']} | 0.42 (8.1 s against 19.0 s) | at most 0.5: met | `python -m bench.a` {by}",
        f"| {what['reconcile_postgres']} | 0.99 (44.1 s) | at most 0.5: **missed** | `python -m bench.b` {by}",
    ]
    assert json.loads(figures.FIGURES.read_text())["reconcile_duckdb"]["value"] == 0.42
