"""common.cli: the shared flags, the friendly error handler, quiet TensorFlow start-up."""

import os
import subprocess
import sys

import pytest

from common import cli
from fakes import REPO_ROOT



def make(**overrides):
    settings = {"epochs": 5, "batch_size": 32, "out": "outputs/test"}
    settings.update(overrides)
    return cli.make_parser("Title: a test script.", **settings)


def test_defaults_are_the_labs_values(tmp_path):
    config = cli.parse(make(), argv=["--out", str(tmp_path / "run")])
    assert (config.epochs, config.batch_size, config.data, config.limit, config.seed) == (5, 32, "auto", None, 0)
    assert config.out.is_dir()


def test_flags_override_defaults(tmp_path):
    config = cli.parse(make(), argv=["--epochs", "2", "--batch-size", "8", "--data", "standin", "--limit", "100",
                                "--seed", "7", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert (config.epochs, config.batch_size, config.data, config.limit, config.seed) == (2, 8, "standin", 100, 7)
    assert config.data_dir == tmp_path


@pytest.mark.parametrize("arguments", [["--epochs", "0"], ["--limit", "-3"], ["--batch-size", "x"],
                                       ["--data", "online"]])
def test_bad_values_exit_with_a_usage_message(arguments, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.parse(make(), argv=arguments)
    assert raised.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_data_dir_is_an_error(tmp_path):
    from common.errors import UserError

    with pytest.raises(UserError, match="does not exist"):  # one paragraph (exit 2), no usage block
        cli.parse(make(), argv=["--data-dir", str(tmp_path / "absent")])


def test_flags_can_be_left_out():
    parser = make(epochs=None, batch_size=None)
    assert "--epochs" not in parser.format_help() and "--out" in parser.format_help()


def test_user_error_prints_a_message_without_traceback():
    code = ("from common import cli\nfrom common.errors import UserError\n"
            "cli.install_error_handler()\nraise UserError('file X is not Y: do Z')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error: file X is not Y: do Z" in result.stderr and "Traceback" not in result.stderr


def test_rate_accepts_0_up_to_1(capsys):
    parser = make()
    parser.add_argument("--dropout", type=cli.rate, default=0.5)
    assert parser.parse_args(["--dropout", "0"]).dropout == 0.0
    for bad in ("1", "-0.1", "half"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--dropout", bad])
    assert "--dropout" in capsys.readouterr().err


def test_under_jupyter_flags_come_from_the_args_cell(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "kernel.json"])
    config = cli.parse(make(), f"--epochs 1 --limit 200 --out {tmp_path}")
    assert (config.epochs, config.limit, config.out) == (1, 200, tmp_path)


FAKE_TENSORFLOW = """
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"W0000 00:00:1.0   1 something.cc:1] a real warning\\n")
if os.environ.get("FAIL"):
    raise ImportError("libcudart.so.12: cannot open shared object file")

class random:
    seed = None

    @staticmethod
    def set_seed(seed):
        random.seed = seed
"""

IMPORTER = """
import sys
sys.path.insert(0, {fake!r})
sys.path.insert(1, {repo!r})
from common import cli
cli.quiet_tensorflow()
cli.seed_everything(7)
import tensorflow
print("seeded", tensorflow.random.seed)
"""


@pytest.mark.parametrize("fail", [False, True])
def test_quiet_tensorflow_hides_startup_lines_and_replays_them_if_the_import_fails(tmp_path, fail):
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
        assert "a real warning" in result.stderr
        assert result.stdout.strip() == "seeded 7"  # TensorFlow seeded when it loads after the flags


@pytest.mark.slow
def test_quiet_tensorflow_leaves_only_the_cuda_probe_of_the_real_tensorflow():
    code = ("from common import cli\ncli.quiet_tensorflow()\nimport keras\nimport tensorflow as tf\n"
            "print(float(tf.reduce_sum(tf.ones([2]))))\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2.0"
    remaining = [line for line in result.stderr.splitlines() if line.strip()]
    assert all("cuInit" in line for line in remaining), remaining  # at most the CUDA probe at first device use
