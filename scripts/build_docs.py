"""Build the documentation site offline: execute the tour's notebooks, then run MkDocs.

    python scripts/build_docs.py              # execute every notebook, build site/
    python scripts/build_docs.py --no-site    # only execute the notebooks (their cells assert)
    python scripts/build_docs.py docs/tour/02-convolution.ipynb --no-site

Every notebook of ``docs/tour/`` runs from a fresh kernel, two at a time (``--jobs``), with this
checkout first on the kernel's path. A notebook whose cell raises (an ``assert`` on a number that
matters, or any error) fails the build, named with its cell. The executed copies, the README,
``ARCHITECTURE.md`` and the API pages of ``docs/api/`` are gathered in ``build/docs/src/``, and
MkDocs (``mkdocs.yml``: Material theme, mkdocstrings for the API reference, mkdocs-jupyter for
the notebooks) writes the site to ``site/``. Needs ``pip install -e ".[docs]"``; no network.

The site loads nothing from the network either: a notebook's widgets (the slider of notebook 9)
need a kernel and a widget manager fetched from a CDN, so the executed copy keeps what the
widget last showed, as plain output, and drops the widget (``static_widgets``); the notebook
pages' MermaidJS loader, unused by the tour, is removed (``without_unused_loaders``); and every
page is then checked for a script, stylesheet, image or import from another host
(``external_loads``), which fails the build.

Before the site is built, ``scripts/screenshot_lab.py`` takes the README's picture of the web
lab again (``docs/images/lab.png``), so the site shows the lab as it is; that needs the test
extras and Chromium as well (``--no-screenshot`` keeps the committed picture).
"""

from __future__ import annotations

import argparse
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "docs" / "tour"
SOURCE = ROOT / "build" / "docs" / "src"  # what MkDocs reads (mkdocs.yml: docs_dir)
BUDGET_S = 60  # each notebook should run in under a minute on 2 cores


def execute(path: Path, target: Path, timeout: int) -> tuple[Path, float, str]:
    """Run ``path`` from a fresh kernel in a scratch folder; write the executed copy to ``target``.

    Returns the notebook, the seconds it took and the error ("" when every cell ran).
    """
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = ""
    with tempfile.TemporaryDirectory() as scratch:
        # Local sockets in the scratch folder: no TCP port, nothing to encrypt or warn about.
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=f"{scratch}/kernel")
        client = NotebookClient(
            notebook, km=kernel, timeout=timeout, resources={"metadata": {"path": scratch}}
        )
        try:
            client.execute()
        except CellExecutionError as err:
            error = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # IPython's colours, for a log
        finally:
            if kernel.has_kernel:  # a kernel the client was given is the caller's to stop
                kernel.shutdown_kernel(now=True)
    write_executed(notebook, target)
    return path, time.perf_counter() - start, error


def write_executed(notebook: dict, target: Path) -> None:
    """Write the executed ``notebook`` to ``target`` as the site shows it: its widgets static."""
    import nbformat

    nbformat.write(nbformat.from_dict(static_widgets(notebook)), target)


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STATIC_NOTE = "(In Jupyter this is interactive; the page shows it as the notebook left it.)\n"


def static_widgets(notebook: dict) -> dict:
    """``notebook`` with each widget replaced by what its output areas last showed, and a note.

    A widget is drawn in the browser from the state saved in the notebook's metadata, by a
    widget manager that the HTML fetches from a CDN; without the state and the widget outputs
    the page needs nothing but itself. The notebook is changed in place and returned.
    """
    state = notebook.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def shown(model_id: str, seen: set[str]) -> list[dict]:
        """The outputs of every Output widget at or under ``model_id``, in order."""
        if model_id in seen or model_id not in state:
            return []
        seen.add(model_id)
        model = state[model_id].get("state", {})
        outputs = list(model.get("outputs", []))
        for child in model.get("children", []):
            outputs += shown(str(child).removeprefix("IPY_MODEL_"), seen)
        return outputs

    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            outputs += shown(view.get("model_id", ""), set())
            outputs.append({"output_type": "stream", "name": "stdout", "text": STATIC_NOTE})
        cell["outputs"] = outputs
    return notebook


# A notebook page's module script that imports MermaidJS from a CDN when the page has diagrams.
_MERMAID_LOADER = re.compile(
    r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>", re.S
)


def without_unused_loaders(page: str) -> str:
    """``page`` without the MermaidJS loader when it has no Mermaid diagram to draw."""
    if 'class="jp-Mermaid' in page:
        return page
    return _MERMAID_LOADER.sub("", page)


_URL = r"https?://[^\s\"'`)<>]+"
# In a script: what import(), fetch(), importScripts() or a *src / *url assignment fetches.
_SCRIPT_LOAD = re.compile(
    rf"(?:\bimport\s*\(|\bfetch\s*\(|\bimportScripts\s*\(|\bfrom\s|"
    rf"(?:src|url|href)\w*\s*[=:]\s*)\s*[\"'`]({_URL})",
    re.I,
)
_CSS_LOAD = re.compile(rf"(?:url\(\s*[\"']?|@import\s+[\"']?)({_URL})", re.I)
_LOADING_LINKS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "manifest"}
_DATA_SCRIPTS = ("json", "x-mathjax-config", "text/template")


