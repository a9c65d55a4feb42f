"""Drawing a plan graph: a tree, Mermaid, Graphviz DOT or a PNG, coloured by run state.

    from planweave.planner.cli.render import to_mermaid, tree_text

    print(tree_text(plan))                          # steps in dependency order, with tools, args, deps
    print(to_mermaid(plan, states=result.steps))    # `flowchart TD`, one colour per step state

`plan` is a `Plan`, a list of `Step`s (or step dicts), or a `PlanGraph`. `states` maps
step ids to a state: a `StepResult`, a `StepState`, a dict with `status`, `duration_s`
and `attempts`, or just the status string. Steps missing from `states` are pending.

Text formats need nothing beyond planweave's own dependencies (no `dot` binary either:
DOT is written as text). PNG draws with matplotlib, an optional extra imported on use.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from planweave.executor.graph import PlanGraph, compile_condition
from planweave.executor.plan import Plan, Step
from planweave.executor.refs import RESERVED_ROOTS, Ref, RefSyntaxError, find_refs, parse
from planweave.planner.cli.terminal import clean
from planweave.executor.subworkflow import ChildRunStarted
from planweave.planner.errors import ConfigError
from planweave.planner.events import Decision, LLMCalled, PlanUpdated
from planweave.planner.state import PlannerState

if TYPE_CHECKING:
    import networkx as nx

    from planweave.executor.events import RunEvent
    from planweave.executor.result import StepResult
    from planweave.executor.state import StepProgress
    from planweave.executor.store import RunRecord

__all__ = [
    "GraphFormat",
    "STATE_STYLES",
    "StateStyle",
    "StepState",
    "args_summary",
    "format_seconds",
    "plan_tree",
    "render_plan",
    "run_tree",
    "step_state",
    "to_dot",
    "to_mermaid",
    "to_png",
    "tree_text",
]

GraphFormat = Literal["tree", "mermaid", "dot", "png"]


@dataclass(frozen=True, slots=True)
class StateStyle:
    """How one step state looks: a symbol and rich style for terminals, colours for images."""

    symbol: str
    rich: str
    fill: str
    stroke: str


STATE_STYLES: dict[str, StateStyle] = {
    "pending": StateStyle("○", "dim", "#eeeeee", "#757575"),
    "ready": StateStyle("◔", "cyan", "#e0f4f8", "#00838f"),
    "running": StateStyle("▶", "bold blue", "#d6e6fb", "#1565c0"),
    "succeeded": StateStyle("✓", "green", "#d1f2d9", "#2e7d32"),
    "failed": StateStyle("✗", "bold red", "#f8d7da", "#c62828"),
    "skipped": StateStyle("↷", "yellow", "#fff3cd", "#b28704"),
    "cancelled": StateStyle("⊘", "magenta", "#eadcf2", "#7b1fa2"),
    "waiting": StateStyle("✋", "bold yellow", "#fff3cd", "#b28704"),
}
"""Every step state (see `planweave.executor.result.StepStatus`) and how it is drawn."""

# Mermaid and DOT get one class per state a reader cares about; `ready` draws as pending.
_DRAWN_STATES = ("succeeded", "failed", "skipped", "cancelled", "running", "pending")


@dataclass(frozen=True, slots=True)
class StepState:
    """What a drawing shows of a step's run: its state, how long it took, how many attempts."""

    status: str
    duration_s: float | None = None
    attempts: int | None = None

    @property
    def drawn(self) -> str:
        """The state class used for colours (`ready` and unknown states draw as `pending`)."""
        return self.status if self.status in _DRAWN_STATES else "pending"

    def describe(self) -> str:
        """`succeeded 0.41s, 2 attempts`: the state in words, for labels."""
        text = self.status
        if self.duration_s is not None:
            text += f" {format_seconds(self.duration_s)}"
        if self.attempts is not None and self.attempts > 1:
            text += f", {self.attempts} attempts"
        return text


States = Mapping[str, Any]
"""Step id -> `StepState`, `StepResult`, a dict with `status` (and `duration_s`, `attempts`) or a status."""

PlanLike = Plan | PlanGraph | Iterable[Step | Mapping[str, Any]]


