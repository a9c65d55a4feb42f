"""Text from models and tools, made safe to print to a terminal.

A model's answer, a tool's output or error, a web page's title: any of it can hold escape
sequences that a terminal obeys (move the cursor, rewrite what is on screen, set the window
title, write to the clipboard with OSC 52, make a hyperlink that says one thing and opens
another) or control characters that hide text (`\\r`, backspace). `clean` removes them all,
keeping newlines and tabs; every place the CLI prints model or tool text goes through it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["clean"]

_SEQUENCES: Final = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]?                   # CSI: ESC [ params intermediates final
    | \x9b[0-?]*[ -/]*[@-~]?                     # CSI, the 8-bit form
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])    # OSC, DCS, SOS, PM, APC: a string ...
      [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?      #   ... up to BEL or ST (or the end)
    | \x1b[ -/]*[0-~]?                           # any other escape sequence
    """,
    re.VERBOSE,
)
_CONTROLS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides that reorder text."""


def clean(text: object) -> str:
    """`text` (made a string) without escape sequences and control characters, newlines and tabs kept.

        >>> clean("ok\\x1b[2J\\x1b]0;pwned\\x07 done\\r\\n")
        'ok done\\n'
    """
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():  # the common case: nothing to remove (tab and newline are not printable)
        return value
    return _CONTROLS.sub("", _SEQUENCES.sub("", value))
