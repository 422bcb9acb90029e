"""Progress: bars on a terminal; redirected, one line per stage and no carriage return."""

import io
import re
import sys

from tfrecord_tools.__main__ import main


class Terminal(io.StringIO):
    """stderr as a terminal shows it."""

    def isatty(self):
        return True


def test_redirected_progress_is_one_line_per_stage(source, tmp_path, capsys):
    for workers in ("1", "2"):
        assert main(["write", str(source), str(tmp_path / f"out{workers}"), "--workers", workers]) == 0
        error = capsys.readouterr().err
        assert "\r" not in error
        assert re.fullmatch(r"checking: 15 of 15 img in \d+\.\d s\nwriting: 15 of 15 img in \d+\.\d s\n", error), error


def test_a_terminal_gets_progress_bars(source, tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["write", str(source), str(tmp_path / "out"), "--workers", "1"]) == 0
    shown = terminal.getvalue()
    assert "\r" in shown and re.search(r"checking: 100%\|.*\| 15/15", shown) and re.search(r"writing: 100%", shown)
