"""Fixtures of the tfrecord_tools tests: small source folders and datasets written from them."""

import subprocess

import numpy as np
import pytest

import tfrecord_tools

from fakes import image_bytes, make_class_folder, write_file, write_records


@pytest.fixture
def source(tmp_path):
    return make_class_folder(tmp_path / "src")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished dataset (train and test), written once for the module."""
    root = tmp_path_factory.mktemp("finished")
    source = make_class_folder(root / "photos", per_class=3)
    write_records(source, root / "out1", num_shards=1)
    return source, root / "out1"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """3 classes x 6 images of 16x12, 2 shards per split; returns (source, out)."""
    root = tmp_path_factory.mktemp("read")
    source = make_class_folder(root / "src", per_class=6)
    tfrecord_tools.write_dataset(source, root / "out", num_shards=2, test_fraction=1 / 3, workers=1)
    return source, root / "out"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """3 classes x 20 images of 8-40 px (mixed sizes: the per-image parallel map), 4 shards."""
    root = tmp_path_factory.mktemp("load")
    rng = np.random.default_rng(0)
    for class_index, name in enumerate(("cat", "dog", "fox")):
        for index in range(20):
            width, height = (int(side) for side in rng.integers(8, 41, size=2))
            write_file(root / "src" / name / f"{index:02d}.jpg",
                       image_bytes(size=(width, height), seed=100 * class_index + index))
    write_records(root / "src", root / "out", num_shards=4, test_fraction=0)
    return root / "out"


@pytest.fixture
def bind_mount():
    """``bind_mount(folder, target)``: ``mount --bind`` for this test (skipped where that needs rights we lack)."""
    mounted = []

    def mount(folder, target):
        try:
            result = subprocess.run(["mount", "--bind", str(folder), str(target)], capture_output=True, text=True)
        except OSError as error:
            pytest.skip(f"no mount command: {error}")
        if result.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {result.stderr.strip()}")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True)
