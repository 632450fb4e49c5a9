"""A small, dependency-free progress bar for downloads and training loops.

On a terminal the bar redraws in place (at most about ten times a second). In a Jupyter
notebook (the stream is the kernel's) it is an HTML ``<progress>`` bar with the same line of
text, updated in place through one display, so the saved notebook keeps only its final state.
On anything else (a log file, a CI console, a test's ``StringIO``) it prints no carriage-return
animation, only the final line when it closes, so logs stay readable.
"""

from __future__ import annotations

import html
import numbers
import sys
import uuid
from time import monotonic
from types import TracebackType
from typing import TextIO

_REDRAW_INTERVAL = 0.1  # seconds between redraws on a terminal
_BAR_WIDTH = 20
_PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"  # eighths of a cell, for a smooth bar


def format_bytes(n: float) -> str:
    """Format a byte count with decimal units: ``512 B``, ``28.9 kB``, ``9.72 MB``."""
    units = ("B", "kB", "MB", "GB", "TB")
    power = 0
    while n >= 1000 and power < len(units) - 1:
        n /= 1000
        power += 1
    if power == 0:
        return f"{int(n)} B"
    return f"{n:.3g} {units[power]}" if n < 100 else f"{n:.0f} {units[power]}"


def format_duration(seconds: float) -> str:
    """Format seconds as ``mm:ss``, or ``h:mm:ss`` from one hour on."""
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _format_value(value: object) -> str:
    """Show a postfix value compactly: floats to four significant digits, others as-is."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return str(value)


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _is_notebook(stream: TextIO) -> bool:
    """Whether ``stream`` is a Jupyter kernel's output stream (ipykernel's ``OutStream``)."""
    return type(stream).__module__.startswith("ipykernel.")


class ProgressBar:
    """Show progress as ``desc  42%|████████▍           | 420/1000 [00:03<00:04, 140 it/s]``.

    ``total`` may be ``None`` when unknown (then no percentage or ETA is shown). With
    ``unit="B"`` counts and rates are formatted as byte sizes. ``enabled=False`` prints
    nothing at all; ``None`` (the default) means enabled. Use it as a context manager, or call
    :meth:`close` when done.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.postfix: dict[str, object] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = True if enabled is None else enabled
        self._animate = self.enabled and _is_tty(self.stream)
        self._notebook = self.enabled and _is_notebook(self.stream)
        self._display_id: str | None = None  # the notebook display it updates, once shown
        self._start = monotonic()
        self._last_draw: float | None = None
        self._last_width = 0
        self._closed = False

    def update(self, n: int = 1, **postfix: object) -> None:
        """Advance by ``n`` and merge ``postfix`` (shown as ``key=value``) into the display."""
        self.n += n
        self.postfix.update(postfix)
        self._maybe_draw()

    def close(self) -> None:
        """Draw the final state and end the line; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._notebook:
            self._show(monotonic() - self._start)
            return
        line = self.format_line(monotonic() - self._start)
        if self._animate:
            self._write("\r" + line.ljust(self._last_width) + "\n")
        else:
            self._write(line + "\n")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def format_line(self, elapsed: float, bar: bool = True) -> str:
        """Return the bar's text for the current count, ``elapsed`` seconds after the start.

        ``bar=False`` leaves out the text bar (a notebook draws a real one beside the text).
        """
        rate = self.n / elapsed if elapsed > 0 else None
        timing = format_duration(elapsed)
        if self.total is not None:
            remaining = max(self.total - self.n, 0)
            eta = remaining / rate if rate else None
            timing += "<" + (format_duration(eta) if eta is not None else "?")
        fields = [timing, self._format_rate(rate)]
        fields += [f"{key}={_format_value(value)}" for key, value in self.postfix.items()]
        stats = f"[{', '.join(fields)}]"
        prefix = f"{self.desc} " if self.desc else ""
        if self.total is None:
            count = self._format_count(self.n)
            unit = "" if self.unit == "B" else f" {self.unit}"
            return f"{prefix}{count}{unit} {stats}"
        fraction = min(self.n / self.total, 1.0) if self.total > 0 else 1.0
        count = f"{self._format_count(self.n)}/{self._format_count(self.total)}"
        drawn = f"|{_bar(fraction)}|" if bar else ""
        return f"{prefix}{int(fraction * 100):>3}%{drawn} {count} {stats}"

    def _format_count(self, n: int) -> str:
        return format_bytes(n) if self.unit == "B" else str(n)

    def _format_rate(self, rate: float | None) -> str:
        if rate is None:
            return f"? {self.unit}/s"
        if self.unit == "B":
            return f"{format_bytes(rate)}/s"
        return f"{rate:.1f} {self.unit}/s"

    def _maybe_draw(self) -> None:
        # Only a terminal or a notebook gets the animation; elsewhere the final line at close()
        # is enough.
        if not (self._animate or self._notebook) or self._closed:
            return
        now = monotonic()
        finished = self.total is not None and self.n >= self.total
        recent = self._last_draw is not None and now - self._last_draw < _REDRAW_INTERVAL
        if recent and not finished:
            return
        self._last_draw = now
        if self._notebook:
            self._show(now - self._start)
            return
        line = self.format_line(now - self._start)
        self._write("\r" + line.ljust(self._last_width))
        self._last_width = len(line)

    def _show(self, elapsed: float) -> None:
        """Show the bar in the notebook: the first time as a new display, then by updating it."""
        line = self.format_line(elapsed, bar=False)
        value = f' value="{self.n}" max="{self.total}"' if self.total else ""
        page = (
            f'<div><progress{value} style="width: 16em; vertical-align: middle"></progress> '
            f"<code>{html.escape(line)}</code></div>"
        )
        # The stream is a Jupyter kernel's, so IPython is loaded and its shell publishes
        # displays: no import here, and none for code that never runs in a notebook.
        shell = sys.modules["IPython"].get_ipython()
        update = self._display_id is not None
        self._display_id = self._display_id or uuid.uuid4().hex
        shell.display_pub.publish(
            {"text/plain": line, "text/html": page},
            transient={"display_id": self._display_id},
            update=update,
        )

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _bar(fraction: float) -> str:
    """A bar of ``_BAR_WIDTH`` cells filled to ``fraction`` with eighth-cell resolution."""
    eighths = int(fraction * _BAR_WIDTH * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full
    if full < _BAR_WIDTH:
        bar += _PARTIAL_BLOCKS[part]
    return bar.ljust(_BAR_WIDTH)