def format_seconds(s: float) -> str:
    """`3.0ms`, `0.42s`, `2m05.0s`."""
    if s < 0.01:
        return f"{s * 1000:.1f}ms"
    return f"{s:.2f}s" if s < 60 else f"{int(s // 60)}m{s % 60:04.1f}s"


def step_state(value: Any) -> StepState:
    """Normalise one entry of `states` (see the module docstring)."""
    if isinstance(value, StepState):
        return value
    if isinstance(value, str):
        return StepState(value)
    if isinstance(value, Mapping):
        return StepState(str(value.get("status", "pending")), value.get("duration_s"), value.get("attempts"))
    return StepState(
        str(getattr(value, "status", "pending")), getattr(value, "duration_s", None), getattr(value, "attempts", None)
    )


# --- the plan as nodes -----------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    step: Step
    deps: list[str]
    """Every step this one needs, in the order written (possibly outside the drawn plan)."""
    state: StepState | None


def _refs_of(step: Step) -> list[Ref]:
    refs: list[Ref] = []
    try:
        refs += find_refs(step.args)
        if step.when is not None:
            refs += compile_condition(step.when)[1]
        if step.for_each is not None:
            refs += [p for p in parse(step.for_each) if isinstance(p, Ref)]
    except RefSyntaxError:
        pass  # an invalid plan still draws; its references are shown as written
    return refs


def _nodes(plan: PlanLike, states: States | None) -> list[_Node]:
    pairs: list[tuple[Step, list[str] | None]]
    if isinstance(plan, PlanGraph):
        pairs = []
        for c in plan.steps.values():  # the graph knows the deps; keep them in written order
            written = _written_deps(c.step)
            pairs.append((c.step, [d for d in written if d in c.deps] + sorted(c.deps.difference(written))))
    else:
        steps = plan.steps if isinstance(plan, Plan) else plan
        pairs = [(s if isinstance(s, Step) else Step.model_validate(s), None) for s in steps]
    nodes = []
    for step, deps in pairs:
        state = step_state(states[step.id]) if states is not None and step.id in states else None
        if states is not None and state is None:
            state = StepState("pending")
        nodes.append(_Node(step, deps if deps is not None else _written_deps(step), state))
    return nodes


def _written_deps(step: Step) -> list[str]:
    deps = dict.fromkeys(d for d in step.depends_on if d != step.id)
    for ref in _refs_of(step):
        if ref.root not in RESERVED_ROOTS and ref.root != step.id:
            deps[ref.root] = None
    return list(deps)


def _digraph(nodes: list[_Node]) -> nx.DiGraph[str]:
    # networkx is imported where a graph is drawn: the live view imports this module for its
    # styles, and a `--quiet` run draws nothing.
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(n.step.id for n in nodes)
    g.add_edges_from((d, n.step.id) for n in nodes for d in n.deps if d in g)
    return g


def _ordered(nodes: list[_Node]) -> list[_Node]:
    """Dependency order, ties kept in plan order; plan order when there is a cycle."""
    pos = {n.step.id: i for i, n in enumerate(nodes)}
    by_id = {n.step.id: n for n in nodes}
    import networkx as nx

    try:
        order = list(nx.lexicographical_topological_sort(_digraph(nodes), key=pos.__getitem__))
    except nx.NetworkXUnfeasible:
        return nodes
    return [by_id[sid] for sid in order]


def _layers(nodes: list[_Node]) -> list[list[str]]:
    """Layers for drawing top-down: each step one layer below the deepest step it needs."""
    import networkx as nx

    g = _digraph(nodes)
    try:
        generations = [list(gen) for gen in nx.topological_generations(g)]
    except nx.NetworkXUnfeasible:
        return [[n.step.id] for n in nodes]
    pos = {n.step.id: i for i, n in enumerate(nodes)}
    # Order each layer by where its parents sit (one barycentre pass keeps crossings down).
    placed: dict[str, float] = {}
    layers = []
    for gen in generations:
        def key(sid: str) -> tuple[float, int]:
            parents = [placed[p] for p in g.predecessors(sid) if p in placed]
            return (sum(parents) / len(parents) if parents else float(pos[sid]), pos[sid])

        gen.sort(key=key)
        for i, sid in enumerate(gen):
            placed[sid] = i - (len(gen) - 1) / 2
        layers.append(gen)
    return layers


