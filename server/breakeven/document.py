"""A report as a few kinds of blocks, written out as Markdown or self-contained HTML.

The report builders say *what* to show once; this module says how each format
shows it. HTML carries its figures inline as base64 PNG, so the file stands alone.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str
    is_lead: bool = False


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str | None = None
    # Columns from this index on hold numbers and are right-aligned.
    first_numeric_column: int = 1


@dataclass(frozen=True)
class Figure:
    png: bytes
    alt: str


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    @property
    def figures(self) -> list[Figure]:
        return [block for block in self.blocks if isinstance(block, Figure)]


def to_markdown(document: Document, image_paths: list[str] | None = None) -> str:
    """Markdown; figures link to `image_paths` (in order), or say where they are."""
    paths = list(image_paths or [])
    out = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [f"**{block.text}**" if block.is_lead else block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += _markdown_table(block)
        elif paths:
            out += [f"![{block.alt}]({paths.pop(0)})", ""]
        else:
            out += [f"*Plot: {block.alt} (in the HTML report, --format html).*", ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(document: Document) -> str:
    """One HTML file with its style and figures inside."""
    body = [f"<h1>{_e(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css = ' class="lead"' if block.is_lead else ""
            body.append(f"<p{css}>{_e(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_e(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        else:
            data = base64.b64encode(block.png).decode("ascii")
            image = f'<img alt="{_e(block.alt)}" src="data:image/png;base64,{data}">'
            caption = f"<figcaption>{_e(block.alt)}</figcaption>"
            body.append(f"<figure>{image}{caption}</figure>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(document.title)}</title><style>{_CSS}</style></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _markdown_table(table: Table) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = [
        "---:" if i >= table.first_numeric_column else "---"
        for i in range(len(table.headers))
    ]
    lines = [row(table.headers), "| " + " | ".join(align) + " |"]
    lines += [row(cells) for cells in table.rows]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return [*lines, ""]


def _html_table(table: Table) -> str:
    def cells(values: list[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=num' if i >= table.first_numeric_column else ''}>"
            f"{_e(value)}</{tag}>"
            for i, value in enumerate(values)
        )

    head = f"<thead><tr>{cells(table.headers, 'th')}</tr></thead>"
    rows = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in table.rows)
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}{head}<tbody>{rows}</tbody></table>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:62em;
margin:2em auto;padding:0 1em;color:#1d2330}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #d8dde6}
p.lead{font-size:1.1em;background:#f3f6fb;border-left:4px solid #2f6fdf;
padding:.6em 1em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #d8dde6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f6fb}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:bottom;text-align:left;color:#5b6475;font-size:.9em;
padding-top:.3em}
figure{margin:1em 0}img{max-width:100%;border:1px solid #d8dde6}
figcaption{color:#5b6475;font-size:.9em}
"""