class _Loads(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.code: str | None = None  # "script" or "style" while inside one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        urls = []
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed", "track"):
            urls += [a.get("src", ""), *a.get("srcset", "").replace(",", " ").split()]
        if tag == "link" and set(a.get("rel", "").lower().split()) & _LOADING_LINKS:
            urls.append(a.get("href", ""))
        if tag == "object":
            urls.append(a.get("data", ""))
        if tag == "image":  # SVG
            urls += [a.get("href", ""), a.get("xlink:href", "")]
        urls += _CSS_LOAD.findall(a.get("style", ""))
        self.found += [u for u in urls if re.match(r"(https?:)?//", u.strip())]
        script_type = a.get("type", "").lower()
        if tag == "style" or (tag == "script" and not any(t in script_type for t in _DATA_SCRIPTS)):
            self.code = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self.code:
            self.code = None

    def handle_data(self, data: str) -> None:
        if self.code == "script":
            self.found += _SCRIPT_LOAD.findall(data)
        elif self.code == "style":
            self.found += _CSS_LOAD.findall(data)


def external_loads(page: str) -> list[str]:
    """The URLs of other hosts that ``page`` (HTML) would fetch as it loads: script, image,
    frame and media sources, stylesheets and other loading links, CSS ``url()`` and
    ``@import``, and, in its scripts, ``import()``, ``fetch()``, ``import ... from`` and
    addresses assigned to a ``src`` or ``url``. Links a reader follows (``<a href>``) are not
    loads."""
    parser = _Loads()
    parser.feed(page)
    parser.close()
    return parser.found


def make_offline(site: Path) -> list[str]:
    """Remove the unused loaders from every page of ``site``; ``"page: URL"`` for each external
    load that remains (none, for a site that opens offline)."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        offline = without_unused_loaders(text)
        if offline != text:
            page.write_text(offline, encoding="utf-8")
        problems += [f"{page.relative_to(site)}: {url}" for url in external_loads(offline)]
    return problems


def execute_all(notebooks: list[Path], jobs: int, timeout: int) -> bool:
    """Execute the notebooks ``jobs`` at a time into ``SOURCE/tour``; report; True if all ran."""
    out = SOURCE / "tour"
    out.mkdir(parents=True, exist_ok=True)
    # The kernels import this checkout's cnnlab, and share the cores rather than fight for them.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    if jobs > 1:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    failed = []
    with ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(execute, nb, out / nb.name, timeout) for nb in notebooks]
        for future in futures:
            path, seconds, error = future.result()
            slow = f"  (over the {BUDGET_S} s budget)" if seconds > BUDGET_S else ""
            print(f"{'FAILED' if error else 'ok':6s} {path.name:36s} {seconds:5.1f} s{slow}")
            if error:
                failed.append((path, error))
    for path, error in failed:
        print(f"\n--- {path.relative_to(ROOT)} failed:\n{error}", file=sys.stderr)
    return not failed


def gather() -> None:
    """Copy ``docs/`` (not its unexecuted notebooks), README and ARCHITECTURE.md to ``SOURCE``."""
    shutil.copytree(
        ROOT / "docs", SOURCE, ignore=shutil.ignore_patterns("*.ipynb"), dirs_exist_ok=True
    )
    # The README's links into docs/ (its picture of the lab) point where docs/ is on the site.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (SOURCE / "index.md").write_text(readme.replace("](docs/", "]("), encoding="utf-8")
    if (ROOT / "ARCHITECTURE.md").exists():
        shutil.copyfile(ROOT / "ARCHITECTURE.md", SOURCE / "ARCHITECTURE.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: all of docs/tour/")
    parser.add_argument("--no-site", action="store_true", help="only execute the notebooks")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    parser.add_argument(
        "--no-screenshot",
        action="store_true",
        help="keep docs/images/lab.png instead of taking it again from the running lab",
    )
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted(TOUR.glob("*.ipynb"))
    if SOURCE.exists():
        shutil.rmtree(SOURCE)
    if not execute_all(notebooks, max(1, args.jobs), args.timeout):
        return 1
    if args.no_site:
        return 0
    if not args.no_screenshot:
        shot = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot_lab.py")])
        if shot.returncode:
            return shot.returncode
    gather()
    command = [sys.executable, "-m", "mkdocs", "build", "--clean", "--strict", "--config-file"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # no notice about MkDocs 2 in every build
    built = subprocess.run([*command, str(ROOT / "mkdocs.yml")], cwd=ROOT, env=env).returncode
    if built:
        return built
    problems = make_offline(ROOT / "site")
    for problem in problems:
        print(f"loads from the network: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
