"""Workflow handlers from trusted places only (issue 12, item 9): a YAML or JSON workflow file may
take Python handlers from modules beside it, from planweave's own tools, or from modules the user
names (`--trust-module`, `trusted_modules=`); anything else is refused before it is imported,
with a message that says why and how to allow it (`--trust-all-handlers`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from planweave.executor import load_workflow
from planweave.executor.errors import WorkflowFileError

ROOT = Path(__file__).resolve().parents[2]

EVIL = """\
from pathlib import Path
Path({marker!r}).write_text("imported")

def run(x: int) -> int:
    return x
"""


def workflow_file(directory: Path, handler: str) -> Path:
    path = directory / "flow.yaml"
    path.write_text(
        "name: trust\n"
        "steps:\n"
        "  - id: first\n"
        "    handler: " + handler + "\n"
        "    args: {x: 21}\n"
    )
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module outside the workflow's directory that leaves a mark when imported."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "pw_elsewhere_mod.py").write_text(EVIL.format(marker=str(tmp_path / "marker")))
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.delitem(sys.modules, "pw_elsewhere_mod", raising=False)
    return tmp_path / "marker"


def flow_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "flows"
    directory.mkdir(exist_ok=True)
    return directory


def test_a_handler_from_elsewhere_is_refused_before_import(tmp_path: Path, elsewhere: Path) -> None:
    path = workflow_file(flow_dir(tmp_path), "pw_elsewhere_mod:run")
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(path)
    assert str(info.value) == (
        f"`{path}`: step `first` uses handler `pw_elsewhere_mod:run` from module `pw_elsewhere_mod`. "
        f"A workflow file may take handlers only from modules beside it (in `{path.parent}`), from planweave's "
        "own tools, or from modules you trust, because importing a module runs its code. If you trust it, pass "
        "`--trust-module pw_elsewhere_mod` (Python: `load_workflow(..., trusted_modules=['pw_elsewhere_mod'])`), "
        "or `--trust-all-handlers`."
    )
    assert not elsewhere.exists()  # nothing was imported
    with pytest.raises(WorkflowFileError, match="uses handler `os:system` from module `os`"):
        load_workflow(workflow_file(flow_dir(tmp_path), "os:system"))


def test_trusted_modules_and_trust_all_allow_it(tmp_path: Path, elsewhere: Path) -> None:
    path = workflow_file(flow_dir(tmp_path), "pw_elsewhere_mod:run")
    workflow = load_workflow(path, trusted_modules=["pw_elsewhere_mod"])
    assert workflow.run_sync().outputs["first"] == 21
    assert elsewhere.exists()
    assert load_workflow(path, trust_all_handlers=True).steps[0].id == "first"


def test_modules_beside_the_file_and_planweave_tools_are_trusted(tmp_path: Path) -> None:
    directory = flow_dir(tmp_path)
    (directory / "pw_beside_helpers.py").write_text("def double(x: int) -> int:\n    return x * 2\n")
    workflow = load_workflow(workflow_file(directory, "pw_beside_helpers:double"))
    assert workflow.run_sync().outputs["first"] == 42
    own = directory / "own.yaml"
    own.write_text(
        "steps:\n  - id: e\n    handler: planweave.tools.safe_eval:evaluate\n    args: {expression: '6 * 7'}\n"
    )
    assert load_workflow(own).run_sync().outputs["e"] == 42


def test_a_module_beside_the_file_cannot_stand_in_for_one_already_loaded(tmp_path: Path) -> None:
    directory = flow_dir(tmp_path)
    (directory / "json.py").write_text("def dumps(x):\n    return 'beside'\n")
    with pytest.raises(WorkflowFileError, match="rename the module beside the file"):
        load_workflow(workflow_file(directory, "json:dumps"))


def test_the_cli_refuses_and_allows_with_a_flag(tmp_path: Path, elsewhere: Path) -> None:
    path = workflow_file(flow_dir(tmp_path), "pw_elsewhere_mod:run")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "elsewhere"), "PLANWEAVE_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "planweave", *args], capture_output=True, text=True, cwd=tmp_path, env=env,
            timeout=120,
        )

    refused = cli("exec", str(path), "--no-record")
    assert refused.returncode == 2
    assert "`--trust-module pw_elsewhere_mod`" in refused.stderr and "Traceback" not in refused.stderr
    assert not elsewhere.exists()
    allowed = cli("exec", str(path), "--no-record", "--trust-module", "pw_elsewhere_mod", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert elsewhere.exists()
