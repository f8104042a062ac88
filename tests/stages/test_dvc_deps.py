"""Every project module a stage runs is a declared dependency of that stage in dvc.yaml.

A stage's code is ``stages/<name>.py`` plus every ``sketchgan`` (and ``stages``) module it
imports, directly or through others, at module level or inside functions (the lazy imports run
too). A change to any of them must make ``dvc status`` report the stage as changed, so each such
file has to lie under one of the stage's ``deps``. The imports are read from the source (AST), so
the test needs no heavy import and sees the lazy imports that an import-time scan would miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def _module_file(name: str) -> Path | None:
    """The file of a project module (``sketchgan.x.y`` or ``stages.z``), else None."""
    parts = name.split(".")
    if parts[0] == "sketchgan":
        base = SRC.joinpath(*parts)
    elif parts[0] == "stages":
        base = ROOT.joinpath(*parts)
    else:
        return None
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a import b`` adds a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = _package_of(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC if SRC in path.parents else ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts[:-1]) if path.name != "__init__.py" else ".".join(parts)


def _closure(start: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            parts = name.split(".")
            # a package's __init__ runs whenever one of its modules is imported
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    for dep in deps:
        dep_path = Path(dep)
        if rel == dep_path or dep_path in rel.parents:
            return True
    return False


def _is_trivial(path: Path) -> bool:
    """Empty package markers change nothing a stage computes."""
    return path.name == "__init__.py" and not path.read_text().strip()


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_every_module_it_imports(stage):
    spec = _stages()[stage]
    main = ROOT / "stages" / f"{stage}.py"
    assert main.is_file(), f"dvc.yaml stage {stage} has no stages/{stage}.py"
    assert spec["cmd"].split()[:2] == ["sketchgan", stage], f"{stage}: cmd {spec['cmd']!r}"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
    missing = sorted(
        str(p.relative_to(ROOT))
        for p in _closure(main)
        if not _is_trivial(p) and not _covered(p, deps)
    )
    assert not missing, f"dvc.yaml stage '{stage}' lacks deps: {', '.join(missing)}"


def test_closure_follows_lazy_and_transitive_imports():
    """The scanner itself: the train stage reaches the training loop and, through it, the
    models and the checkpoint layer."""
    got = {str(p.relative_to(ROOT)) for p in _closure(ROOT / "stages" / "train.py")}
    assert "src/sketchgan/training/finetune.py" in got
    assert "src/sketchgan/models/stylegan2.py" in got
    assert "src/sketchgan/checkpoints.py" in got


def test_bytecode_caches_are_not_part_of_a_dependency_hash():
    """A source folder's hash must be its sources': bytecode caches differ between machines."""
    from dvc.repo import Repo

    ignore = Repo(str(ROOT)).dvcignore
    assert ignore.is_ignored_dir(str(ROOT / "src/sketchgan/models/__pycache__"))
    assert ignore.is_ignored_file(str(ROOT / "src/sketchgan/models/stylegan2.cpython-311.pyc"))
    assert not ignore.is_ignored_file(str(ROOT / "src/sketchgan/models/stylegan2.py"))
