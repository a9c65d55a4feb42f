"""What a resumed run rebuilds from its recorded events (`RunState.resumable_steps`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from planweave.executor.events import StepAdded
from planweave.executor.state import RunState


def test_a_recorded_handler_is_never_imported_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store's content may come from elsewhere (`planweave store import`): a step naming a
    # `module:function` handler must not make resume import that module. The workflow file,
    # under its loader's trust rules, brings handler steps back.
    (tmp_path / "pw_evil_handler.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').write_text('yes')\n"
        "def run(**kw):\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    state = RunState()
    state.apply(StepAdded(run_id="r", step_id="evil", tool="run", step={"id": "evil", "handler": "pw_evil_handler:run", "args": {}}))
    state.apply(StepAdded(run_id="r", step_id="ok", tool="echo", step={"id": "ok", "tool": "echo", "args": {"text": "hi"}}))

    steps, handlers = state.resumable_steps()

    assert [s.id for s in steps] == ["ok"]
    assert handlers == {"evil"}
    assert "pw_evil_handler" not in sys.modules
    assert not (tmp_path / "imported").exists()
