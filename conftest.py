"""pytest's first conftest, imported before any test or fixture imports greenery.

Under pytest-xdist (`make test` runs two workers), each worker's dbt writes its artifacts
(partial parse, manifests, run_results.json) and its log to folders of its own, so that one
worker's dbt never replaces what the other's reads. dbt and dagster-dbt read
$DBT_TARGET_PATH and $DBT_LOG_PATH; greenery reads $DBT_TARGET_PATH when it is imported
(greenery.warehouse.dbt.TARGET_DIR): hence here, not in tests/conftest.py, which imports it.
"""

import os
from pathlib import Path

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # set by xdist before a worker loads conftests
if _WORKER:
    _ROOT = Path(__file__).resolve().parent
    os.environ["DBT_TARGET_PATH"] = str(_ROOT / "target" / f"pytest-{_WORKER}")
    os.environ["DBT_LOG_PATH"] = str(_ROOT / "logs" / f"pytest-{_WORKER}")
