"""common.console: bars for a person watching, one line per loop in a log file, banners, quiet TensorFlow."""

import io
import os
import subprocess
import sys

import pytest

from common import console

from fakes import REPO_ROOT


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_keras_verbose_is_one_line_per_epoch_in_a_file_and_bars_on_a_terminal(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert console.keras_verbose() == 2
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert console.keras_verbose() == "auto"


def test_keras_verbose_shows_bars_in_a_notebook(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert console.keras_verbose() == "auto"


def test_progress_in_a_log_file_prints_one_line_when_the_loop_ends(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stdout", log)
    assert sum(console.progress(range(1000), desc="decode", unit="images")) == sum(range(1000))
    with console.progress(total=5, desc="write", unit="files") as bar:
        for _ in range(5):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert lines[0].startswith("decode: 1,000 images in ") and lines[1].startswith("write: 5 files in ")
    with console.progress(total=3_000_000, desc="download x.tar.gz", unit="B", unit_scale=True) as bar:
        bar.update(3_000_000)
    assert log.getvalue().splitlines()[-1].startswith("download x.tar.gz: 3.00MB in ")


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stdout", Terminal())
    bar = console.progress(range(3), desc="x")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()


def test_progress_in_a_notebook_without_ipywidgets_is_a_text_bar_without_a_warning(monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets raises ImportError
    bar = console.progress(range(3), desc="x", unit="images")
    assert type(bar).__module__ == "tqdm.std" and bar.fp is not None
    bar.close()
    assert not [warning for warning in recwarn if "IProgress" in str(warning.message)]


def test_summary_line_formats_seconds_with_one_decimal():
    assert console.summary_line("x", accuracy=0.91234, total_s=6.4375, images=1234.5) == \
        "x | accuracy=0.9123 | total_s=6.4 | images=1234.5"


def test_a_banner_wraps_a_long_line_to_fit_a_terminal(capsys):
    console.banner("OFFLINE STAND-IN\nwhy: " + "a very long reason " * 20)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) > 4
    assert lines[0] == lines[-1] and lines[0].startswith("+-")


FAKE_TENSORFLOW = """
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"W0000 00:00:1.0   1 something.cc:1] a real warning\\n")
if os.environ.get("FAIL"):
    raise ImportError("libcudart.so.12: cannot open shared object file")

class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"E0000 00:00:1.0   1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n")
        return []
"""

IMPORTER = """
import sys
sys.path.insert(0, {fake!r})
sys.path.insert(1, {repo!r})
from common import console
with console.quiet_tensorflow():
    import tensorflow
print("imported")
"""


@pytest.mark.parametrize("fail", [False, True])
def test_quiet_tensorflow_hides_startup_lines_and_shows_them_all_if_the_import_fails(tmp_path, fail):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = IMPORTER.format(fake=str(tmp_path), repo=str(REPO_ROOT))
    env = {**os.environ, "FAIL": "1" if fail else ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    if fail:
        assert result.returncode == 1
        assert "oneDNN" in result.stderr and "absl" in result.stderr  # all of it, to explain the failure
        assert "cannot open shared object file" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "oneDNN" not in result.stderr and "absl" not in result.stderr
        assert "a real warning" in result.stderr and result.stdout.strip() == "imported"
        assert ("cuInit" in result.stderr) == console.has_nvidia_device()  # noise without an NVIDIA device


@pytest.mark.slow
def test_quiet_tensorflow_leaves_nothing_of_the_real_tensorflows_start_up():
    code = ("from common import console\nwith console.quiet_tensorflow():\n    import keras\n"
            "import tensorflow as tf\nprint(float(tf.reduce_sum(tf.ones([2]))))\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2.0"
    remaining = [line for line in result.stderr.splitlines() if line.strip()]
    if console.has_nvidia_device():
        remaining = [line for line in remaining if "cuInit" not in line]
    assert remaining == []
