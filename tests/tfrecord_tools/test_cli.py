"""The command line, run as a user runs it: help, messages, exit codes, Ctrl-C and SIGTERM."""

import errno
import io
import json
import os
import signal
import subprocess
import sys

import pytest
from PIL import Image

import tfrecord_tools
from tfrecord_tools import __main__ as command_line_module
from tfrecord_tools import write as write_module
from tfrecord_tools.__main__ import build_parser, main

from fakes import (
    REPO_ROOT,
    image_bytes,
    make_class_folder,
    run_tool,
    start_slow_write,
    write_file,
    write_records,
)


@pytest.mark.parametrize("command", ["write", "verify", "info"])
def test_each_subcommand_help_shows_an_example(command):
    result = run_tool(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and f"python -m tfrecord_tools {command}" in result.stdout


def test_write_help_does_not_claim_verified_shards():
    parser = build_parser()
    assert "verified" not in parser.description and "decode-checked" in parser.description
    assert "verified" not in (tfrecord_tools.__doc__.splitlines()[0])


def test_cli_write_verify_info_round_trip(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=4)
    write_file(source / "cat" / "broken.jpg", b"\xff\xd8\xff\xe0 cut short")
    out = tmp_path / "out"
    written = run_tool("write", source, out, "--workers", "2", "--num-shards", "2", "--no-progress")
    assert written.returncode == 0, written.stderr
    assert "12 images in 4 shards" in written.stdout and "1 rejected" in written.stdout
    assert "images/s" in written.stdout
    verified = run_tool("verify", out)
    assert verified.returncode == 0 and verified.stdout.strip().splitlines()[-1].startswith("OK: 12 records")
    info = run_tool("info", out, "--contact-sheet", out / "contact_sheet.png", "--per-class", "2")
    assert info.returncode == 0 and "fox" in info.stdout
    assert Image.open(out / "contact_sheet.png").format == "PNG"


def test_cli_write_does_not_import_tensorflow(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=2)
    code = (
        "import sys; from tfrecord_tools.__main__ import main; "
        f"main(['write', {str(source)!r}, {str(tmp_path / 'out')!r}, '--workers', '1', '--no-progress']); "
        "main(['verify', " + repr(str(tmp_path / "out")) + "]); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("write", "{tmp}/missing", "{tmp}/out"), "does not exist"),
        (("write", "{tmp}/flat", "{tmp}/out"), "holds no class folders"),
        (("verify", "{tmp}"), "dataset.json is missing"),
        (("info", "{tmp}/missing"), "is not a folder"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, arguments, message):
    write_file(tmp_path / "flat" / "a.jpg", image_bytes())
    result = run_tool(*(argument.format(tmp=tmp_path) for argument in arguments))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_bad_arguments_exit_2(tmp_path):
    result = run_tool("write", tmp_path, tmp_path / "out", "--test-fraction", "1.5")
    assert result.returncode == 2 and "expected a number in [0, 1)" in result.stderr


# B10
@pytest.mark.parametrize("size", ["inf", "1e400", "-inf", "nan"])
def test_shard_size_overflow_is_a_usage_error(tmp_path, size, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path / "src"), str(tmp_path / "out"), "--shard-size", size])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--shard-size" in error and "Traceback" not in error


