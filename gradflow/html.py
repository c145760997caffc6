"""HTML of the reports: one self-contained file (inline CSS, figures as base64 PNG, no script to run, no external
resource), with the report's numbers embedded as JSON in <script id="report-data">, and sentences whose every
number names its key in that JSON. `gradflow report` and `subpt report` both write their pages with it."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.atomic import atomic_write_text
from gradflow.errors import GradflowError

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.7em;margin:.2em 0}
h2{font-size:1.3em;border-bottom:2px solid #d5d9e0;padding-bottom:4px;margin-top:2em}
h3{font-size:1.05em;margin:1.4em 0 .4em;color:#2b3a55}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:4px 20px 16px;margin:18px 0}
figure{margin:10px 0}
figure img{max-width:100%;height:auto;border:1px solid #eceef2}
figcaption{font-size:.88em;color:#4a5568;margin-top:4px}
.meta{color:#4a5568;font-size:.92em}
.missing{background:#fff6e5;border-left:5px solid #e8a317;padding:8px 12px;margin:8px 0;font-size:.92em}
.missing b{color:#a0650b}
ul.summary li{margin:.35em 0}
.num{font-weight:600;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
td.r{text-align:right;font-variant-numeric:tabular-nums}
.tok{display:inline-block;background:#eef3fb;border-radius:4px;padding:0 4px;margin:1px 2px;font-family:monospace}
.tok small{color:#667085}
.tok.top{background:#d7e5fb;font-weight:600}
nav a{margin-right:14px;font-size:.92em}
code{background:#f0f2f5;padding:0 3px;border-radius:3px}
"""



@dataclass
class Num:
    """A number quoted in a sentence, with the key of its value in the report's JSON."""

    key: str
    value: Any
    fmt: str = "{:.1f}"
    unit: str = ""
    scale: float = 1  # shown as value * scale (e.g. 100 for a fraction shown in percent)

    def text(self) -> str:
        """The number as shown."""
        if isinstance(self.value, str):
            return self.value
        return self.fmt.format(self.value * self.scale if self.scale != 1 else self.value) + self.unit


class Sentence:
    """A sentence assembled from text and `Num` parts."""

    def __init__(self, section: str = "summary"):
        self.section = section
        self.parts: list[str | Num] = []

    def t(self, text: str) -> Sentence:
        """Append text (the first non-empty text of a sentence starts with a capital)."""
        if text and all(p == "" for p in self.parts):
            text = text[0].upper() + text[1:]
        self.parts.append(text)
        return self

    def n(self, key: str, value: Any, fmt: str = "{:.1f}", unit: str = "", scale: float = 1) -> Sentence:
        """Append a number (or a string value from the data) with its JSON key."""
        self.parts.append(Num(key, value, fmt, unit, scale))
        return self

    def frac(self, key: str, value: float) -> Sentence:
        """Append a fraction (0..1) shown in percent."""
        return self.n(key, value, "{:.1f}", "%", 100)

    def pct(self, key: str, value: float) -> Sentence:
        """Append a percentage (value already in percent)."""
        return self.n(key, value, "{:.1f}", "%")

    def plain(self) -> str:
        """The sentence as plain text."""
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def nums(self) -> list[Num]:
        """The numbers of the sentence."""
        return [p for p in self.parts if isinstance(p, Num)]


def esc(x: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(x), quote=True)


def num_span(n: Num) -> str:
    """A number of a sentence, with its JSON key and raw value as data attributes."""
    raw = (
        n.value
        if isinstance(n.value, str)
        else repr(float(n.value))
        if isinstance(n.value, float)
        else str(n.value)
    )
    scale = f' data-scale="{n.scale:g}"' if n.scale != 1 else ""
    return f'<span class="num" data-key="{esc(n.key)}" data-value="{esc(raw)}"{scale}>{esc(n.text())}</span>'


def sentence_html(s: Sentence) -> str:
    """A sentence with its numbers marked up."""
    return "".join(esc(p) if isinstance(p, str) else num_span(p) for p in s.parts)


def missing_html(section: str, run: str | None, messages: list[str]) -> str:
    """The visible 'missing' notes of one section of one run."""
    out = []
    for m in messages:
        who = f" ({esc(run)})" if run else ""
        out.append(
            f'<div class="missing" data-section="{esc(section)}" data-run="{esc(run or "")}"><b>Missing{who}:</b> '
            f"{esc(m)}</div>"
        )
    return "\n".join(out)


def figure_html(png: str, alt: str, caption: str, name: str) -> str:
    """An inline PNG figure with a caption."""
    return (
        f'<figure data-figure="{esc(name)}"><img src="data:image/png;base64,{png}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def table_html(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """A plain table; cells are escaped unless they are pre-rendered (tuple ('html', text))."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            text = c[1] if isinstance(c, tuple) and c and c[0] == "html" else esc(c)
            cells.append(f'<td class="r">{text}</td>' if j in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def pct(x: Any) -> str:
    """A percentage cell (n/a for missing values)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.1f}"


def json_block(data: Any) -> str:
    """The report's numbers as an inert JSON script block."""
    text = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")
    return f'<script type="application/json" id="report-data">{text}</script>'


def page(title: str, meta: str, sections: dict[str, str], data: Any, titles: Sequence[tuple[str, str]]) -> str:
    """The whole document: the sections with content, in the order and with the titles of `titles`."""
    shown = [(k, t) for k, t in titles if sections.get(k)]
    nav = " ".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in shown)
    body = "\n".join(f'<section id="{k}"><h2>{esc(t)}</h2>\n{sections[k]}\n</section>' for k, t in shown)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{esc(title)}</h1>
<p class="meta">{meta}</p>
<nav>{nav}</nav>
{body}
{json_block(data)}
</main></body></html>
"""


def clean(obj: Any) -> Any:
    """JSON-safe values: numpy to python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        return clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def summary_json(sentences: Sequence[Sentence]) -> list[dict]:
    """The sentences of a summary as JSON: plain text and every number with its key."""
    return [
        {"text": s.plain(), "nums": [{"key": n.key, "value": n.value, "text": n.text()} for n in s.nums()]}
        for s in sentences
    ]


def summary_list(sentences: Sequence[Sentence]) -> str:
    """A bulleted list of sentences with their numbers marked up."""
    return '<ul class="summary">' + "".join(f"<li>{sentence_html(s)}</li>" for s in sentences) + "</ul>"


def write_html(text: str, out: Path, error: type[Exception] = GradflowError) -> Path:
    """Write the page atomically; an unwritable path is one `error` naming the -o option."""
    out = Path(out)
    try:
        atomic_write_text(out, text, mkdir=True)
    except OSError as e:
        raise error(f"cannot write the report {out} ({e.strerror or e}): choose another -o path") from e
    return out
