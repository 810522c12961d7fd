"""Ingestion speed and memory: `make ingest` beside the same loads without Dagster, a raw
copy (the baseline: Arrow-native drivers `select *` straight into a DuckDB table, no audit,
no history, no hashing) and a naive baseline; then, when a PostgreSQL server is at hand,
the same into the server warehouse against its own raw copy (ADBC's bulk ingest, which
streams Arrow batches with COPY).

    python -m bench.ingest_bench --scales 1,10,100      (make bench SCALES=1,10,100)

For each scale the demo database is generated once into data/bench/scale_<N>/app.db
(reused when present; indexes of the demo schema that it lacks are created). Every variant
runs in its own subprocess with a fresh warehouse under data/bench/run/, on the same
source file, and is timed two ways, each compared only with the same way:

- whole command: wall time from the process's start to its exit (interpreter, imports,
  and for make ingest the Dagster instance and run), for every variant; for the library,
  to the end of its full load (the scenarios after it run in the same process);
- in process: the work alone, timed inside the process (not for make ingest).

The variants:

- make ingest: the whole command, `python -m tools.run_all --location ingestion`;
- library: `ingest_table` for each catalog table in catalog order (extract, drift, stage,
  hard deletes, audit, publish): no Dagster; the difference of the two whole commands is
  the fixed orchestration overhead;
- raw copy: connectorx (arrow_stream) and ADBC (adbc-driver-sqlite) record batches
  scanned by DuckDB into `create table ... as`, no framework; the faster one is the
  baseline every ratio divides by;
- naive: pandas `read_sql` of each whole table, then DuckDB `create table ... as`.

Then, at library level, the tables are ingested again with nothing changed (an hourly run
of a quiet hour: the fixed cost of a run), then 1% of every table's rows change (in a copy
of the source: 0.8% updated with a newer updated_at, 0.1% inserted, 0.1% deleted) and the
tables are ingested again into the same warehouse; then 1% of the rows are changed without
touching updated_at (no cursor sees them) and every table is reconciled; then the tables
are ingested while the demo's live writer commits to the copy, and once more after it
stopped. Each "of full" ratio divides by the first, full library load of the same run,
both timed in the process.

With ``--tpch SF``, the same `make ingest` and raw copy (whole commands) run on a public
benchmark schema instead: TPC-H's lineitem and orders at scale factor SF (tpchgen-cli, from
PyPI; 7.5 million rows at SF 1, wide rows of decimals, dates and text), in a SQLite file
with TPC-H's declared types, through a catalog of its own (both tables loaded whole).

Peak memory is the child's ru_maxrss (os.wait4). Figures only: no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.figures import provenance, record

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "data" / "bench"
VARIANTS = {
    "make_ingest": "make ingest (whole command)",
    "library": "library (same loads, no Dagster)",
    "floor_connectorx": "raw copy: connectorx -> DuckDB",
    "floor_adbc": "raw copy (baseline): ADBC -> DuckDB",
    "pandas": "naive: pandas read_sql -> DuckDB",
    # The server warehouse (WAREHOUSE=postgres), when a PostgreSQL server is at hand:
    # BENCH_POSTGRES_URL (a role that may create databases), else the machine's cluster.
    "pg_make_ingest": "PostgreSQL: make ingest (whole command)",
    "pg_library": "PostgreSQL: library (same loads, no Dagster)",
    "pg_floor_adbc": "PostgreSQL: raw copy (baseline): ADBC -> COPY",
}
PG_VARIANTS = [v for v in VARIANTS if v.startswith("pg_")]
# When the parent launched a variant's process (its whole command, measured from there).
LAUNCHED = "BENCH_LAUNCHED"
# The demo tables' value column that the 1% change edits, beside updated_at.
CHANGES = {
    "customers": "country = 'ZZ'",
    "products": "price_cents = price_cents + 1",
    "orders": "status = 'returned'",
    "order_items": "quantity = quantity + 1",
    "payments": "status = 'refunded'",
    "web_sessions": "pages_viewed = pages_viewed + 1",
}


def _tables() -> list[str]:
    """The source table of every catalog entry, in catalog order."""
    from platform_shared import load_catalog, load_settings

    return [t.source for t in load_catalog(load_settings().catalog_path).tables]


# --- children: one variant each, printing one JSON line --------------------------------------


def _child_library(source: Path, workdir: Path) -> dict:
    from platform_ingestion.engine import ingest_table
    from platform_ingestion.loading import LoadRequest
    from platform_shared import Warehouse, load_catalog, load_settings

    settings = load_settings()
    catalog = load_catalog(settings.catalog_path)
    warehouse = (
        Warehouse(kind="postgres", url=settings.warehouse_url)
        if settings.warehouse == "postgres" and settings.warehouse_url
        else Warehouse(path=str(settings.warehouse_path))
    )

    def ingest_all(url: str) -> float:
        started = time.perf_counter()
        for table in catalog.tables:
            ingest_table(
                table,
                request=LoadRequest(),
                warehouse=warehouse,
                source_url=url,
                pipelines_dir=workdir / "dlt_pipelines",
                hash_key="bench-only-key",
            )
        return time.perf_counter() - started

    def reconcile_all(url: str) -> float:
        from platform_ingestion.reconcile import reconcile_table

        started = time.perf_counter()
        for table in catalog.tables:
            reconcile_table(table, warehouse=warehouse, source_url=url, hash_key="bench-only-key")
        return time.perf_counter() - started

    seconds = ingest_all(f"sqlite:///{source}")
    # The whole command up to here, comparable with make ingest's (the scenarios below run
    # in the same process): from the parent's launch of this process.
    whole = time.time() - float(os.environ[LAUNCHED])
    # An hourly run as in production, with nothing changed: the incremental tables are
    # merged without a dlt pipeline from now on (platform_ingestion/direct.py).
    unchanged = ingest_all(f"sqlite:///{source}")
    changed = workdir / "changed.db"
    shutil.copyfile(source, changed)
    # 1% of the rows change: 0.8% updated (a newer updated_at), 0.1% inserted (copies under
    # new keys), 0.1% hard-deleted.
    with sqlite3.connect(changed) as conn:
        n = 0
        for t in catalog.tables:
            key = t.primary_key[0]
            n += conn.execute(
                f"update {t.source} set updated_at = '2026-08-01 00:00:00.000000', "
                f"{CHANGES[t.source]} where {key} % 1000 < 8"
            ).rowcount
            (top,) = conn.execute(f"select max({key}) from {t.source}").fetchall()[0]
            columns = [r[1] for r in conn.execute(f"pragma table_info({t.source})")]
            copied = ", ".join(
                f"{c} + {top}" if c == key else "'2026-08-01 00:00:00.000000'" if c == "updated_at" else c
                for c in columns
            )
            n += conn.execute(f"insert into {t.source} select {copied} from {t.source} where {key} % 1000 = 8").rowcount
            n += conn.execute(f"delete from {t.source} where {key} % 1000 = 9").rowcount
    reingest = ingest_all(f"sqlite:///{changed}")
    # Reconciliation when at most 1% of rows differ: 1% updated with an old updated_at,
    # which no cursor reads (the stage now differs from the source in those rows).
    with sqlite3.connect(changed) as conn:
        for t in catalog.tables:
            conn.execute(f"update {t.source} set {CHANGES[t.source]} where {t.primary_key[0]} % 100 = 50")
    reconcile = reconcile_all(f"sqlite:///{changed}")
    # A run while the application writes (the demo's live writer, on the changed copy).
    writer = subprocess.Popen(
        [sys.executable, "-m", "platform_shared.demo_data", "--url", f"sqlite:///{changed}", "--live", "3600"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        during_writes = ingest_all(f"sqlite:///{changed}")
    finally:
        writer.kill()
        writer.wait()
    quiet = ingest_all(f"sqlite:///{changed}")
    return {
        "seconds": seconds,
        "whole_seconds": whole,
        "unchanged_seconds": unchanged,
        "reingest_seconds": reingest,
        "changed_rows": n,
        "reconcile_seconds": reconcile,
        "during_writes_seconds": during_writes,
        "quiet_seconds": quiet,
    }


def _child_floor(source: Path, workdir: Path, driver: str) -> dict:
    import duckdb

    if driver == "adbc":
        import adbc_driver_sqlite.dbapi as adbc
    else:
        import connectorx as cx
    tables = _tables()
    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    started = time.perf_counter()
    src = adbc.connect(str(source)) if driver == "adbc" else None
    for table in tables:
        if src is not None:  # ADBC
            cur = src.cursor()
            cur.execute(f'select * from "{table}"')
            reader = cur.fetch_record_batch()  # noqa: F841 (DuckDB scans it by name)
        else:
            reader = cx.read_sql(  # noqa: F841 (DuckDB scans it by name)
                f"sqlite://{source}",
                f'select * from "{table}"',
                return_type="arrow_stream",
                batch_size=100_000,
            )
        con.execute(f'create table "{table}" as select * from reader')
    con.close()
    return {"seconds": time.perf_counter() - started}


def _child_pg_floor(source: Path, url: str) -> dict:
    """Arrow batches from SQLite (ADBC) into PostgreSQL with ADBC's bulk ingest (COPY)."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    import adbc_driver_sqlite.dbapi as adbc
    from sqlalchemy.engine import make_url

    uri = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    with adbc.connect(str(source)) as src, adbc_pg.connect(uri) as dst:
        for table in _tables():
            cur = src.cursor()
            cur.execute(f'select * from "{table}"')
            with dst.cursor() as out:
                out.adbc_ingest(table, cur.fetch_record_batch(), mode="replace")
            dst.commit()
    return {"seconds": time.perf_counter() - started}


