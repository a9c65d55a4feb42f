"""The install claims one name, `planweave`, and the layers import one way: planner -> executor -> tools."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"planner": 2, "executor": 1, "tools": 0}  # a layer imports only layers below it


def test_the_wheel_has_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    [wheel] = tmp_path.glob("planweave-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"planweave", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "planweave/planner/cli/app.py" in names
    assert "planweave/prompts/plan.j2" in names
    assert "planweave/executor/py.typed" in names
    assert not any(name.startswith(("planweave/tests/", "planweave/bench/")) for name in names)

    # The installed wheel (not this checkout) loads its prompts and runs a plan.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    code = (
        "import planweave, planweave.planner.prompts as p\n"
        "print(planweave.__file__)\n"
        "print(p.PromptLibrary().get('plan').version)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert proc.returncode == 0, proc.stderr
    location, version = proc.stdout.split()
    assert location == str(target / "planweave" / "__init__.py")
    assert version.isdigit()


def test_a_project_with_its_own_tools_planner_and_executor_modules(tmp_path: Path) -> None:
    for name in ("tools", "planner", "executor", "prompts"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the project\\'s own {name}.py was imported')\n")
    code = (
        "from planweave import Planner, Budget, Executor, Plan, Step, Workflow, tool, open_store\n"
        "@tool\ndef double(x: int) -> int:\n    'Double a number.'\n    return 2 * x\n"
        "result = Executor([double]).run_sync(Plan.of([{'id': 'a', 'tool': 'double', 'args': {'x': 21}}]))\n"
        "print(result.status, result.output('a'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["succeeded", "42"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_layers_import_one_way_and_only_through_planweave() -> None:
    wrong: list[str] = []
    for layer, height in LAYERS.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for module in _imports(path):
                top = module.split(".")[0]
                if top in (*LAYERS, "prompts"):
                    wrong.append(f"{path.relative_to(ROOT)} imports `{module}`: use `planweave.{module}`")
                    continue
                if top != "planweave" or module == "planweave":
                    continue
                target = module.split(".")[1]
                if target in LAYERS and LAYERS[target] > height:
                    wrong.append(f"{path.relative_to(ROOT)} imports `{module}`, a layer above `{layer}`")
    assert wrong == []


def test_the_planweave_package_is_only_the_api_and_the_links() -> None:
    package = ROOT / "planweave"
    entries = {p.name for p in package.iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "__main__.py", "py.typed", "planner", "executor", "tools", "prompts"}
    for name in ("planner", "executor", "tools", "prompts"):
        assert (package / name).is_symlink() and (package / name).resolve() == ROOT / name
