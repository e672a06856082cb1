"""The layers hold: import-linter's contracts in pyproject.toml, and no private name crossing.

``lint-imports`` checks the contracts written in pyproject.toml (``[tool.importlinter]``): the
layers one way down, the kernels without dask/zarr/xarray, pure plans, private modules kept in
their package, no import cycles, the store reaching auto only through compress, a store read
without the compressing code. Each contract is
shown to fail on a copy of the package with the import it forbids. Private *names* (a
function, a constant) used from another module are found here by reading the source.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
SETTINGS = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in SETTINGS["contracts"]}


def lint(where: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` with the project's contracts on the ``chunkpress`` in ``where``
    (it puts its working directory first on the path)."""
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--no-cache", str(CONFIG)],
        cwd=where, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(where), "COLUMNS": "1000"})  # a line a verdict


def verdicts(output: str) -> dict:
    """{contract name: "KEPT" or "BROKEN"} from lint-imports' report."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^(.+?) (KEPT|BROKEN)\b", output, flags=re.M)}


def copy_package(tmp_path: Path) -> Path:
    """A copy of the package's Python source under ``tmp_path`` (what import-linter reads)."""
    shutil.copytree(ROOT / "chunkpress", tmp_path / "chunkpress",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.so"))
    return tmp_path


def test_the_import_contracts_hold():
    result = lint(ROOT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # every contract written down was checked, and kept
    assert verdicts(report) == {c["name"]: "KEPT" for c in CONTRACTS.values()}, report


def test_the_layers_name_every_module_of_the_package():
    layers = CONTRACTS["layers"]
    assert layers["exhaustive"] is True
    placed = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    modules = {p.stem for p in (ROOT / "chunkpress").glob("*.py") if p.stem != "__init__"}
    packages = {p.parent.name for p in (ROOT / "chunkpress").glob("*/__init__.py")}
    assert placed == modules | packages
    # the order the issue asks for: nothing below imports what is above
    order = [layer.split("|")[0].strip() for layer in layers["layers"]]
    assert order.index("cli") < order.index("accessor") < order.index("storage") \
        < order.index("api") < order.index("auto") < order.index("graph") \
        < order.index("kernels")


def _private_module() -> str:
    """A private module of the kernels (the private-modules contract's test import)."""
    return sorted(p.stem for p in (ROOT / "chunkpress" / "kernels").glob("_[a-z]*.py"))[0]


# (file of the package, the line added to it, the contract that must then be broken)
FORBIDDEN = [
    ("kernels/__init__.py", "from chunkpress import storage", "layers"),
    ("graph/build.py", "from chunkpress.storage import writer", "layers"),
    ("storage/reader.py", "from chunkpress import accessor", "layers"),
    ("storage/writer.py", "from chunkpress import evaluation", "layers"),  # one layer's two
    ("new_module.py", "import numpy", "layers"),  # a module no layer names
    ("kernels/__init__.py", "import dask.array", "kernels-alone"),
    ("graph/plan.py", "import dask", "plans-pure"),
    ("storage/reader.py", f"from chunkpress.kernels import {_private_module()}",
     "private-modules"),
    ("graph/compressed.py", "from chunkpress.graph import pipeline", "no-cycles"),
    ("storage/integrity.py", "from chunkpress import api", "reading-alone"),
    ("storage/writer.py", "from chunkpress import auto", "store-through-compress"),
]


@pytest.mark.parametrize("path, line, contract", FORBIDDEN,
                         ids=[f"{c}:{p}" for p, _, c in FORBIDDEN])
def test_each_contract_fails_on_the_import_it_forbids(tmp_path, path, line, contract):
    where = copy_package(tmp_path)
    target = where / "chunkpress" / path
    text = target.read_text() if target.exists() else ""
    target.write_text(f"{text}\n{line}  # the import the contract forbids\n")
    result = lint(where)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert verdicts(report)[CONTRACTS[contract]["name"]] == "BROKEN", report


# --- private names ------------------------------------------------------------------------


def _pending() -> set:
    """Private modules still imported from outside their package while issue 12 makes them
    public: the private-modules contract's ignored imports (a line there, one here)."""
    return {rule.split("->")[1].strip()
            for rule in CONTRACTS["private-modules"].get("ignore_imports", [])}


def private_uses(root: Path) -> list:
    """Return "module: what" for each private name (not a module) one module of the package
    in ``root`` takes from another: ``from m import _f`` or ``m._f`` on an imported module.

    Attributes of objects (``c._codec``) are not seen here: they need types to be told apart.
    """
    package = root / "chunkpress"
    files = {".".join(p.relative_to(root).with_suffix("").parts): p
             for p in package.rglob("*.py")}
    names = {m[: -len(".__init__")] if m.endswith(".__init__") else m: p
             for m, p in files.items()}
    compiled = {".".join((*p.relative_to(root).parent.parts, p.name.split(".")[0]))
                for p in package.rglob("*") if p.suffix in (".pyx", ".so")}
    pending = _pending()

    def is_module(name):
        return name in names or name in compiled

    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    found = []
    for module, path in sorted(names.items()):
        base = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "chunkpress":
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    source = ".".join(parts[: len(parts) - node.level + 1])
                    source = f"{source}.{node.module}" if node.module else source
                else:
                    source = node.module or ""
                if source.split(".")[0] != "chunkpress" or source in pending:
                    continue
                for alias in node.names:
                    whole = f"{source}.{alias.name}"
                    if is_module(whole):
                        aliases[alias.asname or alias.name] = whole
                    elif private(alias.name) and source != module:
                        found.append(f"{module}: from {source} import {alias.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and private(node.attr):
                owner = aliases[node.value.id]
                if owner != module and owner not in pending \
                        and not is_module(f"{owner}.{node.attr}"):
                    found.append(f"{module}: {owner}.{node.attr}")
    return sorted(set(found))


def test_no_private_name_crosses_modules():
    assert private_uses(ROOT) == []


def test_a_private_name_taken_from_another_module_is_found(tmp_path):
    where = copy_package(tmp_path)
    (where / "chunkpress" / "intruder.py").write_text(
        "from chunkpress.graph import pipeline\n"
        "from .graph.plan import _ceil_div\n"
        "from .graph import plan as p\n"
        "CHECK = pipeline._check_aligned, p._round_up, _ceil_div\n")
    assert private_uses(where) == [
        "chunkpress.intruder: chunkpress.graph.pipeline._check_aligned",
        "chunkpress.intruder: chunkpress.graph.plan._round_up",
        "chunkpress.intruder: from chunkpress.graph.plan import _ceil_div",
    ]
