"""A small MCP server, written with the official SDK: the kind of server planweave can use.

Run on its own it speaks MCP over stdio (`python examples/mcp_server.py`); examples/mcp_client.py
starts it as a subprocess and plans with its tools. No network needed.
"""

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

server = MCPServer("units", log_level="WARNING")


class Temperature(BaseModel):
    celsius: float
    kelvin: float


@server.tool()
def to_celsius(fahrenheit: float) -> Temperature:
    """Convert a Fahrenheit temperature to Celsius and Kelvin."""
    celsius = round((fahrenheit - 32) * 5 / 9, 2)
    return Temperature(celsius=celsius, kelvin=round(celsius + 273.15, 2))


@server.tool(structured_output=False)
async def count_words(text: str, ctx: Context) -> str:
    """Count the words of a text, reporting progress word by word."""
    words = text.split()
    for i, _ in enumerate(words, 1):
        await ctx.report_progress(i, len(words), f"{i} of {len(words)} words")
    return f"{len(words)} words"


if __name__ == "__main__":
    server.run()
