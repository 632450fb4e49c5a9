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

Before the site is built, ``scripts/screenshot_lab.py`` takes the README's picture of the web
lab again (``docs/images/lab.png``), so the site shows the lab as it is; that needs the test
extras and Chromium as well (``--no-screenshot`` keeps the committed picture).
"""

from __future__ import annotations

import argparse
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
    nbformat.write(notebook, target)
    return path, time.perf_counter() - start, error


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
    return subprocess.run([*command, str(ROOT / "mkdocs.yml")], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
