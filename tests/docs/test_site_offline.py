"""The documentation site opens offline: no page loads anything from another host
(``scripts/build_docs.py`` checks the built site with ``external_loads`` and fails the build),
the tour's widgets are kept as what they showed, and the README's lists render as lists."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from test_tour import ROOT, load_build_docs

build_docs = load_build_docs()

PAGE = """<!doctype html><html><head>
<link rel="stylesheet" href="https://cdn.example.org/theme.css">
<link rel="stylesheet" href="assets/site.css">
<link rel="canonical" href="https://example.org/page.html">
<link rel="icon" href="//cdn.example.org/favicon.png">
<script src="https://cdn.example.org/lib.js"></script>
<script src="assets/bundle.js"></script>
<style>@import "https://fonts.example.org/font.css"; .a { background: url(img/local.png) }
.b { background: url('https://cdn.example.org/bg.png') }</style>
</head><body>
<a href="https://github.com/example">a link a reader follows</a>
<img src="https://img.example.org/badge.svg" alt=""><img src="figure.png" alt="">
<div style="background-image: url(https://cdn.example.org/tile.png)"></div>
<script type="application/vnd.jupyter.widget-state+json">{"url": "https://data.example.org/x"}</script>
<script>
  var widgetRendererSrc = 'https://unpkg.example.org/html-manager/embed.js';
  fetch("https://api.example.org/data.json");
  // see https://docs.example.org/ for why
</script>
<script type="module">
  const lib = (await import("https://esm.example.org/lib.mjs")).default;
  import other from "https://esm.example.org/other.mjs";
</script>
</body></html>"""


def test_the_scanner_finds_every_load_from_another_host_and_nothing_else() -> None:
    assert build_docs.external_loads(PAGE) == [
        "https://cdn.example.org/theme.css",
        "//cdn.example.org/favicon.png",
        "https://cdn.example.org/lib.js",
        "https://fonts.example.org/font.css",
        "https://cdn.example.org/bg.png",
        "https://img.example.org/badge.svg",
        "https://cdn.example.org/tile.png",
        "https://unpkg.example.org/html-manager/embed.js",
        "https://api.example.org/data.json",
        "https://esm.example.org/lib.mjs",
        "https://esm.example.org/other.mjs",
    ]
    local = '<link rel="stylesheet" href="a.css"><script src="b.js"></script><img src="c.png">'
    assert build_docs.external_loads(local) == []


MERMAID = """<script type="module">
document.addEventListener("DOMContentLoaded", async () => {
  const mermaid = (await import("https://cdn.example.org/mermaid.esm.min.mjs")).default;
});
</script>"""


def test_the_unused_diagram_loader_goes_and_a_used_one_stays() -> None:
    page = f"<p>text</p>{MERMAID}<script>var a = 1;</script>"
    offline = build_docs.without_unused_loaders(page)
    assert offline == "<p>text</p><script>var a = 1;</script>"
    assert build_docs.external_loads(offline) == []
    with_diagram = f'<div class="jp-Mermaid"><pre class="mermaid">a-->b</pre></div>{MERMAID}'
    assert build_docs.without_unused_loaders(with_diagram) == with_diagram


def test_making_a_site_offline_reports_what_still_loads(tmp_path: Path) -> None:
    (tmp_path / "tour").mkdir()
    (tmp_path / "index.html").write_text(f"<p>home</p>{MERMAID}")
    (tmp_path / "tour" / "page.html").write_text(PAGE)
    problems = build_docs.make_offline(tmp_path)
    assert "mermaid" not in (tmp_path / "index.html").read_text()
    assert problems[0] == "tour/page.html: https://cdn.example.org/theme.css"
    assert len(problems) == 11 and all(p.startswith("tour/page.html: ") for p in problems)


KERNEL = {"name": "python3", "display_name": "Python 3"}


def test_a_widget_is_kept_as_what_it_showed(tmp_path: Path) -> None:
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider",
                                                                  "IPY_MODEL_out"]}},
        "slider": {"model_name": "FloatSliderModel", "state": {"value": 0.8}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [image]}},
    }  # fmt: skip
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    printed = {"output_type": "stream", "name": "stdout", "text": "before\n"}
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": KERNEL, "widgets": {build_docs.WIDGET_STATE: {"state": state}}},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "text"},
            {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": "",
             "outputs": [
                printed, {"output_type": "display_data", "metadata": {},
                          "data": {build_docs.WIDGET_VIEW: view, "text/plain": "interactive"}},
            ]},
        ],
    }  # fmt: skip
    build_docs.write_executed(notebook, tmp_path / "page.ipynb")
    static = nbformat.read(tmp_path / "page.ipynb", as_version=4)
    assert static["metadata"] == {"kernelspec": KERNEL}
    outputs = static["cells"][1]["outputs"]
    assert outputs[:2] == [printed, image]
    assert outputs[2]["text"] == build_docs.STATIC_NOTE and len(outputs) == 3


def test_the_readmes_lists_render_as_lists_on_the_site() -> None:
    # Python-Markdown (MkDocs) nests a list only when it is indented by four spaces; indented
    # by two, as GitHub allows, a nested list runs into one paragraph.
    import markdown

    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    items = re.findall(r"^ *(?:[-*+]|\d+\.) ", prose, re.M)
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    assert html.count("<li>") == len(items) > 5
    nested = re.findall(r"^( +)(?:[-*+]|\d+\.) ", prose, re.M)
    assert all(len(indent) % 4 == 0 for indent in nested)  # a nested list, if any
