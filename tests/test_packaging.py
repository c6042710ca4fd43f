"""What the wheel ships (checked in the source tree, without building it): the MIT license,
py.typed, one version number."""

from __future__ import annotations

from pathlib import Path

import pytest

import minrnn

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_is_the_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_py_typed_is_package_data():
    assert (ROOT / "src" / "minrnn" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["minrnn"]


def test_version_is_single_sourced():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "minrnn.__version__"}
    assert isinstance(minrnn.__version__, str) and minrnn.__version__.count(".") == 2
