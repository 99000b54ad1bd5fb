"""`greenery report`: the answers (docs/answers.md) and the README's headline are generated from
the warehouse, never typed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from greenery.report import charts, render
from greenery.report.render import ReportPaths, replace_generated, write_report
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.build import fresh_raw

COMMITTED = ReportPaths.course()
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _write(course_warehouse: Path, paths: ReportPaths) -> ReportPaths:
    with SemanticLayer(course_warehouse) as layer:
        write_report(layer, paths)
    return paths


def _section(text: str, begin: str, end: str) -> str:
    return text.split(begin)[1].split(end)[0]


@pytest.fixture(scope="module")
def regenerated(course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The report written from the course data into scratch copies of README.md and docs/answers.md."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "docs").mkdir()
    shutil.copy(COMMITTED.headline, folder / "README.md")
    shutil.copy(COMMITTED.answers, folder / "docs" / "answers.md")
    paths = ReportPaths(
        headline=folder / "README.md",
        answers=folder / "docs" / "answers.md",
        images=folder / "docs" / "images",
        html=folder / "report.html",
    )
    return _write(course_warehouse, paths)


def test_committed_readme_equals_the_regenerated_report(regenerated: ReportPaths) -> None:
    for committed, written in [
        (COMMITTED.headline, regenerated.headline),
        (COMMITTED.answers, regenerated.answers),
    ]:
        name = committed.relative_to(store.PROJECT_DIR)
        assert written.read_text() == committed.read_text(), (
            f"{name}'s generated section is stale: run `greenery report` on the course data and commit"
        )


def test_answers_on_the_course_data(regenerated: ReportPaths) -> None:
    section = _section(regenerated.answers.read_text(), render.BEGIN, render.END)
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


def test_readme_headline_on_the_course_data(regenerated: ReportPaths) -> None:
    text = regenerated.headline.read_text()
    section = _section(text, render.HEADLINE_BEGIN, render.HEADLINE_END)
    for fact in [
        "578 → 467 → 361 sessions",
        "80.8 % of viewing sessions added to cart, 77.3 % of those checked out, **62.46 %** overall",
        "**Week 3 → week 4** (weeks of Feb 22 and Mar 1): 6 products changed.",
        "Down: Bamboo (-21), Monstera (-19), ZZ Plant (-12)",
        "restocked: Philodendron (+15), Pothos (+20), String of pearls (+10)",
        "String of pearls, by units moved (68) and by the standard deviation of the weekly values (26.1)",
        "Pothos in week 3, back in week 4 (20 units)",
        "String of pearls in week 3, back in week 4 (10 units)",
        "from 60.94 % (String of pearls) to 34.43 % (Pothos)",
    ]:
        assert fact in section, fact
    assert len(section.strip().splitlines()) <= 8  # a headline, not the answers again
    assert render.BEGIN not in text  # the full answers live in docs/answers.md


def test_chart_references_resolve_from_the_answers_file(regenerated: ReportPaths) -> None:
    for paths in (regenerated, COMMITTED):
        refs = IMAGE.findall(paths.answers.read_text())
        assert sorted(Path(r).stem for r in refs) == sorted(charts.FIGURES), paths.answers
        for ref in refs:
            assert (paths.answers.parent / ref).resolve() == (paths.images / Path(ref).name).resolve(), ref
            assert (paths.answers.parent / ref).is_file(), ref


def test_charts_and_html_are_written(regenerated: ReportPaths) -> None:
    for name in charts.FIGURES:
        png = (regenerated.images / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    html = regenerated.html.read_text()
    assert html.count("<table>") >= 6 and html.count("data:image/svg+xml;base64,") == len(charts.FIGURES)
    assert "<strong>578</strong>" in html
    assert "http" not in html.replace("http://www.w3.org", "")  # self-contained: no CDN


def test_a_scratch_answers_file_gets_the_headline_then_the_answers(
    course_warehouse: Path, tmp_path: Path
) -> None:
    scratch = ReportPaths.scratch()
    assert scratch.whole and scratch.headline == scratch.answers and not COMMITTED.whole
    answers = tmp_path / "output" / "answers.md"
    answers.parent.mkdir()
    answers.write_text(f"left by an older run\n{render.BEGIN}\nold\n{render.END}\n")
    paths = ReportPaths(
        headline=answers,
        answers=answers,
        images=tmp_path / "output" / "images",
        html=tmp_path / "r.html",
        whole=True,
    )
    text = _write(course_warehouse, paths).answers.read_text()
    assert "older run" not in text and "\nold\n" not in text
    markers = [render.HEADLINE_BEGIN, render.HEADLINE_END, render.BEGIN, render.END]
    assert [text.count(m) for m in markers] == [1, 1, 1, 1]
    assert [text.index(m) for m in markers] == sorted(text.index(m) for m in markers)
    assert "578 → 467 → 361 sessions" in _section(text, render.HEADLINE_BEGIN, render.HEADLINE_END)
    assert "![The funnel: sessions per step with step conversion](images/funnel.png)" in text


def test_the_answers_of_generated_data_leave_readme_and_docs_alone(
    course_warehouse: Path, tmp_path: Path
) -> None:
    """`greenery report` and the demo write the course's paths for the course export only."""
    generated = tmp_path / "greenery.duckdb"
    fresh_raw(generated)
    assert ReportPaths.for_warehouse(generated) == ReportPaths.scratch()
    assert ReportPaths.for_warehouse(course_warehouse) == COMMITTED
    assert ReportPaths.for_warehouse(tmp_path / "none" / "greenery.duckdb") == COMMITTED


def test_replace_generated_keeps_the_hand_written_parts() -> None:
    readme = f"intro\n{render.BEGIN}\nold\n{render.END}\noutro\n"
    assert replace_generated(readme, "new") == f"intro\n{render.BEGIN}\n\nnew\n\n{render.END}\noutro\n"
    with pytest.raises(ValueError, match="no generated-section markers"):
        replace_generated("no markers", "new")
    both = f"a\n{render.HEADLINE_BEGIN}\nold\n{render.HEADLINE_END}\nb\n{render.BEGIN}\nold\n{render.END}\n"
    once = replace_generated(both, "head", render.HEADLINE_BEGIN, render.HEADLINE_END)
    assert once == both.replace(f"{render.HEADLINE_BEGIN}\nold\n", f"{render.HEADLINE_BEGIN}\n\nhead\n\n")
    with pytest.raises(ValueError, match="no generated-section markers"):
        replace_generated(readme, "head", render.HEADLINE_BEGIN, render.HEADLINE_END)
