"""One self-contained HTML report per run (figures embedded as base64, opens offline)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #e5e5e5;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem} th,td{border:1px solid #ddd;padding:.3rem .6rem;
text-align:right} th{background:#f4f6f8} td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;
min-width:150px}.card b{display:block;font-size:1.6rem}.muted{color:#666;font-size:.85rem}
img{max-width:100%;border:1px solid #eee} pre{background:#f6f8fa;padding:1rem;overflow:auto;font-size:.8rem}
.notice{background:#fff8e1;border-left:4px solid #f0b400;padding:.6rem 1rem}
"""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4f}"
    return html.escape(str(v))


def table_html(frame: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a plain HTML table with 4-decimal floats and NaN shown as a dash."""
    cols = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for idx, *values in frame.itertuples(index=True, name=None):  # keeps each column's type (ints stay ints)
        cells = ([f"<td>{_fmt(idx)}</td>"] if index else []) + [f"<td>{_fmt(v)}</td>" for v in values]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>'


@dataclass
class Report:
    """Sections of HTML accumulated in order; :meth:`write` produces one file."""

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, heading, body)

    def add(self, heading: str, body: str) -> None:
        anchor = "".join(ch if ch.isalnum() else "-" for ch in heading.lower()).strip("-")
        self.sections.append((anchor, heading, body))

    def add_cards(self, heading: str, items: Iterable[tuple[str, float | str]]) -> None:
        cards = "".join(f'<div class="card"><span class="muted">{html.escape(k)}</span><b>{_fmt(v)}</b></div>'
                        for k, v in items)
        self.add(heading, f'<div class="cards">{cards}</div>')

    def render(self) -> str:
        toc = " · ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in self.sections)
        body = "".join(f'<section id="{a}"><h2>{html.escape(h)}</h2>{b}</section>' for a, h, b in self.sections)
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
                f"<p class='muted'>{html.escape(self.subtitle)}</p><nav>{toc}</nav>{body}</body></html>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.render(), encoding="utf-8")
        return path
