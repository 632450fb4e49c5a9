"""A self-contained HTML page: headings, short texts, tables and PNG figures embedded as data.

The page needs no other file, so it can be mailed, archived or opened from anywhere.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.engine.fileio import atomic_write_bytes

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.7em; text-align: right; }
th { background: #f4f4f4; }
"""


@dataclass
class Section:
    """One part of the page."""

    heading: str
    text: str = ""
    images: list[Path] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)  # first row is the header


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    kind = "gif" if Path(path).suffix.lower() == ".gif" else "png"
    alt = html.escape(Path(path).stem.replace("_", " "))
    return f'<img alt="{alt}" src="data:image/{kind};base64,{data}">'


def _table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(title: str, sections: list[Section], intro: str = "") -> str:
    """The page as a string: every image inlined as a base64 data URI."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.table:
            parts.append(_table(section.table))
        parts.extend(_image(p) for p in section.images)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: list[Section], intro: str = "") -> Path:
    """Write the page to ``path`` atomically and return the path."""
    path = Path(path)
    atomic_write_bytes(path, render(title, sections, intro).encode("utf-8"))
    return path
