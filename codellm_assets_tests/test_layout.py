"""The package's structure holds: core/ is plain Python grouped by stage, importing only downward; defs/
modules share through defs/shared.py only; no import cycles; benchmarks and the package never reach into
the test package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from codellm_assets.settings import PROJECT_ROOT

PKG = PROJECT_ROOT / "codellm_assets"
STAGES = ("data", "training", "evaluation", "serving", "monitoring")
# What each stage may import from core/ besides itself: data <- training <- evaluation; serving and
# monitoring on top (monitoring reads the serving store's routing types, never the other way round).
MAY_IMPORT = {
    "data": set(),
    "training": {"data"},
    "evaluation": {"data", "training"},
    "serving": {"data", "training", "evaluation"},
    "monitoring": {"data", "training", "evaluation", "serving"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def test_core_is_grouped_by_stage_with_few_flat_modules():
    core = PKG / "core"
    assert {p.name for p in core.iterdir() if (p / "__init__.py").exists()} >= set(STAGES)
    flat = sorted(p.name for p in core.glob("*.py") if p.name != "__init__.py")
    # fsutil: shared by every stage; train_checkpoints: the import path old MLflow versions load.
    assert flat == ["fsutil.py", "train_checkpoints.py"]


@pytest.mark.parametrize("path", sorted((PKG / "core").rglob("*.py")), ids=lambda p: module_name(p))
def test_core_never_imports_dagster(path):
    bad = {m for m in imports_of(path) if m == "dagster" or m.startswith(("dagster.", "dagster_"))}
    assert not bad, f"{module_name(path)} imports {sorted(bad)}: core/ is plain Python, Dagster wiring is defs/"


@pytest.mark.parametrize("stage", STAGES)
def test_core_stages_import_only_downward(stage):
    wrong = []
    for path in (PKG / "core" / stage).rglob("*.py"):
        for mod in imports_of(path):
            parts = mod.split(".")
            if parts[:2] == ["codellm_assets", "core"] and len(parts) > 2 and parts[2] in STAGES:
                if parts[2] != stage and parts[2] not in MAY_IMPORT[stage]:
                    wrong.append(f"{module_name(path)} -> {mod}")
            if parts[:2] in (["codellm_assets", "defs"], ["codellm_assets", "testing"]):
                wrong.append(f"{module_name(path)} -> {mod}")
    assert not wrong, "imports against the stage order (data <- training <- evaluation <- serving/monitoring):\n" + \
        "\n".join(sorted(wrong))


def test_defs_modules_share_only_through_defs_shared():
    sideways = []
    for path in (PKG / "defs").glob("*.py"):
        for mod in imports_of(path):
            if mod.startswith("codellm_assets.defs.") and not mod.startswith("codellm_assets.defs.shared"):
                sideways.append(f"{module_name(path)} -> {mod}")
    assert not sideways, "defs modules import each other; move what they share to defs/shared.py:\n" + \
        "\n".join(sorted(sideways))


def test_no_import_cycles_among_the_package_modules():
    mods = package_modules()
    graph = {name: {m for m in imports_of(path, top_level_only=True) if m in mods and m != name}
             for name, path in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize("root", ["codellm_assets", "benchmarks"])
def test_nothing_outside_the_tests_imports_the_test_package(root):
    bad = [f"{p.relative_to(PROJECT_ROOT)} -> {m}" for p in (PROJECT_ROOT / root).rglob("*.py")
           for m in imports_of(p) if m.startswith("codellm_assets_tests")]
    assert not bad, "test kits belong in codellm_assets/testing/:\n" + "\n".join(bad)


def test_the_test_package_is_not_installed_as_a_top_level_package():
    import tomllib

    find = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["codellm_assets", "codellm_assets.*"]
