"""common.cli: the shared flags and the friendly error handler."""

import subprocess
import sys

import pytest

from common import cli

from conftest import REPO_ROOT


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


def test_missing_data_dir_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.parse(make(), argv=["--data-dir", str(tmp_path / "absent")])
    assert "does not exist" in capsys.readouterr().err


def test_flags_can_be_left_out():
    parser = make(epochs=None, batch_size=None)
    assert "--epochs" not in parser.format_help() and "--out" in parser.format_help()


def test_user_error_prints_a_message_without_traceback():
    code = ("from common import cli\nfrom common.errors import UserError\n"
            "cli.install_error_handler()\nraise UserError('file X is not Y: do Z')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error: file X is not Y: do Z" in result.stderr and "Traceback" not in result.stderr
