"""Apache Superset against `greenery serve --pg-port`: list the tables, build a chart's SQL, run it.

Runs in Superset's own venv (`make check-superset`), with a throw-away SQLite metadata
database. It uses Superset's own pieces, as its UI does: a `Database` for the connection
(SQLAlchemy, psycopg2, the postgresql engine spec), the schema's tables as Superset lists
them, a `SqlaTable` dataset whose columns Superset reads from the catalog, and the SQL its
chart builder generates for a weekly time-series of ``SUM(view_to_checkout_rate)``
(``QueryObject`` → ``SqlaTable.get_query_str``), run through the same `Database`; then the
same chart of the day column of ``sessions`` over a time range (Superset's
``TO_TIMESTAMP(…)`` bounds). Prints, as its last line (Superset logs to stdout too), JSON: the
tables, the dataset's columns, each chart's SQL and rows.

    python superset_check.py HOST PG_PORT    # the token in $GREENERY_API_TOKEN
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

SCHEMA = "semantic_layer"
DATASET = "funnel_by_week"
METRIC = "view_to_checkout_rate"
TIME_COLUMN = "metric_time__week"
RANGE = (datetime(2021, 2, 10), datetime(2021, 2, 11))  # one day of the course data's second week


def _configure(folder: Path) -> None:
    config = folder / "superset_config.py"
    config.write_text(
        f"SECRET_KEY = {os.urandom(24).hex()!r}\n"
        f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{folder / 'superset.db'}'\n"
        "WTF_CSRF_ENABLED = False\n"
        "FEATURE_FLAGS = {}\n"
    )
    os.environ["SUPERSET_CONFIG_PATH"] = str(config)


def main(host: str, port: int) -> dict[str, object]:
    token = os.environ["GREENERY_API_TOKEN"]
    with tempfile.TemporaryDirectory(prefix="superset-check-") as tmp:
        _configure(Path(tmp))
        from superset.app import create_app

        app = create_app()
        with app.app_context():
            return _check(f"postgresql+psycopg2://superset:{quote(token)}@{host}:{port}/greenery")


def _check(uri: str) -> dict[str, object]:
    from flask_appbuilder import Model
    from superset.extensions import db
    from superset.models.core import Database

    Model.metadata.create_all(db.engine)
    database = Database(database_name="greenery", sqlalchemy_uri=uri)
    db.session.add(database)
    db.session.commit()
    schemas = sorted(database.get_all_schema_names(catalog=None))
    tables = sorted(
        name for name, _, _ in database.get_all_table_names_in_schema(catalog=None, schema=SCHEMA)
    )
    dataset = _dataset(database, DATASET)
    columns = {c.column_name: {"type": c.type, "is_dttm": bool(c.is_dttm)} for c in dataset.columns}
    sql, rows = _weekly_chart(database, dataset, TIME_COLUMN)
    # a daily column charted by week over a time range, which Superset bounds with
    # TO_TIMESTAMP('…', 'YYYY-MM-DD HH24:MI:SS.US')
    ranged_sql, ranged_rows = _weekly_chart(
        database, _dataset(database, "sessions"), "metric_time__day", RANGE
    )
    return {
        "schemas": schemas,
        "tables": tables,
        "columns": columns,
        "sql": sql,
        "rows": rows,
        "ranged_sql": ranged_sql,
        "ranged_rows": ranged_rows,
    }


def _dataset(database: Any, table: str) -> Any:
    """A Superset dataset of a semantic_layer table, its columns read from the catalog."""
    from superset.connectors.sqla.models import SqlaTable
    from superset.extensions import db

    dataset = SqlaTable(table_name=table, schema=SCHEMA, database=database)
    db.session.add(dataset)
    dataset.fetch_metadata()
    db.session.commit()
    return dataset


def _weekly_chart(
    database: Any, dataset: Any, time_column: str, time_range: tuple[datetime, datetime] | None = None
) -> tuple[str, list[dict[str, object]]]:
    """The SQL Superset's chart builder writes for a weekly time-series of SUM(METRIC) on
    `time_column` (over `time_range`, if given), and its rows through the same `Database`."""
    from superset.common.query_object import QueryObject

    label = f"SUM({METRIC})"
    metric = {
        "expressionType": "SIMPLE",
        "column": {"column_name": METRIC},
        "aggregate": "SUM",
        "label": label,
    }
    axis = {
        "timeGrain": "P1W",
        "columnType": "BASE_AXIS",
        "sqlExpression": time_column,
        "label": time_column,
        "expressionType": "SQL",
    }
    query = QueryObject(
        datasource=dataset,
        columns=[axis],
        metrics=[metric],
        orderby=[(metric, False)],
        row_limit=10000,
        is_timeseries=False,
        extras={"time_grain_sqla": "P1W", "having": "", "where": ""},
    )
    if time_range is not None:
        query.granularity = time_column
        query.from_dttm, query.to_dttm = time_range
    sql = dataset.get_query_str(query.to_dict())
    frame = database.get_df(sql, catalog=None, schema=SCHEMA)
    return sql, [{"week": str(r[time_column]), label: float(r[label])} for r in frame.to_dict("records")]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(main(sys.argv[1], int(sys.argv[2])), default=str))  # one line, the last
