"""HTML building blocks for the reports: one self-contained page, inline CSS, images as data URIs.

Reports are opened from object storage or a laptop without network access, so nothing here
references an external asset: no CDN, no web font, no script.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Sequence
from datetime import datetime, timezone

from raygan import __version__

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --pos: #b2182b; --neg: #2166ac;
        --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial,
             sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 32px 32px 64px; }
header.page { border-bottom: 1px solid var(--line); padding-bottom: 16px; margin-bottom: 8px; }
h1 { font-size: 28px; line-height: 1.25; margin: 0 0 4px; font-weight: 650; }
h2 { font-size: 20px; margin: 40px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line);
     font-weight: 620; }
h3 { font-size: 16px; margin: 24px 0 8px; font-weight: 620; }
p { margin: 6px 0 12px; max-width: 80ch; }
.meta, .note { color: var(--muted); font-size: 13px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
              font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; background: #fff; }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
th { background: var(--soft); font-weight: 600; color: var(--ink); white-space: nowrap; }
td.num, th.num { text-align: right; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
.wide { overflow-x: auto; }
figure { margin: 12px 0 20px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12.5px; font-weight: 600;
        border: 1px solid var(--line); background: var(--soft); color: var(--muted); margin-right: 6px; }
.pill.good { color: #1a7f37; border-color: #aceebb; background: #dafbe1; }
.pill.bad { color: #9a6700; border-color: #f5e0a0; background: #fff8c5; }
.pill.err { color: #cf222e; border-color: #ffcecb; background: #ffebe9; }
.pos { color: var(--pos); font-weight: 600; }
.neg { color: var(--neg); font-weight: 600; }
section.image { border-top: 1px solid var(--line); padding-top: 8px; margin-top: 32px; }
section.image h3 { margin-top: 12px; font-size: 18px; }
td .mono { white-space: nowrap; }
.mapcell { display: flex; gap: 10px; align-items: center; font-size: 12.5px; color: var(--muted);
           font-variant-numeric: tabular-nums; white-space: nowrap; }
.mapcell b { color: var(--ink); }
img.thumb { width: 64px; height: 64px; image-rendering: pixelated; border-radius: 3px; display: block; }
.warning { border: 1px solid #f5e0a0; background: #fff8c5; color: #7d4e00; border-radius: 8px; padding: 10px 16px;
           margin: 12px 0; max-width: 100ch; font-weight: 550; }
.error-msg { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px;
             color: #82071e; white-space: pre-wrap; word-break: break-word; max-width: 80ch; }
footer { margin-top: 48px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line);
         padding-top: 12px; }
@media print { main { max-width: none; padding: 0; } section.image { break-inside: avoid; } }
"""


def esc(text: object) -> str:
    """HTML-escape any value's str()."""
    return html.escape(str(text), quote=True)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def img(png: bytes, *, alt: str, scale: float = 1.0, cls: str | None = None) -> str:
    """An <img> holding the PNG inline; `scale` < 1 shows a high-DPI chart at its intended size."""
    width, height = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{esc(cls)}"' if cls else ""
    return (f'<img{klass} src="data:image/png;base64,{data}" alt="{esc(alt)}" '
            f'width="{round(width * scale)}" height="{round(height * scale)}">')


def figure(png: bytes, *, alt: str, caption: str = "", scale: float = 1.0) -> str:
    """An inline image with an optional caption (caption is plain text)."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{img(png, alt=alt, scale=scale)}{cap}</figure>"


def fmt(value: float | int | None, *, digits: int = 3) -> str:
    """A number for a table: ints as is, floats to `digits` significant decimals, '—' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage, '—' when undefined (e.g. no eligible images)."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def p_cell(p: float | None) -> str:
    """A probability coloured by the side of 0.5 it falls on."""
    if p is None or not math.isfinite(p):
        return "—"
    return f'<span class="{"pos" if p >= 0.5 else "neg"}">{p:.3f}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """A table; `headers` are plain text, cells are HTML (escape them with `esc`); `numeric` columns align right."""
    num = set(numeric)
    head = "".join(f'<th{" class=num" if i in num else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i in num else ""}>{c}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Big numbers with a label under each: [(value, label), ...] (both plain text)."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>' for v, k in items
    ) + "</div>"


def page(title: str, body: str, *, subtitle: str = "") -> str:
    """A complete HTML document: title header, `body` (HTML), and a footer naming the raygan version and time."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = f'<div class="meta">{esc(subtitle)}</div>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header class="page"><h1>{esc(title)}</h1>{sub}</header>{body}'
        f"<footer>raygan {esc(__version__)} · generated {esc(when)} · explanations by latent traversal of a "
        "class-conditional GAN (Dravid &amp; Katsaggelos, AAAI 2022)</footer></main></body></html>\n"
    )
