"""`adapters` and `transfer` also exist on PyPI: the imports must resolve to this repository."""

import importlib

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["transfer", "teacher", "students", "domain_fms", "adapters"])
def test_top_level_package_is_this_repository(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert module.__file__.startswith(str(REPO / name))
