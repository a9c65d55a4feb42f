"""Terminal escapes in model and tool text are never printed (issue 12, item 10): `clean` strips
escape sequences (CSI, OSC, DCS, ...) and control characters but newline and tab, and the CLI
prints every answer, rationale, step output and error through it, in a real pseudo-terminal
(where rich draws the live view) as well as piped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planweave.planner.cli.app import app
from planweave.planner.cli.terminal import clean
from planweave.planner.testing import FakeModelServer, Reply

ROOT = Path(__file__).resolve().parents[2]

HOSTILE = {
    "csi": "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "title": "\x1b]0;pwned\x07",  # set the window title
    "clipboard": "\x1b]52;c;cm0gLXJmIH4=\x1b\\",  # write the clipboard (OSC 52)
    "link": "\x1b]8;;https://evil.example\x1b\\docs\x1b]8;;\x1b\\",  # a hyperlink that lies
    "c1": "\x9b31m\x9d0;pwned\x9c",  # the 8-bit forms
    "overwrite": "safe\rEVIL\x08\x08",  # carriage return and backspace hide text
    "bidi": "\u202etxt.exe",
    "dcs": "\x1bP1$r\x1b\\",
}
MARKERS = ("\x1b[2J", "\x1b]0;", "\x1b]52;", "\x1b]8;;https://evil", "\x9b", "\x9d", "\r", "\x08", "\u202e", "\x1bP")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_clean_removes_escape_sequences_and_controls(name: str) -> None:
    out = clean(f"before {HOSTILE[name]} after\tand\nmore")
    assert out.startswith("before ") and out.endswith(" after\tand\nmore")
    assert not any(marker in out for marker in MARKERS)
    assert all(ch.isprintable() or ch in "\n\t" for ch in out)


def test_clean_keeps_ordinary_text() -> None:
    for text in ("plain", "é, 😀, 中文", "tabs\tand\nnewlines", "[bold]markup stays text[/]", ""):
        assert clean(text) == text
    assert clean("\x1b[31mred\x1b[0m") == "red" and clean(42) == "42"


PAYLOAD = "".join(HOSTILE.values())


def _replies() -> list[Reply]:
    return [
        Reply.json_obj(
            {
                "rationale": "plan " + PAYLOAD,
                "steps": [
                    {"id": "a", "tool": "calculator", "args": {"expression": "6 * 7"}},
                    {"id": "b", "tool": "calculator", "args": {"expression": "1 +" + PAYLOAD}},
                ],
            }
        ),
        Reply.json_obj({"action": "finish", "answer": "It is 42." + PAYLOAD + " Done.", "reason": ""}),
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-fake", "PLANWEAVE_HOME": str(tmp_path / "home"), "COLUMNS": "120"}


def _run_args(server: FakeModelServer) -> list[str]:
    return [sys.executable, "-m", "planweave", "run", "six times seven", "--model", "openai/fake",
            "--api-base", server.base_url, "--tools", "calculator", "--allow-failed-steps"]


def _in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `args` with a pseudo-terminal as stdout and stderr; return the exit code and all it printed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=child, stderr=child, cwd=ROOT, env=env)
    os.close(child)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_the_live_view_in_a_terminal_prints_no_hostile_sequence(tmp_path: Path) -> None:
    with FakeModelServer() as server:
        server.enqueue(*_replies())
        code, out = _in_a_terminal(_run_args(server), _env(tmp_path))
    assert code == 0, out
    assert "It is 42." in out and "Done." in out
    assert "\x1b[" in out  # rich did draw in colour: this is the terminal path
    # The terminal writes `\r\n` for a newline, and rich moves the cursor itself: look for the payload's own.
    assert not [marker for marker in MARKERS if marker != "\r" and marker in out]
    assert "\rEVIL" not in out


def test_piped_output_and_show_carry_no_escape_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeModelServer() as server:
        server.enqueue(*_replies())
        piped = subprocess.run(_run_args(server), capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path), timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "It is 42." in piped.stdout
    run_id = piped.stdout.strip().splitlines()[-1].rpartition("| run ")[2].split()[0]
    monkeypatch.setenv("PLANWEAVE_HOME", str(tmp_path / "home"))
    shown = CliRunner().invoke(app, ["show", run_id])  # in this process: `show` reads the same store
    assert shown.exit_code == 0, shown.output
    assert "It is 42." in shown.output and "plan " in shown.output
    for text in (piped.stdout, piped.stderr, shown.output):
        assert "\x1b" not in text and "\x9b" not in text and "\r" not in text
