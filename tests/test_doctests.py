"""Every docstring example in the library runs and prints what it says (float64, as in tests)."""

import doctest
import importlib
import pkgutil

import pytest

import ufm

MODULES = sorted(m.name for m in pkgutil.walk_packages(ufm.__path__, "ufm.")
                 if m.name not in ("ufm.__main__",))


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
