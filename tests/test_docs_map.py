"""docs/architecture.md is the project's map: it must name what the code holds, and nothing else.

Checked from the source: every package and module is named in the layout table, every file the
map names exists, every error a user can meet (a `UserError` subclass) is in its error list, and
the public API it lists is what ``peft_ser`` exports.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import peft_ser

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "peft_ser"
MAP = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the map's ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}[^\n]*\n(.*?)(?=^## |\Z)", MAP, re.S | re.M)
    assert match, f"docs/architecture.md has no section '## {title}'"
    return match.group(1)


def named_files() -> set[str]:
    """Module paths the layout table names: a package per row, and in the row its modules
    (``file.py``) and subpackages (``sub/``, with theirs as ``sub/file.py``)."""
    names = set()
    for row in section("Package layout").splitlines():
        cells = row.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        package = cells[1].strip().strip("`")
        names.add(package)
        for name in re.findall(r"`([\w/]+(?:\.py|/))`", cells[2]):
            names.add(f"{package}/{name}".rstrip("/"))
    return names


def source_files() -> set[str]:
    """The package's modules and folders (subpackages, and data such as ``serving/static``)."""
    found = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_dir() and path.name != "__pycache__"
    }
    found |= {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }
    return found | {"__init__.py"}


def test_the_layout_names_every_module_and_only_real_ones() -> None:
    named, real = named_files(), source_files()
    assert sorted(real - named) == [], "modules the map does not name"
    assert sorted(named - real) == [], "names in the map with no module"


def user_errors() -> set[str]:
    """Classes in the package that derive, directly or not, from ``UserError``."""
    bases: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [ast.unparse(base).split(".")[-1] for base in node.bases]
    found: set[str] = set()

    def derives(name: str) -> bool:
        return name == "UserError" or any(derives(base) for base in bases.get(name, []))

    for name in bases:
        if name != "UserError" and derives(name):
            found.add(name)
    return found


def test_the_error_list_is_complete() -> None:
    listed = set(re.findall(r"`(\w+Error)`", section("Errors")))
    assert sorted(user_errors() - listed) == []


def test_the_public_api_is_what_the_package_exports() -> None:
    listed = set(re.findall(r"`(\w+)`", section("Public API").split("\n\n")[1]))
    assert listed == set(peft_ser.__all__)


def dotted_references() -> set[str]:
    """Every ``peft_ser.…`` name the README and the docs mention."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pattern = re.compile(r"\bpeft_ser(?:\.\w+)+")
    return {name for path in texts for name in pattern.findall(path.read_text(encoding="utf-8"))}


def resolves(dotted: str) -> bool:
    """True when ``dotted`` is a module of the package or a name in one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_dotted_name_in_the_docs_exists() -> None:
    references = dotted_references()
    assert len(references) > 20  # the check sees the docs
    assert sorted(name for name in references if not resolves(name)) == []
