"""Packaging: `pip install .` gives tfrecord_tools alone and its command; the version is defined once."""

import os
import shutil
import subprocess
import sys
import tomllib
import warnings

import pytest

import tfrecord_tools

from fakes import REPO_ROOT, make_class_folder


@pytest.mark.slow
def test_pip_install_gives_the_package_and_the_command(tmp_path):
    pytest.importorskip("setuptools")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", project)
    shutil.copytree(REPO_ROOT / "tfrecord_tools", project / "tfrecord_tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(target), str(project)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    top_level = sorted(path.name for path in target.iterdir() if not path.name.endswith(".dist-info"))
    assert "tfrecord_tools" in top_level and "common" not in top_level and "tests" not in top_level, top_level

    elsewhere = tmp_path / "elsewhere"  # neither the checkout nor the install folder
    source = make_class_folder(elsewhere / "photos", per_class=2)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PYTHONPATH"] = str(target)
    command = target / "bin" / "tfrecord-tools"
    assert command.exists()
    written = subprocess.run([sys.executable, str(command), "write", "photos", "records", "--workers", "1",
                              "--no-progress"], capture_output=True, text=True, timeout=120, cwd=elsewhere,
                             env=environment)
    assert written.returncode == 0, written.stderr[-2000:]
    assert "6 images in" in written.stdout
    module = subprocess.run([sys.executable, "-m", "tfrecord_tools", "verify", "records", "--workers", "1"],
                            capture_output=True, text=True, timeout=120, cwd=elsewhere, env=environment)
    assert module.returncode == 0 and module.stdout.startswith("OK"), module.stderr[-2000:]
    where = subprocess.run([sys.executable, "-c", "import tfrecord_tools; print(tfrecord_tools.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=elsewhere, env=environment)
    assert where.stdout.startswith(str(target)), where.stdout
    assert source.exists()


def test_the_package_version_is_defined_once():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert project_version_from_setuptools() == tfrecord_tools.__version__


def project_version_from_setuptools():
    from setuptools.config.pyprojecttoml import read_configuration  # setuptools may be missing: imported here

    root = REPO_ROOT
    with warnings.catch_warnings():  # "[tool.setuptools] in pyproject.toml is still beta"
        warnings.simplefilter("ignore")
        configuration = read_configuration(root / "pyproject.toml", expand=True)
    return configuration["project"]["version"]

