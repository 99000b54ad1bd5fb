"""`greenery report`: the README's answers are generated from the warehouse, never typed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from greenery.report import charts, render
from greenery.report.render import ReportPaths, replace_generated, write_report
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse.store import PROJECT_DIR


@pytest.fixture(scope="module")
def regenerated(course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The report written from the course data into a scratch copy of the README."""
    folder = tmp_path_factory.mktemp("report")
    shutil.copy(PROJECT_DIR / "README.md", folder / "README.md")
    paths = ReportPaths(
        readme=folder / "README.md", images=folder / "docs" / "images", html=folder / "report.html"
    )
    layer = SemanticLayer(course_warehouse)
    try:
        write_report(layer, paths)
    finally:
        layer.close()
    return paths


def test_committed_readme_equals_the_regenerated_report(regenerated: ReportPaths) -> None:
    committed = (PROJECT_DIR / "README.md").read_text()
    assert regenerated.readme.read_text() == committed, (
        "README.md's generated answers are stale: run `greenery report` on the course data and commit"
    )


def test_readme_answers_on_the_course_data(regenerated: ReportPaths) -> None:
    text = regenerated.readme.read_text()
    section = text.split(render.BEGIN)[1].split(render.END)[0]
    for row in [
        "| Bamboo | 44 | 23 | -21 | down |",
        "| Monstera | 50 | 31 | -19 | down |",
        "| ZZ Plant | 53 | 41 | -12 | down |",
        "| Philodendron | 15 | 30 | +15 | restocked |",
        "| Pothos | 0 | 20 | +20 | restocked |",
        "| String of pearls | 0 | 10 | +10 | restocked |",
        "| add_to_cart | 467 | 80.8 % |",
        "| checkout | 361 | 77.3 % |",
    ]:
        assert row in section, row
    assert "**Pothos** was out of stock in week 3" in section
    assert "**String of pearls** was out of stock in week 3" in section
    assert "Of **578** sessions with a page view, **467** added to cart and **361** checked out" in section
    assert "overall conversion of **62.46 %**" in section
    assert "from **60.94 %** (String of pearls) to **34.43 %** (Pothos)" in section


def test_charts_and_html_are_written(regenerated: ReportPaths) -> None:
    for name in charts.FIGURES:
        png = (regenerated.images / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    html = regenerated.html.read_text()
    assert html.count("<table>") >= 6 and html.count("data:image/svg+xml;base64,") == len(charts.FIGURES)
    assert "<strong>578</strong>" in html
    assert "http" not in html.replace("http://www.w3.org", "")  # self-contained: no CDN


def test_replace_generated_keeps_the_hand_written_parts() -> None:
    readme = f"intro\n{render.BEGIN}\nold\n{render.END}\noutro\n"
    assert replace_generated(readme, "new") == f"intro\n{render.BEGIN}\n\nnew\n\n{render.END}\noutro\n"
    with pytest.raises(ValueError, match="no generated-section markers"):
        replace_generated("no markers", "new")
