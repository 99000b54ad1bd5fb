"""Run inside the flightsql-dbapi venv: browse the catalog and read SQL as a BI tool would.

    python flightsql_sqlalchemy.py HOST PORT  (token in $GREENERY_API_TOKEN)

Prints one JSON object: the schemas, tables and columns SQLAlchemy's inspector finds, and the
rows pandas.read_sql gets for each statement given on standard input (one per line).
"""

from __future__ import annotations

import json
import os
import sys

import flightsql.sqlalchemy  # noqa: F401  (registers the datafusion+flightsql dialect)
import pandas as pd
from sqlalchemy import create_engine, inspect, text


def main(host: str, port: str) -> None:
    token = os.environ["GREENERY_API_TOKEN"]
    engine = create_engine(f"datafusion+flightsql://{host}:{port}?insecure=true&token={token}")
    inspector = inspect(engine)
    schemas = inspector.get_schema_names()
    tables = {schema: inspector.get_table_names(schema=schema) for schema in schemas}
    columns = {
        f"{schema}.{table}": [(c["name"], str(c["type"])) for c in inspector.get_columns(table, schema)]
        for schema in schemas
        for table in tables[schema]
    }
    answers = []
    with engine.connect() as connection:
        for statement in (line.strip() for line in sys.stdin if line.strip()):
            frame = pd.read_sql(text(statement), connection)
            answers.append(json.loads(frame.to_json(orient="records", date_format="iso")))
    print(json.dumps({"schemas": schemas, "tables": tables, "columns": columns, "answers": answers}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
