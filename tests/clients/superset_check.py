"""Apache Superset against `greenery serve --pg-port`: list the tables, build a chart's SQL, run it.

Runs in Superset's own venv (`make check-superset`), with a throw-away SQLite metadata
database. It uses Superset's own pieces, as its UI does: a `Database` for the connection
(SQLAlchemy, psycopg2, the postgresql engine spec), the schema's tables as Superset lists
them, a `SqlaTable` dataset whose columns Superset reads from the catalog, and the SQL its
chart builder generates for a weekly time-series of ``SUM(view_to_checkout_rate)``
(``QueryObject`` → ``SqlaTable.get_query_str``), run through the same `Database`. Prints, as
its last line (Superset logs to stdout too), JSON: the tables, the dataset's columns, the SQL
and the rows.

    python superset_check.py HOST PG_PORT    # the token in $GREENERY_API_TOKEN
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

SCHEMA = "semantic_layer"
DATASET = "funnel_by_week"
METRIC = "view_to_checkout_rate"
TIME_COLUMN = "metric_time__week"


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
    from superset.common.query_object import QueryObject
    from superset.connectors.sqla.models import SqlaTable
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
    dataset = SqlaTable(table_name=DATASET, schema=SCHEMA, database=database)
    db.session.add(dataset)
    dataset.fetch_metadata()
    db.session.commit()
    columns = {c.column_name: {"type": c.type, "is_dttm": bool(c.is_dttm)} for c in dataset.columns}
    label = f"SUM({METRIC})"
    query = QueryObject(
        datasource=dataset,
        columns=[
            {
                "timeGrain": "P1W",
                "columnType": "BASE_AXIS",
                "sqlExpression": TIME_COLUMN,
                "label": TIME_COLUMN,
                "expressionType": "SQL",
            }
        ],
        metrics=[
            {
                "expressionType": "SIMPLE",
                "column": {"column_name": METRIC},
                "aggregate": "SUM",
                "label": label,
            }
        ],
        orderby=[
            (
                {
                    "expressionType": "SIMPLE",
                    "column": {"column_name": METRIC},
                    "aggregate": "SUM",
                    "label": label,
                },
                False,
            )
        ],
        row_limit=10000,
        is_timeseries=False,
        extras={"time_grain_sqla": "P1W", "having": "", "where": ""},
    )
    sql = dataset.get_query_str(query.to_dict())
    frame = database.get_df(sql, catalog=None, schema=SCHEMA)
    rows = [{TIME_COLUMN: str(r[TIME_COLUMN]), label: float(r[label])} for r in frame.to_dict("records")]
    return {"schemas": schemas, "tables": tables, "columns": columns, "sql": sql, "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(main(sys.argv[1], int(sys.argv[2])), default=str))  # one line, the last
