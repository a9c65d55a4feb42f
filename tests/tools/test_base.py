"""Tools from typed functions: names, argument schemas and docs taken from the docstring."""

from __future__ import annotations

import pytest

from planweave.tools import ToolDefinitionError, tool


def google(city: str, days: int = 3) -> str:
    """Forecast the weather.

    Uses the public forecast service; answers in metric units.

    Args:
        city: The city's name, e.g.
            `Paris` or `Lyon`.
        days (int): How many days ahead.

    Returns:
        A short forecast.
    """
    return city


def sphinx(city: str, days: int = 3) -> str:
    """Forecast the weather.

    :param city: The city's name.
    :param days: How many days ahead.
    :returns: A short forecast.
    """
    return city


def numpy(city: str, days: int = 3) -> str:
    """Forecast the weather.

    Parameters
    ----------
    city : str
        The city's name.
    days : int
        How many days ahead.
    """
    return city


def test_google_docstring_gives_description_and_argument_help() -> None:
    t = tool(google)
    assert t.description == "Forecast the weather.\n\nUses the public forecast service; answers in metric units."
    props = t.json_schema["properties"]
    assert props["city"]["description"] == "The city's name, e.g. `Paris` or `Lyon`."
    assert props["days"]["description"] == "How many days ahead."


@pytest.mark.parametrize("fn", [sphinx, numpy])
def test_other_docstring_styles(fn: object) -> None:
    t = tool(fn)  # type: ignore[call-overload]
    assert t.description == "Forecast the weather."
    assert t.json_schema["properties"]["city"]["description"] == "The city's name."
    assert t.json_schema["properties"]["days"]["description"] == "How many days ahead."


def test_no_docstring_falls_back_to_the_name() -> None:
    def plain(x: int) -> int:
        return x

    t = tool(plain)
    assert t.description == "plain" and "description" not in t.json_schema["properties"]["x"]


def test_an_untyped_parameter_is_refused_with_the_fix() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolDefinitionError, match=r"parameter `x` has no type annotation; add one, e.g. `x: str`"):
        tool(untyped)
