"""The report written out: the answers' generated section with PNG charts, the README's generated
headline, and a standalone HTML page."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from greenery.report.answers import Answers, collect
from greenery.report.blocks import Block, Bullets, Heading, Table, Text, blocks, headline_blocks
from greenery.report.charts import FIGURES, render_chart
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store

BEGIN = "<!-- BEGIN GENERATED ANSWERS: `greenery report` writes this section; do not edit by hand -->"
END = "<!-- END GENERATED ANSWERS -->"
HEADLINE_BEGIN = "<!-- BEGIN GENERATED HEADLINE: written by `greenery report`; do not edit by hand -->"
HEADLINE_END = "<!-- END GENERATED HEADLINE -->"


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
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
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
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>")
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


def replace_generated(text: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """`text` with the section between `begin` and `end` replaced (the rest left exactly as it was)."""
    if begin not in text or end not in text:
        raise ValueError(f"no generated-section markers ({begin} … {end})")
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    return f"{before}{begin}\n\n{section}\n\n{end}{after}"


@dataclass(frozen=True)
class ReportPaths:
    headline: Path  # the file holding the generated headline (between HEADLINE_BEGIN and HEADLINE_END)
    answers: Path  # the file holding the full generated answers (between BEGIN and END)
    images: Path
    html: Path
    # True: the Markdown files hold nothing hand-written and are written whole each time;
    # False: only the text between the markers changes, and missing markers are an error.
    whole: bool = False

    @classmethod
    def course(cls) -> ReportPaths:
        """The course's answers: the headline in README.md, in full in docs/answers.md with its
        charts in docs/images; and the HTML report."""
        return cls(
            headline=store.PROJECT_DIR / "README.md",
            answers=store.PROJECT_DIR / "docs" / "answers.md",
            images=store.PROJECT_DIR / "docs" / "images",
            html=store.OUTPUT_DIR / "report.html",
        )

    @classmethod
    def scratch(cls) -> ReportPaths:
        """Answers from data other than the course export: all in output/ (headline and answers in
        one file), README.md and docs/ untouched."""
        return cls(
            headline=store.OUTPUT_DIR / "answers.md",
            answers=store.OUTPUT_DIR / "answers.md",
            images=store.OUTPUT_DIR / "images",
            html=store.OUTPUT_DIR / "report.html",
            whole=True,
        )

    @classmethod
    def for_warehouse(cls, warehouse_file: Path | None = None) -> ReportPaths:
        """Where the warehouse's answers go: the scratch paths when its raw data was generated
        (its answers are not the course's, which README.md and docs/ keep), else the course's."""
        return cls.scratch() if store.raw_generation(warehouse_file) else cls.course()

    def markdown_files(self) -> list[Path]:
        """The Markdown files written, each once, headline first."""
        return list(dict.fromkeys([self.headline, self.answers]))


def write_report(layer: SemanticLayer, paths: ReportPaths) -> Answers:
    """Write the headline and the answers' generated sections, the PNG charts and the HTML report.

    Only the text between each pair of markers changes; a file that does not exist yet (or any
    file, when `paths.whole`) is written new with the markers it needs. A file that exists
    without them is an error.
    """
    answers = collect(layer)
    items = blocks(answers)
    paths.images.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (paths.images / f"{name}.png").write_bytes(render_chart(answers, name, "png"))
    sections = [
        (paths.headline, HEADLINE_BEGIN, HEADLINE_END, headline_blocks(answers)),
        (paths.answers, BEGIN, END, items),
    ]
    texts: dict[Path, str] = {}
    for path in paths.markdown_files():
        if path.exists() and not paths.whole:
            texts[path] = path.read_text()
        else:
            markers = "".join(f"{begin}\n{end}\n\n" for p, begin, end, _ in sections if p == path)
            texts[path] = f"# Greenery answers\n\n{markers}".rstrip("\n") + "\n"
    for path, begin, end, section in sections:
        image_dir = Path(os.path.relpath(paths.images, path.parent)).as_posix()
        try:
            texts[path] = replace_generated(texts[path], to_markdown(section, image_dir), begin, end)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    paths.html.parent.mkdir(parents=True, exist_ok=True)
    paths.html.write_text(to_html(items, answers))
    return answers
