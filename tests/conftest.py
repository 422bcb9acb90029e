"""Test-wide settings: no network, no real cache, quiet TensorFlow, CPU only.

``LAB_OFFLINE=1`` makes every download in ``common.datasets`` fail at once as if
the machine had no network, and ``KERAS_HOME`` points at an empty folder so no
test sees a dataset cached on the developer's machine. Subprocesses inherit both.
"""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ["LAB_OFFLINE"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["MPLBACKEND"] = "Agg"
os.environ.pop("LAB_DATA_DIR", None)


@pytest.fixture(autouse=True)
def empty_keras_home(tmp_path_factory, monkeypatch):
    """Every test starts with an empty Keras cache of its own."""
    home = tmp_path_factory.mktemp("keras_home")
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


# The longest modules first, so that neither worker is left with one of them at the end.
LONGEST_FIRST = ["tests/scripts/test_assignment.py", "tests/scripts/test_lab04.py", "tests/scripts/test_lab03.py",
                 "tests/scripts/test_lab01.py", "tests/scripts/test_distributed.py", "tests/course/test_grade.py"]


def pytest_collection_modifyitems(items):
    rank = {path: number for number, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.path).relative_to(REPO_ROOT).as_posix(), len(rank)))
