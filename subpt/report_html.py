"""HTML of the interpretability report: one self-contained file (inline CSS, figures as base64 PNG, no script
to run, no external resource), with the report's numbers embedded as JSON in <script id="report-data">."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from subpt.report_data import Num, Sentence

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

SECTIONS = [
    ("summary", "Summary"),
    ("runs", "Runs"),
    ("accuracy", "Accuracy per epoch"),
    ("spectrum", "Gradient spectrum and effective rank"),
    ("angles", "Early vs late subspaces: principal angles and drift"),
    ("captured", "Gradient captured by the early subspace"),
    ("context", "Learned context, decoded"),
    ("classes", "Classes that gain or lose against zero-shot"),
    ("cue", "Reliance on the spurious cue"),
]


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


def page(title: str, meta: str, sections: dict[str, str], data: Any) -> str:
    """The whole document."""
    shown = [(k, t) for k, t in SECTIONS if sections.get(k)]
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
