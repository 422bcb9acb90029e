"""Downloads end to end against a local HTTP server, the classroom mirror, fetch, and the cache command.

The server runs on 127.0.0.1 in a thread and serves small files in the real
formats (tests/fakes.py); the test passes their checksums in by replacing the
entries of ``datasets.sources.REMOTE_FILES``. ``LAB_OFFLINE=1`` stays set: it
allows this machine and nothing else.
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from common import datasets
from common.datasets import __main__ as datasets_cli
from common.errors import UserError

from fakes import REPO_ROOT, serve_folder, write_fetch_folder


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder in the fetch layout, its checksums in the download table, and LAB_DATA_MIRROR on a local server."""
    folder = tmp_path / "served"
    md5s = write_fetch_folder(folder, np.random.default_rng(0))
    for key, remote in list(datasets.sources.REMOTE_FILES.items()):
        monkeypatch.setitem(datasets.sources.REMOTE_FILES, key,
                            dataclasses.replace(remote, md5=md5s[remote.path], sha256=None,
                                                url="https://example.invalid/never-used/" + remote.name))
    requests = []
    with serve_folder(folder, on_request=requests.append) as url:
        monkeypatch.setenv("LAB_DATA_MIRROR", url)
        yield folder, md5s, requests


def test_fetch_downloads_everything_through_the_mirror_and_the_loaders_accept_it(served, tmp_path, capsys,
                                                                                 monkeypatch):
    folder, md5s, requests = served
    target = tmp_path / "classroom"
    results = datasets.fetch_all(target, weights=True)
    assert {result["status"] for result in results} == {"downloaded"}
    for relative in md5s:
        assert (target / relative).read_bytes() == (folder / relative).read_bytes(), relative
    assert sorted(requests) == sorted(f"/{relative}" for relative in md5s)
    output = capsys.readouterr().out
    # Not a terminal: one line per download when it ends, no carriage-return bar.
    assert "download mnist.npz: " in output and " in " in output and "\r" not in output
    assert not [path for path in target.rglob("*") if path.name.endswith(".partial")]
    # A second run checks what is there and downloads nothing.
    again = datasets.fetch_all(target, weights=True)
    assert {result["status"] for result in again} == {"already there, checksum matches"}
    assert len(requests) == len(md5s)
    # The folder is a --data-dir for every loader, and so is LAB_DATA_DIR.
    assert len(datasets.load_mnist(data="real", data_dir=target).x_train) == 30
    assert datasets.load_mnist(data="real", data_dir=target, dataset="fashion_mnist").name == "fashion_mnist"
    assert len(datasets.load_cifar10(data="real", data_dir=target).x_train) == 100
    monkeypatch.setenv("LAB_DATA_DIR", str(target))
    assert str(target) in datasets.load_cifar10(data="real").source
    assert str(target) in datasets.cifar10_batches(data="real").source


def test_fetch_command_prints_how_to_use_the_folder(served, tmp_path, capsys):
    assert datasets_cli.main(["fetch", str(tmp_path / "classroom")]) == 0
    output = capsys.readouterr().out
    assert "6 files" in output and "LAB_DATA_DIR=" in output and "LAB_DATA_MIRROR=" in output
    assert not (tmp_path / "classroom" / "models").exists()  # no --weights


def test_loaders_download_from_the_mirror_into_the_cache(served, empty_keras_home, capsys):
    _, _, requests = served
    data = datasets.load_mnist(data="real")
    assert len(data.x_train) == 30 and requests == ["/datasets/mnist.npz"]
    assert (empty_keras_home / "datasets" / "mnist.npz").is_file()
    fashion = datasets.load_mnist(data="real", dataset="fashion_mnist")
    assert fashion.x_test.shape == (10, 28, 28)
    assert len(datasets.load_cifar10(data="real").x_train) == 100
    # Each write into the cache says once what it is, where, how big, and that later runs reuse it.
    cache = empty_keras_home / "datasets"
    announced = [line.split(" in ")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("cached ")]
    assert announced == ["cached the MNIST download", "cached the Fashion-MNIST download (4 IDX files)",
                         "cached the CIFAR-10 download", "cached the batch files extracted from cifar-10-python.tar.gz"]
    datasets.load_mnist(data="real")
    datasets.load_mnist(data="real", dataset="fashion_mnist")
    datasets.load_cifar10(data="real")
    assert "cached " not in capsys.readouterr().out and (cache / "fashion-mnist").is_dir()
    owners = {entry["name"]: entry["own"] for entry in datasets.cache_entries()}
    assert owners == {"mnist.npz": True, "fashion-mnist": True, "cifar-10-python.tar.gz": True,
                      "cifar-10-batches-py": True}


