"""The report written out: the README's generated section with PNG charts, and a standalone HTML page."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from greenery.report.answers import Answers, collect
from greenery.report.blocks import Block, Heading, Table, Text, blocks
from greenery.report.charts import FIGURES, render_chart
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store

BEGIN = "<!-- BEGIN GENERATED ANSWERS: `greenery report` writes this section; do not edit by hand -->"
END = "<!-- END GENERATED ANSWERS -->"


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _md_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = (
        "|"
        + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns)
        + "|"
    )
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def to_markdown(items: list[Block], image_dir: str) -> str:
    out = []
    for b in items:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(_md_table(b.frame))
        else:
            out.append(f"![{b.caption}]({image_dir}/{b.name}.png)")
    return "\n\n".join(out)


def _inline(text: str) -> str:
    """**bold** and `code` to HTML (the only Markdown the blocks use)."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


TEMPLATE = Path(__file__).with_name("templates") / "report.html"
BODY_MARKER = "<!-- REPORT BODY -->"


def to_html(items: list[Block], a: Answers) -> str:
    out = []
    for b in items:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                for row in b.frame.itertuples(index=False)
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            svg = base64.b64encode(render_chart(a, b.name, "svg")).decode()
            out.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/svg+xml;base64,{svg}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
    return TEMPLATE.read_text().replace(BODY_MARKER, "\n".join(out))


def replace_generated(readme: str, section: str) -> str:
    """README text with the generated section replaced (the rest left exactly as it was)."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no generated-section markers ({BEGIN} … {END})")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n\n{section}\n\n{END}{after}"


@dataclass(frozen=True)
class ReportPaths:
    readme: Path
    images: Path
    html: Path

    @classmethod
    def course(cls) -> ReportPaths:
        """The README's generated section and its charts (the course's answers), and the HTML report."""
        return cls(
            readme=store.PROJECT_DIR / "README.md",
            images=store.PROJECT_DIR / "docs" / "images",
            html=store.OUTPUT_DIR / "report.html",
        )

    @classmethod
    def scratch(cls) -> ReportPaths:
        """Answers from data other than the course export: all in output/, the README untouched."""
        return cls(
            readme=store.OUTPUT_DIR / "answers.md",
            images=store.OUTPUT_DIR / "images",
            html=store.OUTPUT_DIR / "report.html",
        )


def write_report(layer: SemanticLayer, paths: ReportPaths) -> Answers:
    """Write the README's generated section, its PNG charts and the standalone HTML report."""
    answers = collect(layer)
    items = blocks(answers)
    paths.images.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (paths.images / f"{name}.png").write_bytes(render_chart(answers, name, "png"))
    image_dir = paths.images.relative_to(paths.readme.parent).as_posix()
    current = paths.readme.read_text() if paths.readme.exists() else f"# Greenery answers\n\n{BEGIN}\n{END}\n"
    readme = replace_generated(current, to_markdown(items, image_dir))
    paths.readme.write_text(readme)
    paths.html.parent.mkdir(parents=True, exist_ok=True)
    paths.html.write_text(to_html(items, answers))
    return answers