def _child_pandas(source: Path, workdir: Path) -> dict:
    import duckdb
    import pandas as pd

    tables = _tables()
    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    started = time.perf_counter()
    with sqlite3.connect(source) as src:
        for table in tables:
            frame = pd.read_sql(f'select * from "{table}"', src)  # noqa: F841
            con.execute(f'create table "{table}" as select * from frame')
    con.close()
    return {"seconds": time.perf_counter() - started}


def child(variant: str, source: Path, workdir: Path) -> None:
    if variant in ("library", "pg_library"):
        out = _child_library(source, workdir)
    elif variant == "pg_floor_adbc":
        out = _child_pg_floor(source, os.environ["WAREHOUSE_URL"])
    elif variant.startswith("floor_"):
        out = _child_floor(source, workdir, variant.removeprefix("floor_"))
    else:
        out = _child_pandas(source, workdir)
    print(json.dumps(out))


# --- parent ----------------------------------------------------------------------------------


def source_database(scale: float) -> Path:
    """The demo database of a scale, generated once (into a temporary name, then renamed)."""
    path = BENCH / f"scale_{scale:g}" / "app.db"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        print(f"generating the demo database at scale {scale:g} into {path} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "platform_shared.demo_data", "--scale", str(scale)],
            env={**os.environ, "SOURCE_DATABASE_URL": f"sqlite:///{partial}"},
            check=True,
        )
        partial.rename(path)
    # A database generated before the demo schema indexed updated_at gets its indexes.
    import sqlalchemy as sa

    from platform_shared import demo_data

    engine = sa.create_engine(f"sqlite:///{path}")
    for table in demo_data.md.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)
    engine.dispose()
    return path