@pytest.mark.parametrize("arguments, expected", [
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "--test-fraction 0.5 + --val-fraction 0.5 must be below 1"),
    (["--val-fraction", "0.9"], "--test-fraction 0.2 + --val-fraction 0.9 must be below 1"),
    (["--max-side", "100000"], "--max-side: expected at most 65500 pixels"),
])
def test_out_of_range_arguments_are_one_line_usage_errors(tmp_path, capsys, arguments, expected):
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path), str(tmp_path / "out"), *arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_range_error_the_library_finds_is_a_usage_error_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(command_line_module, "_max_side", int)  # past argparse's check, to the library's own
    with pytest.raises(SystemExit) as stopped:
        main(["write", str(tmp_path), str(tmp_path / "out"), "--max-side", "70000", "--no-progress"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--max-side must be a whole number of pixels in [1, 65500]" in error and "Traceback" not in error
    with pytest.raises(ValueError, match=r"max_side must be"):
        write_records(tmp_path, tmp_path / "out", max_side=70000)


def test_command_line_messages_name_flags(tmp_path, capsys):
    source = make_class_folder(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    assert main(["write", str(source), str(out), "--workers", "1", "--no-progress", "--test-fraction", "0"]) == 0
    capsys.readouterr()
    assert main(["write", str(source), str(out), "--workers", "1", "--no-progress", "--num-shards", "1"]) == 1
    error = capsys.readouterr().err
    assert "pass --overwrite" in error and "overwrite=True" not in error
    with pytest.raises(tfrecord_tools.OutputFolderError, match=r"overwrite=True"):
        write_records(source, out, num_shards=1)


def test_cli_oserror_without_a_file_name(monkeypatch, capsys, tmp_path):
    def fail(arguments):
        raise OSError("No space left on device")

    monkeypatch.setattr(command_line_module, "_run", fail)
    assert main(["verify", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "tfrecord_tools verify: error: No space left on device\n"


def test_disk_full_names_the_file_and_the_rerun(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/train.tfrecord-00000-of-00004")

    monkeypatch.setattr(write_module, "write_dataset", full)
    assert main(["write", str(tmp_path), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "train.tfrecord-00000-of-00004: No space left on device" in error
    assert "run the same command again" in error


def test_cli_verify_failure_names_shard_and_record(written, tmp_path):
    _, original = written
    out = tmp_path / "copy"
    out.mkdir()
    for path in original.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    shard = out / "train.tfrecord-00000-of-00002"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # inside the last record's image bytes
    shard.write_bytes(bytes(data))
    result = run_tool("verify", out)
    assert result.returncode == 1
    assert "train.tfrecord-00000-of-00002 record 5" in result.stdout and "FAILED" in result.stdout


def test_cli_info_json_with_contact_sheet_keeps_stdout_json(written, tmp_path):
    _, out = written
    result = run_tool("info", out, "--json", "--contact-sheet", tmp_path / "contact_sheet.png")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classes"] == ["cat", "dog", "fox"]
    assert "contact sheet:" in result.stderr


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_the_output_quietly(finished):
    _, out = finished
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` after its line: nobody reads
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        finished_run = subprocess.run([sys.executable, "-m", "tfrecord_tools", "info", str(out)], stdout=write_end,
                                      stderr=subprocess.PIPE, text=True, env=environment, timeout=120)
    finally:
        os.close(write_end)
    assert finished_run.returncode == 0, finished_run.stderr
    assert finished_run.stderr == ""


def test_ctrl_c_stops_cleanly_and_the_same_command_finishes(tmp_path):
    """SIGINT to the whole process group (as a terminal sends it): one line, exit 130, no traceback."""

    source = make_class_folder(tmp_path / "src", per_class=4)
    out = tmp_path / "out"
    process = start_slow_write(source, out, tmp_path / "slow", 0.2, "--workers", "2", "--num-shards", "2",
                               start_new_session=True)  # its own process group, as a terminal's job
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    finished = run_tool("write", source, out, "--workers", "1", "--num-shards", "2", "--no-progress")
    assert finished.returncode == 0, finished.stderr
    assert run_tool("verify", out).returncode == 0


def test_sigterm_stops_a_write_cleanly(tmp_path):
    source = make_class_folder(tmp_path / "src", per_class=40, size=(8, 8))
    process = start_slow_write(source, tmp_path / "out", tmp_path / "slow", 0.05, "--workers", "2")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "leaked" not in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "out").glob(".incomplete-*"))
    finished = run_tool("write", source, tmp_path / "out", "--workers", "2", "--no-progress")
    assert finished.returncode == 0 and "120 images" in finished.stdout, finished.stderr



def run_on_a_strict_utf8_terminal(monkeypatch, *arguments):
    """``main(arguments)`` with stdout encoded as on a desktop's UTF-8 locale (errors are errors); (code, out, err)."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main([str(argument) for argument in arguments])
    return code, stdout.buffer.getvalue(), stderr.buffer.getvalue()


# N5
def test_class_names_are_printed_escaped_whatever_they_hold(tmp_path, monkeypatch):
    source = make_class_folder(tmp_path / "src", classes=("cat",), per_class=2)
    for seed, name in enumerate([b"bad\xff", b"\x1b]0;pwned\x07title", b"\x1b[2Jclear", b"empty\xfe"]):
        folder = os.path.join(os.fsencode(source), name)
        os.mkdir(folder)
        if not name.startswith(b"empty"):  # an empty class is named in write's summary
            for index in range(2):
                with open(os.path.join(folder, b"%d.jpg" % index), "wb") as handle:
                    handle.write(image_bytes(seed=10 * seed + index))
    out = tmp_path / "out"
    written = run_on_a_strict_utf8_terminal(monkeypatch, "write", source, out, "--workers", "1", "--no-progress")
    described = run_on_a_strict_utf8_terminal(monkeypatch, "info", out)
    assert written[0] == 0 and described[0] == 0, (written, described)
    for output in (*written[1:], *described[1:]):
        assert b"\x1b" not in output and b"\x07" not in output  # no terminal title, no clear screen
    assert b"empty\\xfe" in written[1]
    for shown in (b"bad\\xff", b"\\x1b]0;pwned\\x07title", b"\\x1b[2Jclear", b"empty\\xfe"):
        assert shown in described[1], described[1]
