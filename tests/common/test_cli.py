"""common.cli: the shared flags, the checks that need no data (--data-dir, --out, --limit), the error handler."""

import subprocess
import sys

import pytest

from common import cli

from fakes import REPO_ROOT


def make(**overrides):
    settings = {"epochs": 5, "batch_size": 32, "out": "outputs/test"}
    settings.update(overrides)
    return cli.make_parser("Title: a test script.", **settings)


def test_defaults_are_the_labs_values_and_nothing_is_created(tmp_path):
    config = cli.parse(make(), argv=["--out", str(tmp_path / "run")])
    assert (config.epochs, config.batch_size, config.data, config.limit, config.seed) == (5, 32, "auto", None, 0)
    assert config.out == tmp_path / "run" and not config.out.exists()  # the run makes it, with its first output


@pytest.mark.parametrize("below", ["", "sub", "sub/deeper"])
def test_an_out_that_is_or_lies_below_a_file_is_one_clear_error(tmp_path, below):
    from common.errors import UserError

    (tmp_path / "outfile.txt").write_text("not a folder")
    out = tmp_path / "outfile.txt" / below if below else tmp_path / "outfile.txt"
    with pytest.raises(UserError, match="outfile.txt") as raised:
        cli.parse(make(), argv=["--out", str(out)])
    assert "give a folder for the outputs" in str(raised.value) and "\n" not in str(raised.value)


def test_a_data_dir_that_is_one_split_says_to_pass_its_parent(tmp_path):
    from common.errors import UserError

    for split in ("train", "test"):
        (tmp_path / "cifar" / split / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="looks like one split") as raised:
        cli.parse(make(), argv=["--data-dir", str(tmp_path / "cifar" / "train")])
    assert f"--data-dir {tmp_path / 'cifar'}" in str(raised.value)
    assert cli.parse(make(), argv=["--data-dir", str(tmp_path / "cifar")]).data_dir == tmp_path / "cifar"


def test_the_limit_is_checked_with_the_largest_batch_flag_when_the_flags_are_parsed():
    from common.errors import UserError

    parser = make(dataset="cifar10")
    parser.add_argument("--pipeline-batch-size", type=cli.positive_int, default=64)
    assert cli.parse(parser, argv=["--limit", "64"]).limit == 64
    with pytest.raises(UserError, match="smaller than one global batch \\(64 images\\)"):
        cli.parse(parser, argv=["--limit", "50"])
    with pytest.raises(UserError, match="The smallest accepted is --limit 57 \\(at --limit 56, it would leave a "
                                        "class without a test image"):
        cli.parse(make(dataset="mnist"), argv=["--limit", "5"])
    assert cli.parse(make(), argv=["--limit", "5"]).limit == 5  # no dataset named: the script checks it later


def test_a_dataset_flag_takes_the_place_of_the_parsers_dataset():
    from common.errors import UserError

    parser = make(dataset="mnist", batch_size=None)
    parser.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    with pytest.raises(UserError, match="for cifar10"):
        cli.parse(parser, argv=["--dataset", "cifar10", "--limit", "20"])


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
