"""pgjdbc, the PostgreSQL JDBC driver of DBeaver, DataGrip and Metabase, against the Postgres endpoint.

tests/clients/JdbcCheck.java is compiled and run with Java and pgjdbc (Debian's
``apt-get install default-jdk-headless libpostgresql-jdbc-java``, or $GREENERY_PGJDBC_JAR naming
the driver's jar); without them the module is skipped. It makes the catalog calls a database
browser makes through DatabaseMetaData, a query, a prepared statement past pgjdbc's
prepareThreshold (a named server-side statement, results in binary), a fetch size (a portal
read two rows at a time), and an error then ROLLBACK, and prints what it got.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import TOKEN, Served, information_schema_listing
from greenery.semantic.layer import SemanticLayer
from greenery.serve.auth import TOKEN_ENV

SOURCE = Path(__file__).with_name("clients") / "JdbcCheck.java"
JAR_ENV = "GREENERY_PGJDBC_JAR"
DEBIAN_JAR = "/usr/share/java/postgresql.jar"  # libpostgresql-jdbc-java

JAR = Path(os.environ.get(JAR_ENV, DEBIAN_JAR))
JAVA, JAVAC = shutil.which("java"), shutil.which("javac")
pytestmark = pytest.mark.skipif(
    JAVA is None or JAVAC is None or not JAR.is_file(),
    reason=f"needs java, javac and pgjdbc ({DEBIAN_JAR} or ${JAR_ENV})",
)

Found = dict[str, list[list[str]]]


@pytest.fixture(scope="module")
def jdbc(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Found:
    """What JdbcCheck printed: each line's values under its name."""
    assert JAVA is not None and JAVAC is not None
    classes = tmp_path_factory.mktemp("jdbc")
    subprocess.run([JAVAC, "-d", str(classes), str(SOURCE)], check=True, capture_output=True, timeout=300)
    done = subprocess.run(
        [
            JAVA,
            "-cp",
            f"{JAR}{os.pathsep}{classes}",
            "JdbcCheck",
            f"jdbc:postgresql://127.0.0.1:{served.pg_port}/greenery",
        ],
        env={**os.environ, TOKEN_ENV: TOKEN},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.replace(TOKEN, "<token>")[-3000:]
    found: defaultdict[str, list[list[str]]] = defaultdict(list)
    for line in done.stdout.splitlines():
        name, *values = line.split("\t")
        found[name].append(values)
    return dict(found)


def test_a_database_browser_lists_schemas_tables_columns_and_keys(jdbc: Found, served: Served) -> None:
    """DatabaseMetaData as DBeaver calls it: the tables and columns information_schema lists, no
    keys or indexes (getPrimaryKeys expands pg_index's keys with information_schema's
    _pg_expandarray, which the emulated catalog lacked)."""
    tables, columns = information_schema_listing(served, "orders")
    (product,) = jdbc["product"]
    assert product[0] == "PostgreSQL" and product[1].startswith("15.18")
    assert "semantic_layer" in jdbc["schemas"][0][0].split(",")
    assert sorted(jdbc["tables"][0][0].split(",")) == tables
    assert [tuple(c) for c in jdbc["column"]] == columns and len(columns) > 10
    assert jdbc["primary_keys"] == jdbc["imported_keys"] == jdbc["indexes"] == [["0"]]


def test_answers_through_statements_prepared_statements_and_a_fetch_size(
    jdbc: Found, course_sl: SemanticLayer
) -> None:
    funnel = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
    expected = course_sl.query(metrics=funnel).table.to_pylist()[0]
    assert jdbc["funnel"] == [[str(int(expected[m])) for m in funnel]]
    by_day = course_sl.query(
        metrics=["orders"],
        group_by=["metric_time__day"],
        where=["{{ TimeDimension('metric_time', 'day') }} >= '2021-02-11'"],
    ).table.to_pylist()
    days = [[r["metric_time__day"].date().isoformat(), str(r["orders"])] for r in by_day]
    assert days and all(jdbc[f"prepared_{i}"] == days for i in range(7))  # text, then binary results
    states = course_sl.query(metrics=["orders"], group_by=["user__state"]).table.to_pylist()
    assert jdbc["state"] == sorted([r["user__state"], str(r["orders"])] for r in states)
    assert jdbc["error"] == [["42703"]] and jdbc["after_error"] == [["1"]]