def measure(args: list[str], env: dict, log: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (the child's ru_maxrss, from wait4) and exit status."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, proc.returncode


def postgres_admin_url() -> str | None:
    from tools import postgres

    return os.getenv("BENCH_POSTGRES_URL") or postgres.local_cluster_url()


def fresh_postgres_database(admin_url: str, name: str) -> str:
    """An empty database ``name`` on the server (dropped first if there); its URL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        conn.execute(sa.text(f'create database "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def run_variant(variant: str, source: Path, scale: float | str, pg_admin: str | None = None) -> dict:
    """``scale``: the demo's scale, or the name of another source (its folder's)."""
    where = scale if isinstance(scale, str) else f"scale_{scale:g}"
    workdir = BENCH / "run" / where / variant
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PII_HASH_KEY"}
    env |= {"SOURCE_DATABASE_URL": f"sqlite:///{source}", "WAREHOUSE_PATH": str(workdir / "warehouse.duckdb")}
    if variant in PG_VARIANTS:
        if pg_admin is None:
            raise SystemExit(f"{VARIANTS[variant]}: no PostgreSQL server (BENCH_POSTGRES_URL or the machine's cluster)")
        env |= {"WAREHOUSE": "postgres", "WAREHOUSE_URL": fresh_postgres_database(pg_admin, f"bench_{variant}")}
    log = workdir / "output.log"
    if variant in ("make_ingest", "pg_make_ingest"):
        (workdir / "dagster_home").mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", workdir / "dagster_home" / "dagster.yaml")
        env["DAGSTER_HOME"] = str(workdir / "dagster_home")
        args = [sys.executable, "-m", "tools.run_all", "--location", "ingestion"]
    else:
        args = [
            sys.executable,
            "-m",
            "bench.ingest_bench",
            "--child",
            variant,
            "--source",
            str(source),
            "--workdir",
            str(workdir),
        ]
    env[LAUNCHED] = str(time.time())
    wall, peak_mb, status = measure(args, env, log)
    if status != 0:
        raise SystemExit(f"{VARIANTS[variant]} failed on {where} (exit {status}): see {log}")
    # Every variant's whole command (a process of its own, started and ended), and, but for
    # make ingest, the work alone (timed in the process, as the scenarios after a load are).
    result = {"seconds": wall, "peak_mb": peak_mb, "inprocess": None}
    if variant not in ("make_ingest", "pg_make_ingest"):
        measured = json.loads(log.read_text().strip().splitlines()[-1])
        result |= measured | {"inprocess": measured["seconds"], "seconds": measured.get("whole_seconds", wall)}
    return result


def bench_scale(scale: float, variants: list[str]) -> list[tuple]:
    source = source_database(scale)
    with sqlite3.connect(source) as conn:
        rows = sum(conn.execute(f'select count(*) from "{t}"').fetchone()[0] for t in _tables())
    pg_admin = postgres_admin_url() if set(variants) & set(PG_VARIANTS) else None
    if pg_admin is None:
        variants = [v for v in variants if v not in PG_VARIANTS]
        print("no PostgreSQL server (BENCH_POSTGRES_URL or the machine's cluster): DuckDB only", flush=True)
    results = {}
    for v in variants:
        print(f"scale {scale:g}: {VARIANTS[v]} ...", flush=True)
        results[v] = run_variant(v, source, scale, pg_admin)
    lines = []
    for v, r in results.items():
        # Each warehouse's variants against its own raw copy (the fastest), timed alike:
        # whole command against whole command, work in the process against the same.
        group = "pg_" if v in PG_VARIANTS else ""
        copies = [q for u, q in results.items() if u.startswith(f"{group}floor_")]
        whole = max((rows / q["seconds"] for q in copies), default=None)
        inside = max((rows / q["inprocess"] for q in copies if q["inprocess"]), default=None)
        lines.append(
            (
                f"{scale:g}",
                VARIANTS[v],
                f"{rows:,}",
                f"{r['seconds']:.1f}",
                f"{r['inprocess']:.1f}" if r["inprocess"] else "-",
                f"{rows / r['seconds'] / whole:.2f}" if whole else "-",
                f"{rows / r['inprocess'] / inside:.2f}" if inside and r["inprocess"] else "-",
                f"{r['peak_mb']:,.0f}",
            )
        )
    for prefix, label in (("", ""), ("pg_", "PostgreSQL: ")):
        if f"{prefix}library" not in results:
            continue
        lib = results[f"{prefix}library"]
        if f"{prefix}make_ingest" in results:
            overhead = results[f"{prefix}make_ingest"]["seconds"] - lib["seconds"]
            lines.append(
                (f"{scale:g}", f"{label}orchestration (make ingest - library, whole commands)", "", f"{overhead:.1f}")
                + ("",) * 4
            )
        for key, what, rows in (
            ("unchanged_seconds", "re-ingest, nothing changed", "0"),
            ("reingest_seconds", "re-ingest, 1% changed (updates, inserts, deletes)", f"{lib['changed_rows']:,}"),
            ("reconcile_seconds", "reconcile every table, 1% differing", ""),
            ("during_writes_seconds", "re-ingest while the live writer commits", ""),
            ("quiet_seconds", "re-ingest after it, quiet", ""),
        ):
            # In the process, against the full load in the process.
            ratio = lib[key] / lib["inprocess"]
            lines.append(
                (f"{scale:g}", f"{label}{what} (library; {ratio:.2f} of full)", rows, "-", f"{lib[key]:.1f}")
                + ("",) * 3
            )
    if scale == 100:
        record(headline_figures(results))
    return lines


def headline_figures(results: dict) -> dict[str, tuple[float, str]]:
    """The figures of scale 100 that docs/performance.md opens with (``bench.figures``)."""
    figures = {}
    floors = [r["seconds"] for v, r in results.items() if v.startswith("floor_")]
    if "make_ingest" in results and floors:
        made, floor = results["make_ingest"]["seconds"], min(floors)
        figures["make_ingest"] = (floor / made, f"{floor / made:.2f} ({made:.1f} s against {floor:.1f} s)")
    for prefix, warehouse in (("", "duckdb"), ("pg_", "postgres")):
        if (lib := results.get(f"{prefix}library")) is None:
            continue
        for key, name in (("reconcile_seconds", "reconcile"), ("reingest_seconds", "reingest")):
            ratio = lib[key] / lib["inprocess"]
            reads = f"{ratio:.2f} ({lib[key]:.1f} s against {lib['inprocess']:.1f} s, both in the process)"
            figures[f"{name}_{warehouse}"] = (ratio, reads)
    return figures


def format_table(lines: list[tuple]) -> str:
    header = (
        "scale",
        "variant",
        "rows",
        "whole command s",
        "in process s",
        "x raw copy (whole)",
        "x raw copy (in process)",
        "peak MB",
    )
    cells = [header, *lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    fmt = lambda c: "  ".join(  # noqa: E731
        c[i].ljust(widths[i]) if i < 2 else c[i].rjust(widths[i]) for i in range(len(header))
    )
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, lines)])


# TPC-H's two largest tables with their declared types (the specification's), as an
# application database would declare them: SQLite keeps them as declared, and stores a
# decimal that is a whole number as an integer (the loads must read both).
TPCH_TABLES = {
    "lineitem": (
        ["l_orderkey", "l_linenumber"],
        "l_orderkey bigint not null, l_partkey bigint not null, l_suppkey bigint not null, "
        "l_linenumber integer not null, l_quantity decimal(15,2) not null, "
        "l_extendedprice decimal(15,2) not null, l_discount decimal(15,2) not null, "
        "l_tax decimal(15,2) not null, l_returnflag char(1) not null, l_linestatus char(1) not null, "
        "l_shipdate date not null, l_commitdate date not null, l_receiptdate date not null, "
        "l_shipinstruct char(25) not null, l_shipmode char(10) not null, l_comment varchar(44) not null",
    ),
    "orders": (
        ["o_orderkey"],
        "o_orderkey bigint not null, o_custkey bigint not null, o_orderstatus char(1) not null, "
        "o_totalprice decimal(15,2) not null, o_orderdate date not null, o_orderpriority char(15) not null, "
        "o_clerk char(15) not null, o_shippriority integer not null, o_comment varchar(79) not null",
    ),
}


def tpch_database(sf: float) -> Path:
    """TPC-H's lineitem and orders at scale factor ``sf`` in a SQLite file, with a catalog
    (catalog.yml beside it) that loads both whole; generated once."""
    import adbc_driver_sqlite.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = BENCH / f"tpch_sf{sf:g}"
    path = folder / "app.db"
    if not path.exists():
        print(f"generating TPC-H at scale factor {sf:g} into {path} ...", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        tpchgen = Path(sys.executable).parent / "tpchgen-cli"
        tables = ",".join(TPCH_TABLES)
        subprocess.run(
            [str(tpchgen), "parquet", "-s", f"{sf:g}", f"--tables={tables}", f"--output-dir={folder}"], check=True
        )
        partial = path.with_suffix(".partial")
        with sqlite3.connect(partial) as conn:
            for table, (key, columns) in TPCH_TABLES.items():
                conn.execute(f"create table {table} ({columns}, primary key ({', '.join(key)}))")
        with adbc.connect(str(partial)) as conn:
            for table in TPCH_TABLES:
                data = pq.read_table(folder / f"{table}.parquet")
                # SQLite has no decimal or date values: a decimal binds as a float, a date
                # as its ISO text (what an application's driver writes); text as plain text.
                bound = [
                    pa.float64()
                    if pa.types.is_decimal(f.type)
                    else pa.string()
                    if pa.types.is_date(f.type) or pa.types.is_string_view(f.type)
                    else f.type
                    for f in data.schema
                ]
                schema = pa.schema([pa.field(f.name, t) for f, t in zip(data.schema, bound, strict=True)])
                with conn.cursor() as cur:
                    cur.adbc_ingest(table, data.cast(schema), mode="append")
                conn.commit()
                (folder / f"{table}.parquet").unlink()
        partial.rename(path)
    catalog = "\n".join(
        f"    - source: {table}\n      primary_key: [{', '.join(key)}]" for table, (key, _) in TPCH_TABLES.items()
    )
    (folder / "catalog.yml").write_text(
        "type: platform_ingestion.components.RawTables\nattributes:\n  defaults:\n    owner: team:platform\n"
        f"  tables:\n{catalog}\n"
    )
    return path


def bench_tpch(sf: float) -> list[tuple]:
    """`make ingest` against the raw copy on TPC-H (whole commands), one after the other."""
    source = tpch_database(sf)
    os.environ["INGESTION_CATALOG"] = str(source.parent / "catalog.yml")  # (the children inherit it)
    with sqlite3.connect(source) as conn:
        rows = sum(conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TPCH_TABLES)
    results = {}
    for v in ("make_ingest", "floor_adbc"):
        print(f"TPC-H SF {sf:g}: {VARIANTS[v]} ...", flush=True)
        results[v] = run_variant(v, source, f"tpch_sf{sf:g}")
    ratio = results["floor_adbc"]["seconds"] / results["make_ingest"]["seconds"]
    reads = (
        f"{ratio:.2f} ({results['make_ingest']['seconds']:.1f} s against {results['floor_adbc']['seconds']:.1f} s, "
        f"{rows:,} rows)"
    )
    record({"make_ingest_tpch": (ratio, reads)})
    return [
        (f"TPC-H SF {sf:g}", VARIANTS[v], f"{rows:,}", f"{r['seconds']:.1f}", "-")
        + (f"{results['floor_adbc']['seconds'] / r['seconds']:.2f}", "-", f"{r['peak_mb']:,.0f}")
        for v, r in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scales", default="1,10", help="comma-separated demo scales (default 1,10)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument(
        "--child", choices=[v for v in VARIANTS if not v.endswith("make_ingest")], help=argparse.SUPPRESS
    )
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tpch", type=float, help="TPC-H at this scale factor instead of the demo")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.source, args.workdir)
    if args.tpch:
        print("\n" + format_table(bench_tpch(args.tpch)) + "\n", flush=True)
        return
    lines = []
    for scale in (float(s) for s in args.scales.split(",")):
        lines += bench_scale(scale, args.variants.split(","))
        print("\n" + format_table(lines) + "\n", flush=True)
    if args.variants == ",".join(VARIANTS):
        path = write_results(args.scales, lines)
        print(f"wrote {path.relative_to(ROOT)}")


def write_results(scales: str, lines: list[tuple]) -> Path:
    """The table as printed, in docs/bench/: the figures docs/performance.md quotes come
    from these files, never typed by hand. One file per set of scales, replaced by the
    next run of the same set (git keeps the earlier ones)."""
    path = ROOT / "docs" / "bench" / f"ingest_scales_{scales.replace(',', '_')}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# `make bench SCALES={scales}`\n\nWritten by `python -m bench.ingest_bench --scales {scales}` on "
        f"{provenance()}. See bench/ingest_bench.py "
        "for what each variant measures.\n\n```\n" + format_table(lines) + "\n```\n"
    )
    return path


if __name__ == "__main__":
    main()
