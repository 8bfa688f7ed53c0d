"""The import layers of the six packages, read from their source with ``ast`` (no Django needed)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "better_core"
APPS = ("better_tenant", "better_audit", "better_console", "better_webhooks", "better_mail")
PACKAGES = (CORE, *APPS)
# Calls whose literal first argument is a module they import, like an import statement.
IMPORTING_CALLS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    path: str
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an ``ImportFrom`` names, relative ones resolved against ``module``."""
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".")
        # A package's own name is the anchor of its level-1 imports; a module's is its parent.
        anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    if node.module is None:
        return [f"{base}.{alias.name}" for alias in node.names]
    return [base]


def _imports(path: Path) -> Iterator[Import]:
    """Every import of the file: statements at any depth and import calls with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module, relative = _module_of(path), path.relative_to(ROOT).as_posix()
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = _absolute(node, module, is_package)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                called in IMPORTING_CALLS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names = [first.value]
        for name in names:
            yield Import(relative, node.lineno, name)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _names(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _violations(
    package: str, forbidden: tuple[str, ...], allowed_in: tuple[str, ...] = ()
) -> list[Import]:
    """Imports of ``forbidden`` packages by ``package``, except in the files ``allowed_in``."""
    return [
        found
        for path in _files(package)
        if path.relative_to(ROOT).as_posix() not in allowed_in
        for found in _imports(path)
        if _names(found.module, forbidden)
    ]


def _report(found: list[Import], rule: str) -> str:
    return f"{rule}:\n" + "\n".join(f"  {item}" for item in found)


def test_every_package_has_source_to_check():
    for package in PACKAGES:
        assert _files(package), f"{package} has no .py files under {ROOT}"


def test_the_scanner_sees_nested_relative_and_dynamic_imports(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import sibling\n")
    (package / "mod.py").write_text(
        "import importlib\n"
        "def f():\n"
        "    from better_audit.integrity import admin_role\n"
        "    from .sibling import x\n"
        "    importlib.import_module('better_mail.models')\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = {(i.path, i.line, i.module) for p in _files("pkg") for i in _imports(p)}
    assert found == {
        ("pkg/__init__.py", 1, "pkg.sibling"),
        ("pkg/mod.py", 1, "importlib"),
        ("pkg/mod.py", 3, "better_audit.integrity"),
        ("pkg/mod.py", 4, "pkg.sibling"),
        ("pkg/mod.py", 5, "better_mail.models"),
    }


def test_better_core_imports_no_app_and_not_the_example_project():
    found = _violations(CORE, (*APPS, "example_project"))
    assert not found, _report(found, "better_core is the shared base: it imports no app")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_the_example_project_or_the_tests(package):
    found = _violations(package, ("example_project", "tests"))
    assert not found, _report(found, f"{package} is shipped: it imports no project and no test")


def test_the_tests_do_not_import_the_example_project():
    # The test projects are built of the apps and tests.testapp; the example's own tests live with
    # it (example_project/tests) and tests/test_example.py runs them in a subprocess.
    found = _violations("tests", ("example_project",))
    assert not found, _report(found, "tests/ imports no example_project module")


def _conftest_imports(path: Path) -> list[str]:
    """``path:line`` of each import of a conftest module (``from . import conftest`` included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module or ''}.{alias.name}" for alias in node.names]
        else:
            continue
        if any("conftest" in name.split(".") for name in names):
            found.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    return found


@pytest.mark.parametrize("folder", ["tests", "example_project/tests"])
def test_no_test_imports_a_conftest(folder):
    # pytest loads each conftest.py itself; the helpers tests share live in support modules.
    found = [item for path in _files(folder) for item in _conftest_imports(path)]
    assert not found, (
        "conftest.py declares fixtures and hooks; import helpers from a support "
        f"module instead (tests/support/): {found}"
    )


def test_better_tenant_imports_no_other_product_and_the_console_only_from_its_product_module():
    found = _violations("better_tenant", ("better_audit", "better_webhooks", "better_mail"))
    found += _violations(
        "better_tenant", ("better_console",), allowed_in=("better_tenant/console.py",)
    )
    assert not found, _report(
        found,
        "better_tenant knows no other product (they register with it); only its console "
        "product module, better_tenant/console.py, imports better_console",
    )


# Optional siblings are reached through their own seam: better_tenant's shortcuts (which work
# with or without better_tenant installed) and better_mail's public send() and template API.
SEAMS = ("better_tenant.shortcuts", "better_mail", "better_mail.templates")


def test_better_console_imports_none_of_the_products_it_serves():
    found = [
        item
        for item in _violations(
            "better_console", ("better_tenant", "better_audit", "better_webhooks", "better_mail")
        )
        if item.module not in SEAMS
    ]
    assert not found, _report(
        found,
        "better_console knows no product (its products register); optional siblings are "
        f"reached through {', '.join(SEAMS)}",
    )


@pytest.mark.parametrize("package", APPS)
def test_optional_tenancy_goes_through_the_shortcuts(package):
    # A product that checks by itself whether better_tenant is installed has copied the seam.
    found = [
        path.relative_to(ROOT).as_posix()
        for path in _files(package)
        if 'is_installed("better_tenant")' in path.read_text(encoding="utf-8")
        and "/migrations/" not in path.as_posix()
        and path.name != "apps.py"
    ]
    assert not found or package == "better_tenant", (
        f"{package} asks apps.is_installed('better_tenant') in {found}: use "
        "better_tenant.shortcuts (tenancy_installed, system_scope, tenant_scope, ...)"
    )
