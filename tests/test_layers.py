"""The packages import each other only downstream, so the tree draws the data flow:

    data -> training -> pretrained -> nca -> separation -> results -> report, plots -> study -> cli

(`config`, `_estimators`, `models`, `runs`, `checkpoints`, `stats` are shared by every stage;
`pretrained` sits beside training). Checked on the relative import statements of the source (the package uses no absolute
imports of itself), function-level imports included.
"""

import ast
from pathlib import Path

import ncajax

ORDER = ["data", "training", "pretrained", "nca", "separation", "results", "report", "plots", "study", "cli"]
SHARED = {"config", "models", "runs", "checkpoints", "stats", "_estimators"}
ROOT = Path(ncajax.__file__).parent


def _package_imports():
    """(importing package, imported package, file) for every relative import between packages."""
    out = []
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        here = parts[:-1] if is_init else parts
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = here if is_init else here[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                full = target if node.module else [*target, alias.name]
                if len(parts) > 1 and len(full) > 1 and parts[1] != full[1]:
                    out.append((parts[1], full[1], str(path.relative_to(ROOT.parent))))
    return out


def test_the_stage_packages_are_all_ordered():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages == set(ORDER), sorted(packages ^ set(ORDER))
    assert modules == SHARED, sorted(modules ^ SHARED)


def test_packages_import_only_upstream():
    edges = _package_imports()
    assert len(edges) > 20  # the check reads the imports at all
    upward = sorted({(a, b, f) for a, b, f in edges
                     if a in ORDER and b in ORDER and ORDER.index(b) > ORDER.index(a)})
    assert not upward, f"imports against the data flow (package -> later package, file): {upward}"


def test_the_shared_modules_import_no_stage():
    edges = _package_imports()
    bad = sorted({(a, b, f) for a, b, f in edges if a in SHARED and b in ORDER})
    assert not bad, bad


def test_the_package_imports_itself_only_relatively():
    """So the relative imports read above are all of them."""
    absolute = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            absolute += [(str(path), n) for n in names if n == "ncajax" or n.startswith("ncajax.")]
    assert not absolute, absolute
