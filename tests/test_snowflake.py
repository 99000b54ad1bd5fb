"""The project on the `snowflake` target (dbt-snowflake against fakesnow): DuckDB's answers.

One emulated build for the session: the course CSVs loaded into the emulated raw.public,
weeks 1–4 replayed with `dbt snapshot`, `dbt build` with every test, every statement checked by
the Snowflake dialect check on its way in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from greenery.snowflake.dialect import check_target
from greenery.snowflake.emulation import (
    DUMMY_CREDENTIALS,
    EmulatedRun,
    connect,
    create_databases,
    emulated_snowflake,
    run_dbt,
    run_pipeline,
)
from greenery.warehouse.store import PROJECT_DIR


@pytest.fixture(scope="session")
def snowflake_run(course_data: Path, tmp_path_factory: pytest.TempPathFactory) -> EmulatedRun:
    return run_pipeline(course_data, tmp_path_factory.mktemp("snowflake"))


def test_funnel_on_emulated_snowflake(snowflake_run: EmulatedRun) -> None:
    assert snowflake_run.answers.funnel == (578, 467, 361)


def test_week_3_to_4_inventory_changes_on_emulated_snowflake(snowflake_run: EmulatedRun) -> None:
    assert snowflake_run.answers.last_week_changes == (
        ("Bamboo", 44, 23),
        ("Monstera", 50, 31),
        ("Philodendron", 15, 30),
        ("Pothos", 0, 20),
        ("String of pearls", 0, 10),
        ("ZZ Plant", 53, 41),
    )


def test_emulated_answers_match_the_raw_data(snowflake_run: EmulatedRun) -> None:
    assert snowflake_run.answers == snowflake_run.expected


def test_everything_the_emulated_build_ran_is_snowflake_sql(snowflake_run: EmulatedRun) -> None:
    # The dialect check saw every statement on its way in (strict emulation); the files dbt
    # wrote, the snapshot's MERGE among them, pass it too.
    assert snowflake_run.statements > 100
    snapshot_sql = list((snowflake_run.target_path / "run").rglob("products_snapshot.sql"))
    assert snapshot_sql and "merge into" in snapshot_sql[0].read_text().lower()
    assert check_target(snowflake_run.target_path) == []


def test_the_large_facts_are_clustered_by_day_on_snowflake(snowflake_run: EmulatedRun) -> None:
    # what dbt sent to (emulated) Snowflake; the emulation unwraps it, Snowflake would not
    for schema, model, key in [
        ("staging", "stg_greenery__event_rows", "event_date"),
        ("marts", "fct_sessions", "session_date"),
        ("intermediate", "int_product_sessions", "session_date"),
    ]:
        sql = " ".join(next((snowflake_run.target_path / "run").rglob(f"{model}.sql")).read_text().split())
        assert f"alter table analytics.{schema}.{model} cluster by ({key});" in sql
        assert f"order by ( {key} )" in sql


def test_the_incremental_build_runs_on_emulated_snowflake(snowflake_run: EmulatedRun) -> None:
    # the daily build's statements (the answers above were read after it): fct_orders' comparison
    # with its table, and delete+insert of what it recomputed (nothing: the data did not change)
    target = snowflake_run.incremental_target_path
    compiled = " ".join(next((target / "compiled").rglob("fct_orders.sql")).read_text().split())
    assert "full outer join (select order_id, user_id, hash(order_id, user_id," in compiled
    run = " ".join(next((target / "run").rglob("fct_orders.sql")).read_text().split())
    assert "delete from analytics.marts.fct_orders" in run
    results = json.loads((target / "run_results.json").read_text())["results"]
    affected = {r["unique_id"]: r["adapter_response"].get("rows_affected") for r in results}
    assert affected["model.greenery.fct_orders"] == 0
    assert check_target(target) == []


def test_emulation_leaves_no_dummy_credentials_behind(snowflake_run: EmulatedRun) -> None:
    leaked = {k: v for k, v in DUMMY_CREDENTIALS.items() if v and os.environ.get(k) == v}
    assert leaked == {}


def test_the_emulation_leaves_no_folder_in_tmp() -> None:
    """fakesnow makes a folder for its stages when imported; the process that imported it removes it."""
    code = "import greenery.snowflake.emulation as e; print(e.fakesnow_stage.LOCAL_BUCKET_PATH)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("fakesnow_bucket_") and not folder.exists()


def test_key_pair_auth_from_the_environment_reaches_the_connector(tmp_path: Path) -> None:
    """SNOWFLAKE_PRIVATE_KEY_PATH (+ _PASSPHRASE), no password: dbt connects with the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from fakesnow.instance import FakeSnow

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = "test-only-passphrase"
    key_file = tmp_path / "dbt_greenery.p8"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        )
    )
    connects: list[dict[str, Any]] = []
    fake_connect = FakeSnow.connect

    def recording_connect(self: FakeSnow, *args: Any, **kwargs: Any) -> Any:
        connects.append(kwargs)
        return fake_connect(self, *args, **kwargs)

    key_pair = {
        "SNOWFLAKE_PASSWORD": "",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key_file),
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": passphrase,
    }
    with mock.patch.object(FakeSnow, "connect", recording_connect), emulated_snowflake():
        create_databases(connect())
        connects.clear()
        with mock.patch.dict(os.environ, key_pair):
            run_dbt(["show", "--inline", "select 1 as ok"], project_dir=PROJECT_DIR, work_dir=tmp_path)

    unencrypted_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert connects
    for kwargs in connects:
        assert "password" not in kwargs
        assert kwargs["private_key"] == unencrypted_der
        assert kwargs["account"] == DUMMY_CREDENTIALS["SNOWFLAKE_ACCOUNT"]
