"""The public API: one package per stage with a curated `__init__`, and one import path per public name.

A public module is one whose dotted path has no component starting with "_"; its public names are its
`__all__`. Private modules (`ncajax.nca._couplings`, ...) are the packages' glue.
"""

import importlib
import inspect
import pkgutil
from collections import defaultdict

import pytest

import ncajax

STAGE_PACKAGES = ("data", "training", "nca", "separation", "results", "report", "plots", "study", "cli")


def _public_modules():
    names = ["ncajax"]
    for info in pkgutil.walk_packages(ncajax.__path__, "ncajax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return {name: importlib.import_module(name) for name in names}


PUBLIC = _public_modules()


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_module_lists_its_names_and_they_exist(name):
    module = PUBLIC[name]
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_every_stage_is_a_package_whose_modules_are_private(package):
    pkg = PUBLIC[f"ncajax.{package}"]
    assert hasattr(pkg, "__path__"), f"ncajax.{package} is not a package"
    modules = [info.name for info in pkgutil.iter_modules(pkg.__path__)]
    assert modules, f"ncajax.{package} has no modules"
    public = [m for m in modules if not m.startswith("_")]
    assert not public, f"ncajax.{package} has public modules {public}: its __init__ is the public API"
    assert pkg.__all__, f"ncajax.{package}.__all__ is empty"


def _exports():
    """(object, path) for every function and class of ncajax in a public __all__; constants by value."""
    objects, constants = defaultdict(list), defaultdict(list)
    for mod_name, module in PUBLIC.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            path = f"{mod_name}.{name}"
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(
                obj, "__module__", ""
            ).startswith("ncajax"):
                objects[id(obj)].append(path)
            else:
                constants[(name, repr(obj))].append(path)
    return objects, constants


def test_no_public_name_has_two_import_paths():
    objects, constants = _exports()
    twice = sorted(paths for paths in objects.values() if len(paths) > 1)
    twice += sorted(paths for paths in constants.values() if len(paths) > 1)
    assert not twice, f"public names with more than one import path: {twice}"


def test_the_check_sees_a_second_path(monkeypatch):
    """The check above is not vacuous: a name re-exported by a second public module is caught."""
    objects, _ = _exports()
    assert objects[id(ncajax.nca.fit_mapping)] == ["ncajax.nca.fit_mapping"]
    assert len(objects) > 100
    monkeypatch.setattr(ncajax.runs, "fit_mapping", ncajax.nca.fit_mapping, raising=False)
    monkeypatch.setattr(ncajax.runs, "__all__", [*ncajax.runs.__all__, "fit_mapping"])
    objects, _ = _exports()
    assert sorted(objects[id(ncajax.nca.fit_mapping)]) == ["ncajax.nca.fit_mapping", "ncajax.runs.fit_mapping"]


def test_the_design_cards_import_paths():
    from ncajax.nca import apply_matrix, fit_mapping

    assert callable(fit_mapping) and callable(apply_matrix)
    assert ncajax.models.predict is not apply_matrix
