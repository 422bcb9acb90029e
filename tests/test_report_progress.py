"""report.keras_verbose / report.progress: bars for a person watching, one line per loop in a log file."""

import io
import sys

from common import report


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_keras_verbose_is_one_line_per_epoch_in_a_file_and_bars_on_a_terminal(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert report.keras_verbose() == 2
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert report.keras_verbose() == "auto"


def test_keras_verbose_shows_bars_in_a_notebook(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert report.keras_verbose() == "auto"


def test_progress_in_a_log_file_prints_one_line_when_the_loop_ends(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stdout", log)
    assert sum(report.progress(range(1000), desc="decode", unit="images")) == sum(range(1000))
    with report.progress(total=5, desc="write", unit="files") as bar:
        for _ in range(5):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert lines[0].startswith("decode: 1,000 images in ") and lines[1].startswith("write: 5 files in ")


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stdout", Terminal())
    bar = report.progress(range(3), desc="x")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()


def test_progress_in_a_notebook_without_ipywidgets_is_a_text_bar_without_a_warning(monkeypatch, recwarn):
    import importlib.util

    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "ipywidgets" else real_find_spec(name, *args))
    bar = report.progress(range(3), desc="x", unit="images")
    assert type(bar).__module__ == "tqdm.std"
    bar.close()
    assert not [warning for warning in recwarn if "IProgress" in str(warning.message)]
