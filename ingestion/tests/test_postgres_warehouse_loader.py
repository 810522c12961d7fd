"""dlt's sessions on a PostgreSQL warehouse (WAREHOUSE=postgres)."""

from platform_ingestion.loading import POSTGRES_LOADER_WORK_MEM, build_pipeline
from platform_shared import CatalogTable, Warehouse


def test_the_loader_sessions_get_the_work_mem_of_a_hashed_scd2_merge(postgres_database, tmp_path):
    # Regression: with PostgreSQL's default 4 MB, dlt's scd2 merge (`not in (select ...)`)
    # rescanned its subquery for every row, and re-ingesting 200,000 customers ran for more
    # than ten minutes (make bench at scale 100).
    table = CatalogTable("customers", "customers", ("customer_id",))
    pipeline = build_pipeline(table, warehouse=Warehouse(kind="postgres", url=postgres_database),
                              pipelines_dir=tmp_path)
    with pipeline.sql_client() as client:
        assert client.execute_sql("show work_mem") == [(POSTGRES_LOADER_WORK_MEM,)]