def _value_text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(clean(text).split())
    if isinstance(value, str):
        text = json.dumps(text, ensure_ascii=False)[1:-1]
        text = f'"{text}"'
    return text if len(text) <= limit else text[: limit - 1] + "…"


def args_summary(args: Mapping[str, Any], limit: int = 60) -> str:
    """`url="https://…", n=3`: the arguments on one line, each value and the whole cut to fit."""
    text = ", ".join(f"{k}={_value_text(v, 32)}" for k, v in args.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- tree --------------------------------------------------------------------------------------


def plan_tree(plan: PlanLike, states: States | None = None, *, title: str = "plan") -> Tree:
    """A rich `Tree`: one branch per step in dependency order, with tool, arguments and needs."""
    nodes = _ordered(_nodes(plan, states))
    tree = Tree(Text.assemble((title, "bold"), f" ({len(nodes)} step{'s' if len(nodes) != 1 else ''})"))
    for n in nodes:
        label = Text.assemble(
            (n.step.id, "bold"), "  ", (n.step.action, "cyan"), ("(", "dim"), (args_summary(n.step.args), "dim"),
            (")", "dim"),
        )
        if n.deps:
            label.append(f"  ← {', '.join(n.deps)}", "italic")
        if n.state is not None:
            style = STATE_STYLES.get(n.state.status, STATE_STYLES["pending"])
            label.append(f"  {style.symbol} {n.state.describe()}", style.rich)
        branch = tree.add(label)
        if n.step.when is not None:
            branch.add(Text(f"when {clean(n.step.when)}", "dim"))
        if n.step.for_each is not None:
            branch.add(Text(f"for each {clean(n.step.for_each)}", "dim"))
    return tree


def tree_text(plan: PlanLike, states: States | None = None, *, width: int = 100, title: str = "plan") -> str:
    """`plan_tree` as plain text (no colour codes), for logs, files and tests."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False, highlight=False).print(
        plan_tree(plan, states, title=title)
    )
    return out.getvalue()


@dataclass(slots=True)
class _RoundLayout:
    """One planning round as `planweave show` draws it: what it planned and, in the order the
    tree shows them, its LLM calls and step ids."""

    plan: PlanUpdated
    entries: list[LLMCalled | str]
    decisions: list[Decision]


class _RunTreeState(PlannerState):
    """The run's one fold (`PlannerState`), plus where each LLM call goes in the tree: a round's
    planning calls come before the round itself (they are recorded before its `PlanUpdated`), and
    a tool's call made while the first plan still streams goes after that round's steps."""

    def __init__(self) -> None:
        super().__init__()
        self.layout: list[_RoundLayout] = []
        self.waiting_calls: list[LLMCalled] = []
        """Planning calls of the round to come."""
        self.early_calls: list[LLMCalled] = []
        """Tools' calls made before the first round was planned."""
        self.by_step: dict[str, list[LLMCalled | ChildRunStarted]] = {}
        """A workflow's `llm` calls and child runs, under the step that made them."""

    def apply(self, event: RunEvent) -> None:
        match event:
            case LLMCalled() if event.step_id and not self.layout:
                self.by_step.setdefault(event.step_id, []).append(event)
            case ChildRunStarted():
                self.by_step.setdefault(event.step_id, []).append(event)
            case LLMCalled():
                if event.purpose == "plan":
                    self.waiting_calls.append(event)
                elif not self.layout:
                    self.early_calls.append(event)
                else:
                    self.layout[-1].entries.append(event)
            case PlanUpdated():
                entries: list[LLMCalled | str] = [*self.waiting_calls, *event.step_ids, *self.early_calls]
                self.layout.append(_RoundLayout(event, entries, []))
                self.waiting_calls, self.early_calls = [], []
            case Decision() if self.layout and event.action != "finish":
                self.layout[-1].decisions.append(event)
        super().apply(event)


def run_tree(record: RunRecord) -> Tree:
    """A recorded run (`planweave.executor.store.RunRecord`) as a tree, for `planweave show`.

    The root says the run's status, duration and goal; under it each planning round with
    its LLM calls (tokens, cost) and its steps (state, attempts, time, output or error),
    then the usage, the answer and the error. A workflow run has its steps under the root.
    """
    summary = record.summary
    state = record.state(_RunTreeState)
    status = STATE_STYLES.get(summary.status)
    root = Tree(Text.assemble(
        (f"run {summary.id}", "bold"), f"  {summary.kind} {summary.name}".rstrip(), "  ",
        (summary.status, status.rich if status else "bold"),
        f" in {format_seconds(summary.duration_s)}" if summary.duration_s is not None else "",
    ))
    if summary.goal:
        root.add(Text(f"goal: {clean(summary.goal)}", "italic"))
    placed: set[str] = set()
    for planned in state.layout:
        label = Text(f"round {planned.plan.round}", "bold")
        if planned.plan.rationale:
            label.append(f": {clean(planned.plan.rationale)}", "not bold")
        for decision in planned.decisions:
            label.append(f"  → {decision.action}" + (f": {clean(decision.reason)}" if decision.reason else ""), "yellow")
        branch = root.add(label)
        for entry in planned.entries:
            if isinstance(entry, LLMCalled):
                branch.add(_call_label(entry))
            elif entry in state.steps and entry not in placed:
                placed.add(entry)
                _add_step(branch, state.steps[entry], state)
    for sid, step in state.steps.items():
        if sid not in placed:
            node = _add_step(root, step, state)
            for made in state.by_step.get(sid, ()):
                node.add(_call_label(made) if isinstance(made, LLMCalled) else Text(
                    f"child run {made.child_run_id} ({made.workflow}): planweave show {made.child_run_id}", "dim"))
    for call in [*state.early_calls, *state.waiting_calls]:
        root.add(_call_label(call))
    if summary.kind == "planner" or summary.llm_calls:
        cost = "unknown" if summary.cost_usd is None else f"${summary.cost_usd:.4f}"
        cached = sum(int(e.get("cached_input_tokens") or 0) for e in record.events if e.get("kind") == LLMCalled.kind)
        root.add(Text(f"LLM: {summary.llm_calls} calls, {summary.total_tokens} tokens{_cached(cached)}, cost {cost}", "dim"))
    if summary.answer:
        root.add(Text.assemble(("answer: ", "bold"), clean(summary.answer)))
    if summary.error:
        root.add(Text(f"error: {clean(summary.error)}", "red"))
    return root


def _add_step(parent: Tree, step: StepProgress, state: _RunTreeState) -> Tree:
    """The step's line, and under it what a person was asked and answered (or what it waits for)."""
    node = parent.add(_step_label(step))
    answer = state.answers.get(step.id)
    if answer is not None:
        said = {"approve": "approved", "edit": f"approved with {json.dumps(answer.args, ensure_ascii=False)}",
                "deny": f"denied: {answer.reason}" if answer.reason else "denied",
                "answer": f"answered: {answer.text}"}[answer.action]
        node.add(Text(clean(f"person: {said}" + (f" (by {answer.by})" if answer.by else "")), "yellow"))
    request = state.requests.get(step.id)
    if request is not None:
        node.add(Text(clean(f"waits: {request.describe()}; answer with {request.how_to_answer()}"), "bold yellow"))
    return node


def _call_label(call: LLMCalled) -> Text:
    cost = "cost unknown" if call.cost_usd is None else f"${call.cost_usd:.4f}"
    tokens = f"{call.input_tokens + call.output_tokens} tokens{_cached(call.cached_input_tokens)}"
    label = Text(f"LLM {call.purpose}: {call.model}, {tokens}, {cost}", "dim")
    if call.error:
        label.append(f", error: {clean(call.error)}", "red")
    return label


def _cached(tokens: int) -> str:
    """How many input tokens came from the provider's prompt cache, when any did."""
    return f" ({tokens} cached)" if tokens else ""


def _step_label(step: StepProgress) -> Text:
    style = STATE_STYLES.get(step.status, STATE_STYLES["pending"])
    label = Text.assemble(
        (f"{style.symbol} ", style.rich), (step.id, "bold"), "  ", (step.tool, "cyan"), "  ", (step.status, style.rich),
    )
    if step.attempt > 1:
        label.append(f"  {step.attempt} attempts")
    if step.started_at is not None and step.finished_at is not None:
        label.append(f"  {format_seconds(step.finished_at - step.started_at)}")
    if step.status == "succeeded":
        output = step.output
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
        label.append(f"  {_short(' '.join(text.split()), 60)}", "dim")
    elif step.status in ("failed", "skipped", "cancelled") and step.error:
        label.append(f"  {_short(' '.join(step.error.split()), 100)}", "red" if step.status == "failed" else "dim")
    return label


# --- Mermaid -----------------------------------------------------------------------------------

_MERMAID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,=+*/?!'()[]{}@$~^")


def _mermaid_text(text: str) -> str:
    # Everything outside a plain set becomes an entity code (`#35;`), so no label can close
    # its quotes, start a comment, inject HTML or look like a `style ...:#...;` line to
    # Mermaid's pre-processor. Other letters (é, 中) are safe and kept.
    return "".join(
        c if c in _MERMAID_SAFE or (c.isalpha() and ord(c) > 127) else f"#{ord(c)};"
        for c in " ".join(text.split())
    )


def to_mermaid(plan: PlanLike, states: States | None = None, *, direction: str = "TD") -> str:
    """A Mermaid `flowchart`: one box per step (id, tool, arguments, state), arrows from needs.

    Node ids are `s0`, `s1`, ... (so any step id is valid Mermaid); the step id is in the label.
    With `states`, each box gets the class of its state, coloured by a `classDef`.
    """
    nodes = _ordered(_nodes(plan, states))
    mid = {n.step.id: f"s{i}" for i, n in enumerate(nodes)}
    lines = [f"flowchart {direction}"]
    for n in nodes:
        parts = [_mermaid_text(n.step.id), _mermaid_text(n.step.action)]
        if n.step.args:
            parts.append(_mermaid_text(args_summary(n.step.args, 40)))
        if n.state is not None:
            parts.append(_mermaid_text(n.state.describe()))
        lines.append(f'    {mid[n.step.id]}["{"<br/>".join(parts)}"]')
    for n in nodes:
        for dep in n.deps:
            if dep in mid:
                lines.append(f"    {mid[dep]} --> {mid[n.step.id]}")
    if states is not None:
        for state in _DRAWN_STATES:
            s = STATE_STYLES[state]
            lines.append(f"    classDef {state} fill:{s.fill},stroke:{s.stroke},color:#212121")
        for state in _DRAWN_STATES:
            ids = [mid[n.step.id] for n in nodes if n.state is not None and n.state.drawn == state]
            if ids:
                lines.append(f"    class {','.join(ids)} {state}")
    return "\n".join(lines) + "\n"


# --- Graphviz DOT ------------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    # A quoted DOT string; in labels (escString) a doubled backslash is one backslash, so
    # `\N`, `\G` and friends in step text stay literal.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(plan: PlanLike, states: States | None = None, *, name: str = "plan") -> str:
    """Graphviz DOT text (render it with `dot -Tsvg`); boxes coloured by state when `states` are given."""
    nodes = _ordered(_nodes(plan, states))
    known = {n.step.id for n in nodes}
    lines = [
        f"digraph {_dot_string(name)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#424242", fontname="Helvetica"];',
        '    edge [color="#616161"];',
    ]
    for n in nodes:
        label = [n.step.id, n.step.action]
        if n.step.args:
            label.append(args_summary(n.step.args, 40))
        attrs = [f"label={_dot_string(chr(10).join(label + ([n.state.describe()] if n.state else [])))}"]
        if n.state is not None:
            s = STATE_STYLES[n.state.drawn]
            attrs += [f'fillcolor="{s.fill}"', f'color="{s.stroke}"']
        lines.append(f"    {_dot_string(n.step.id)} [{', '.join(attrs)}];")
    for n in nodes:
        for dep in n.deps:
            if dep in known:
                lines.append(f"    {_dot_string(dep)} -> {_dot_string(n.step.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- PNG ---------------------------------------------------------------------------------------

PNG_EXTRA_HINT = (
    "PNG output needs `matplotlib`, which is not installed; install it with "
    "`pip install 'planweave[png]'` (or `pip install matplotlib`), or choose another format: "
    "`tree`, `mermaid` or `dot`."
)


def to_png(plan: PlanLike, states: States | None = None, *, dpi: int = 110, legend: bool = True) -> bytes:
    """The graph as a PNG image, drawn top-down in dependency layers with matplotlib.

    Needs the `png` extra (`pip install 'planweave[png]'`); raises `ConfigError` saying so
    when matplotlib is missing. With `states`, a legend of the state colours is drawn below
    unless `legend=False`. Very large plans are squeezed to at most 60 inches a side.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise ConfigError(PNG_EXTRA_HINT) from exc

    nodes = _nodes(plan, states)
    by_id = {n.step.id: n for n in nodes}
    layers = _layers(nodes)
    widest = max((len(layer) for layer in layers), default=1)
    legend = legend and states is not None
    legend_h = 0.5 if legend else 0.0
    fig = Figure(
        figsize=(min(max(5.6 if legend else 3.0, 2.4 * widest), 60.0), min(max(1.6, 1.25 * len(layers)), 60.0) + legend_h),
        dpi=dpi,
    )
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.01 + legend_h / fig.get_figheight(), 0.98, 0.98 - legend_h / fig.get_figheight()))
    ax.set_axis_off()
    ax.set_xlim(-widest / 2, widest / 2)
    ax.set_ylim(-max(len(layers), 1) + 0.5, 0.5)

    boxes = {}
    for depth, layer in enumerate(layers):
        for i, sid in enumerate(layer):
            n = by_id[sid]
            lines = [_short(sid, 24), _short(n.step.action, 24)]
            if n.state is not None:
                lines.append(_short(n.state.describe(), 28))
            style = STATE_STYLES[n.state.drawn] if n.state is not None else None
            boxes[sid] = ax.text(
                i - (len(layer) - 1) / 2, -depth, "\n".join(lines), ha="center", va="center", fontsize=8,
                zorder=3, color="#212121",
                bbox={
                    "boxstyle": "round,pad=0.45",
                    "facecolor": style.fill if style else "#ffffff",
                    "edgecolor": style.stroke if style else "#424242",
                    "linewidth": 1.4,
                },
            )
    # Arrows are clipped to the boxes they join, which have a size only once drawn.
    fig.canvas.draw()
    for n in nodes:
        for dep in n.deps:
            if dep in boxes:
                ax.annotate(
                    "", xy=boxes[n.step.id].get_position(), xytext=boxes[dep].get_position(), zorder=1,
                    arrowprops={
                        "arrowstyle": "-|>", "color": "#616161", "linewidth": 1.0, "shrinkA": 1, "shrinkB": 1,
                        "patchA": boxes[dep].get_bbox_patch(), "patchB": boxes[n.step.id].get_bbox_patch(),
                    },
                )
    if legend:
        fig.legend(
            handles=[Patch(facecolor=STATE_STYLES[s].fill, edgecolor=STATE_STYLES[s].stroke, label=s)
                     for s in _DRAWN_STATES],
            loc="lower center", ncol=len(_DRAWN_STATES), fontsize=7, frameon=False,
        )
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, facecolor="white")
    return out.getvalue()


def _short(text: str, limit: int) -> str:
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- one entry point for the CLI ---------------------------------------------------------------


def render_plan(plan: PlanLike, fmt: GraphFormat, states: States | None = None, *, width: int = 100) -> str | bytes:
    """The plan in `fmt`: text for `tree`, `mermaid` and `dot`; PNG bytes for `png`."""
    if fmt == "tree":
        return tree_text(plan, states, width=width)
    if fmt == "mermaid":
        return to_mermaid(plan, states)
    if fmt == "dot":
        return to_dot(plan, states)
    if fmt == "png":
        return to_png(plan, states)
    raise ConfigError(f"unknown graph format `{fmt}`; use `tree`, `mermaid`, `dot` or `png`.")