def test_download_goes_to_a_temporary_name_then_is_renamed(served, tmp_path):
    folder, md5s, _ = served
    seen_during_transfer = []
    destination = tmp_path / "cache" / "mnist.npz"

    def look(path):
        seen_during_transfer.extend(sorted(item.name for item in destination.parent.iterdir()))

    with serve_folder(folder, on_request=look) as url:
        datasets.download(url + "datasets/mnist.npz", destination, md5=md5s["datasets/mnist.npz"])
    assert len(seen_during_transfer) == 1 and seen_during_transfer[0].startswith(".mnist.npz.")
    assert seen_during_transfer[0].endswith(".partial")
    assert [item.name for item in destination.parent.iterdir()] == ["mnist.npz"]


def test_wrong_checksum_keeps_nothing_and_no_empty_folder(served, monkeypatch, empty_keras_home):
    key = datasets.sources.FASHION_MNIST_KEYS[0]
    monkeypatch.setitem(datasets.sources.REMOTE_FILES, key,
                        dataclasses.replace(datasets.sources.REMOTE_FILES[key], md5="0" * 32))
    with pytest.raises(UserError, match="arrived corrupt: md5") as raised:
        datasets.load_mnist(data="real", dataset="fashion_mnist")
    assert not (empty_keras_home / "datasets").exists(), "the failed download left a folder behind"
    # The mirror would serve the same bytes again: say what helps instead of "run again".
    message = str(raised.value)
    assert "The mirror LAB_DATA_MIRROR=" in message and "run again" not in message
    assert "serves a damaged datasets/fashion-mnist/train-images-idx3-ubyte.gz" in message
    assert "replace that file on the mirror" in message and "unset LAB_DATA_MIRROR" in message


def test_a_corrupt_download_from_the_official_site_may_be_retried_a_local_file_must_be_replaced(tmp_path):
    served = tmp_path / "mnist.npz"
    served.write_bytes(b"not the real file")
    with pytest.raises(datasets.DownloadError, match=r"is damaged: replace it with a good copy$"):
        datasets.download(served.as_uri(), tmp_path / "cache" / "mnist.npz", md5="0" * 32)
    assert datasets.downloads._advice_for_a_corrupt_file("https://example.org/mnist.npz") == \
        "A download can be damaged on the way: run again to retry"


def test_missing_file_on_the_mirror_leaves_no_folder(served, empty_keras_home):
    folder, _, _ = served
    (folder / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserError, match="404"):
        datasets.load_mnist(data="real", dataset="fashion_mnist")
    assert not (empty_keras_home / "datasets" / "fashion-mnist").exists()


def test_fetch_reports_each_failure_and_keeps_the_good_files(served, tmp_path):
    folder, _, _ = served
    (folder / "datasets" / "cifar-10-python.tar.gz").unlink()
    with pytest.raises(UserError, match=r"(?s)could not get 1 of 6 files.*cifar-10-python.tar.gz.*404"):
        datasets.fetch_all(tmp_path / "classroom")
    assert (tmp_path / "classroom" / "datasets" / "mnist.npz").is_file()
    assert not (tmp_path / "classroom" / "datasets" / "cifar-10-python.tar.gz").exists()


def test_offline_refuses_every_host_but_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA_MIRROR", "http://classroom.invalid/data")
    remote = datasets.sources.REMOTE_FILES["mnist"]
    assert datasets.downloads.url_of(remote) == "http://classroom.invalid/data/datasets/mnist.npz"
    with pytest.raises(datasets.DownloadError, match="LAB_OFFLINE"):
        datasets.downloads.fetch(remote, tmp_path / "mnist.npz")


# ---------------------------------------------------------------------------
# python -m common.datasets cache


def test_cache_lists_and_cleans_only_what_this_course_wrote(empty_keras_home, capsys):
    folder = datasets.cifar10_batches(data="standin", limit=200).path  # written by this course
    cache = empty_keras_home / "datasets"
    (cache / "keras_download.npz").write_bytes(b"k" * 1234)  # as if Keras (or a person) put it there
    assert datasets_cli.main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert folder.name in listing and "this course" in listing
    assert "keras_download.npz" in listing and "not ours" in listing and "1.2 KiB" in listing
    assert datasets_cli.main(["cache", "--clean", "keras_download.npz"]) == 2
    assert "not written by this course" in capsys.readouterr().err
    assert datasets_cli.main(["cache", "--clean"]) == 0
    assert sorted(path.name for path in cache.iterdir()) == [".written-by-common-datasets", "keras_download.npz"]
    assert datasets_cli.main(["cache", "--clean", "no-such-entry"]) == 2


def test_cache_command_runs_as_a_module(empty_keras_home):
    result = subprocess.run([sys.executable, "-m", "common.datasets", "cache"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(empty_keras_home / "datasets") in result.stdout and "does not exist yet" in result.stdout
