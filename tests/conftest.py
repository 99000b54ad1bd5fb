"""Shared fixtures: the course data folder and isolated warehouses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COURSE_DATA = REPO.parent / "shared" / "greenery-course-data"


@pytest.fixture(scope="session")
def course_data() -> Path:
    """The real course CSVs (../shared or $GREENERY_COURSE_DATA); skip when absent."""
    folder = Path(os.environ.get("GREENERY_COURSE_DATA") or DEFAULT_COURSE_DATA)
    if not (folder / "events.csv").is_file():
        pytest.skip(f"course data not found at {folder}")
    return folder


@pytest.fixture
def warehouse_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh warehouse path for one test, also set as $GREENERY_WAREHOUSE."""
    path = tmp_path / "wh" / "greenery.duckdb"
    monkeypatch.setenv("GREENERY_WAREHOUSE", str(path))
    return path
