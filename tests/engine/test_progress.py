"""Tests for the dependency-free progress bar."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest

from cnnlab.engine import progress
from cnnlab.engine.progress import ProgressBar, format_bytes, format_duration


class FakeTTY(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    """A controllable stand-in for ``time.monotonic``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress, "monotonic", fake)
    return fake


def test_format_line_shows_percent_bar_counts_eta_rate_and_postfix(clock: FakeClock) -> None:
    bar = ProgressBar(1000, desc="train", stream=io.StringIO())
    bar.update(420, loss=0.312)
    line = bar.format_line(3.0)
    assert line.startswith("train  42%|")
    assert "| 420/1000 [00:03<00:04, 140.0 it/s, loss=0.312]" in line
    assert line.count("|") == 2


def test_format_line_can_leave_out_the_text_bar(clock: FakeClock) -> None:
    bar = ProgressBar(1000, desc="train", stream=io.StringIO())
    bar.update(420)
    assert bar.format_line(3.0, bar=False) == "train  42% 420/1000 [00:03<00:04, 140.0 it/s]"


def test_unknown_total_shows_count_and_rate_without_eta(clock: FakeClock) -> None:
    bar = ProgressBar(None, unit="img", stream=io.StringIO())
    bar.update(50)
    assert bar.format_line(2.0) == "50 img [00:02, 25.0 img/s]"


def test_byte_unit_formats_sizes() -> None:
    bar = ProgressBar(9_719_438, desc="x.gz", unit="B", stream=io.StringIO())
    bar.update(1_000_000)
    line = bar.format_line(1.0)
    assert "1 MB/9.72 MB" in line
    assert "1 MB/s" in line


def test_non_tty_prints_only_the_final_line_at_close(clock: FakeClock) -> None:
    stream = io.StringIO()
    with ProgressBar(10, desc="epoch 1", stream=stream) as bar:
        for _ in range(10):
            clock.now += 1
            bar.update(1, acc=np.float32(0.98766))
        assert stream.getvalue() == ""
    text = stream.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1
    assert text.startswith("epoch 1 100%|")
    assert "10/10" in text
    assert "acc=0.9877" in text


def test_disabled_prints_nothing(clock: FakeClock) -> None:
    stream = FakeTTY()
    with ProgressBar(3, stream=stream, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""


def test_tty_redraws_at_most_ten_times_a_second(clock: FakeClock) -> None:
    stream = FakeTTY()
    bar = ProgressBar(1000, stream=stream)
    for _ in range(500):  # all within the same instant: one draw only
        bar.update(1)
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.2
    bar.update(1)
    assert stream.getvalue().count("\r") == 2
    bar.update(499)  # reaching the total always draws
    assert stream.getvalue().count("\r") == 3
    bar.close()
    bar.close()  # a second close does nothing
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "1000/1000" in text.splitlines()[-1]


class FakeKernelStream(io.StringIO):
    """A text stream of the kind a Jupyter kernel gives a notebook (ipykernel's OutStream)."""


FakeKernelStream.__module__ = "ipykernel.iostream"


class FakeShell:
    """Stands in for the kernel's IPython shell: records every display it publishes."""

    def __init__(self) -> None:
        self.display_pub = self
        self.published: list[tuple[dict, str, bool]] = []  # (data, display id, update?)

    def publish(self, data: dict, transient: dict, update: bool) -> None:
        self.published.append((data, transient["display_id"], update))


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> FakeShell:
    shell = FakeShell()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    return shell


def test_notebook_shows_one_html_bar_updated_in_place(clock: FakeClock, notebook) -> None:
    stream = FakeKernelStream()
    bar = ProgressBar(10, desc="epoch <1>", unit="img", stream=stream)
    for _ in range(5):  # the same instant: one draw
        bar.update(1, loss=0.5)
    clock.now += 0.2
    bar.update(5)  # reaching the total always draws
    bar.close()
    bar.close()
    assert [update for _, _, update in notebook.published] == [False, True, True]
    assert len({display_id for _, display_id, _ in notebook.published}) == 1
    final = notebook.published[-1][0]
    assert '<progress value="10" max="10"' in final["text/html"]
    # beside the drawn bar, the text line without its text bar, escaped
    assert "<code>epoch &lt;1&gt; 100% 10/10 [" in final["text/html"]
    assert final["text/plain"].startswith("epoch <1> 100% 10/10 [")
    assert "|" not in final["text/plain"]
    assert stream.getvalue() == ""  # no carriage-return animation in the notebook's stream


def test_two_bars_get_two_displays(clock: FakeClock, notebook) -> None:
    for _ in range(2):
        with ProgressBar(2, stream=FakeKernelStream()) as bar:
            bar.update(2)
    assert len({display_id for _, display_id, _ in notebook.published}) == 2


def test_notebook_bar_of_unknown_total_is_indeterminate(clock: FakeClock, notebook) -> None:
    with ProgressBar(None, stream=FakeKernelStream()) as bar:
        bar.update(3)
    assert "<progress style=" in notebook.published[-1][0]["text/html"]


def test_disabled_bar_shows_nothing_in_a_notebook(clock: FakeClock, notebook) -> None:
    with ProgressBar(3, stream=FakeKernelStream(), enabled=False) as bar:
        bar.update(3)
    assert notebook.published == []


def test_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar(1, desc="once") as bar:
        bar.update()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("once 100%|")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (28_857, "28.9 kB"), (47_040_016, "47 MB"), (2.5e9, "2.5 GB")],
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_format_duration() -> None:
    assert format_duration(0) == "00:00"
    assert format_duration(75.9) == "01:15"
    assert format_duration(3725) == "1:02:05"
