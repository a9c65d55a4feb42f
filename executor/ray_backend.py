"""Tool calls on a Ray cluster, for steps that need more cores (or a GPU) than one process has.

    @tool(num_cpus=2)
    def render(scene: str) -> str: ...

    executor = Executor([render, summarize], backend=RayBackend())        # a local Ray, started on demand
    executor = Executor(tools, backend=RayBackend("ray://head:10001"))   # or a cluster

A tool chooses where it runs. Tools that ask for Ray (`@tool(backend="ray")`, or any declared
resource: `num_cpus`, `num_gpus`, `memory`, `resources={...}`) run as Ray tasks with those
resources; every other tool runs in this process on the `local` backend (a `LocalBackend`),
so a run mixes both and the same workflow still runs without Ray. Only the calls move:
the scheduler, planweave's retries, events, recording and resume stay in this process, so
they behave exactly as with the local backend.

How a call travels: arguments are validated here (a bad argument never costs a task), the
tool's function is pickled once (cloudpickle) and put in Ray's object store, each call is a
task whose arguments and result travel through the object store, and the awaiting step gets
the result back. Cancelling the step (the run is cancelled, or the step's `timeout_s` runs
out) cancels its task with `ray.cancel`: a sync tool gets `KeyboardInterrupt` on the worker,
an async one has its task cancelled. Ray's own task retries are off: a failed attempt is
retried by the step's retry policy, like any other.

Ray is an optional extra (`pip install 'planweave[ray]'`) and is imported only when a
`RayBackend` is built.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor.backends import Backend, LocalBackend
from planweave.tools.base import Tool, ToolContext
from planweave.tools.errors import ConfigError, ToolError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RayBackend", "RayUnavailableError", "RemoteStepError", "ToolShippingError"]

INSTALL_HINT = "install it with `pip install 'planweave[ray]'`"


class RayUnavailableError(ConfigError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


class ToolShippingError(ToolError):
    """A tool's function cannot be pickled here, or unpickled on a Ray worker. Permanent."""

    permanent = True


class RemoteStepError(ToolError):
    """Ray lost the call (its worker or node died, its result was lost). Retryable."""


def import_ray() -> ModuleType:
    """The `ray` module, or `RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"the Ray backend needs Ray, which is not installed; {INSTALL_HINT}.") from exc
    return ray


class RayBackend(Backend):
    """Runs the tools that ask for Ray as Ray tasks, and every other tool on `local`.

    Args:
        address: the cluster: `"ray://HOST:PORT"` (Ray client), `"HOST:PORT"` or `"auto"` (join
            it as a driver). None: the Ray this process already initialised, else a new local
            one (honouring `RAY_ADDRESS`).
        local: the backend for the other tools (default: a new `LocalBackend`).
        init_kwargs: more `ray.init` arguments (`runtime_env`, `namespace`, `num_cpus` for a
            local Ray, ...), used only when this backend initialises Ray.

    Ray is initialised on the first remote call, or earlier by `connect()` (the command line
    connects before a run starts, so a wrong address fails before any step runs). `aclose()`
    cancels the calls still in flight and shuts Ray down only if this backend started it.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        local: Backend | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.ray = import_ray()
        self.address = address
        self.local = local if local is not None else LocalBackend()
        self.init_kwargs = dict(init_kwargs or {})
        self._connect_lock = threading.Lock()
        self._connected = False
        self._started_ray = False
        self._task: Any = None
        self._shipped: dict[Tool, tuple[Any, Any]] = {}
        """Per tool: its pickled function in the object store, and the task with its resources."""
        self._in_flight: set[Any] = set()
        self._chasers: set[asyncio.Task[None]] = set()

    def connect(self) -> None:
        """Initialise Ray (or join the cluster) now; blocks while a local Ray starts."""
        with self._connect_lock:
            if self._connected:
                return
            ray = self.ray
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **self.init_kwargs}
                if self.address is not None:
                    kwargs["address"] = self.address
                try:
                    ray.init(**kwargs)
                except ImportError as exc:  # `ray://` needs Ray's client (grpcio), not in planweave[ray]
                    raise RayUnavailableError(
                        f"cannot reach the Ray cluster at `{self.address}`: Ray's client is not installed ({exc}); "
                        "install it with `pip install 'ray[client]'`, or join the cluster as `HOST:PORT`."
                    ) from exc
                except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                    where = f"the Ray cluster at `{self.address}`" if self.address else "a local Ray"
                    raise RayUnavailableError(
                        f"cannot start or reach {where} ({exc}); check the address "
                        "(`ray://HOST:PORT` for a Ray client server, `HOST:PORT` for the head node)."
                    ) from exc
                self._started_ray = True

            @ray.remote(max_retries=0, retry_exceptions=False)  # type: ignore[untyped-decorator]
            def planweave_tool(fn_pickled: bytes, is_async: bool, name: str, kwargs: dict[str, Any]) -> Any:
                return _run_on_worker(fn_pickled, is_async, name, kwargs)

            self._task = planweave_tool
            self._connected = True

    async def invoke(self, tool: Tool, args: Mapping[str, Any], context: ToolContext) -> Any:
        if tool.backend != "ray":
            return await self.local.invoke(tool, args, context)
        kwargs = tool.bind(args, _portable(context))
        if not self._connected:
            self.connect()
        fn_ref, task = self._shipped.get(tool) or self._ship(tool)
        ref = task.remote(fn_ref, tool.is_async, tool.name, kwargs)
        self._in_flight.add(ref)
        try:
            value = await ref
        except asyncio.CancelledError:
            self._cancel(ref)  # the step was cancelled or timed out: so is its task
            raise
        except self.ray.exceptions.RayTaskError as exc:  # the tool raised: raise what it raised
            cause = exc.cause
            raise cause if isinstance(cause, Exception) else RemoteStepError(str(exc), tool=tool.name) from None
        except self.ray.exceptions.RayError as exc:  # worker or node died, object lost, task cancelled
            raise RemoteStepError(
                f"tool `{tool.name}`: Ray lost the call ({type(exc).__name__}: {exc}); "
                "the step's retry policy decides whether it runs again.",
                tool=tool.name,
            ) from exc
        finally:
            self._in_flight.discard(ref)
        return tool.to_output(value)

    def _cancel(self, ref: Any) -> None:
        """Cancel a task, and keep at it until it ends: a cancel Ray receives while a task is
        still being handed to its worker can be lost (seen on a loaded machine), so it is sent
        again after 1, 2, 4 and 8 s, then forced (the worker process is killed) after 15 s more."""
        self.ray.cancel(ref)
        loop = asyncio.get_running_loop()

        async def chase() -> None:
            done = asyncio.wrap_future(ref.future())
            for delay in (1.0, 2.0, 4.0, 8.0, 15.0):
                finished, _ = await asyncio.wait({done}, timeout=delay)
                if finished:
                    done.exception()  # (the task's cancellation, retrieved: not logged as unhandled)
                    return
                self.ray.cancel(ref, force=delay == 15.0)

        task = loop.create_task(chase(), name="planweave-ray-cancel")
        self._chasers.add(task)
        task.add_done_callback(self._chasers.discard)

    def _ship(self, tool: Tool) -> tuple[Any, Any]:
        """Pickle the tool's function once, put it in the object store, and size its task."""
        from ray import cloudpickle

        module = sys.modules.get(getattr(tool.fn, "__module__", "") or "")
        if module is not None and not _importable(module):
            # Loaded from a file by path (a workflow `.py`, a test): workers could not import
            # it by name, so its functions travel by value.
            cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
        try:
            pickled = cloudpickle.dumps(tool.fn)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ToolShippingError(
                f"tool `{tool.name}` cannot be sent to Ray workers: its function does not pickle "
                f"({type(exc).__name__}: {exc}); define it at module level and keep unpicklable "
                "objects (locks, open files, clients) out of its closure, or make it a local tool.",
                tool=tool.name,
            ) from exc
        options: dict[str, Any] = {"name": f"planweave:{tool.name}"}
        custom = {k: float(v) for k, v in tool.resources.items() if k not in ("num_cpus", "num_gpus", "memory")}
        for key in ("num_cpus", "num_gpus", "memory"):
            if key in tool.resources:
                options[key] = tool.resources[key]
        if custom:
            options["resources"] = custom
        shipped = (self.ray.put(pickled), self._task.options(**options))
        self._shipped[tool] = shipped
        return shipped

    async def aclose(self) -> None:
        for ref in list(self._in_flight):
            self.ray.cancel(ref)
        self._in_flight.clear()
        for chaser in list(self._chasers):
            chaser.cancel()
        self._shipped.clear()
        await self.local.aclose()
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._started_ray = False
        self._connected = False


def _importable(module: ModuleType) -> bool:
    """Whether a worker can import `module` by its name: its top-level package is on `sys.path`.

    Asked of the path finder, not `importlib.util.find_spec`, which answers from `sys.modules`
    and so says yes for a module loaded from a file under a made-up name."""
    name = module.__name__
    if name == "__main__":
        return False
    try:
        spec = importlib.machinery.PathFinder.find_spec(name.partition(".")[0], sys.path)
    except (ImportError, ValueError):
        return False
    return spec is not None


def _portable(context: ToolContext) -> ToolContext:
    """The context with plain dicts (a run's live read-only views do not pickle)."""
    if not context.run_id and not context.step_id:
        return context
    return ToolContext(
        run_id=context.run_id,
        step_id=context.step_id,
        attempt=context.attempt,
        goal=context.goal,
        inputs=dict(context.inputs),
        outputs=dict(context.outputs),
        item=context.item,
    )


_loaded: dict[bytes, Any] = {}
"""On a worker: functions already unpickled, by their pickle (a worker runs many calls)."""


def _run_on_worker(fn_pickled: bytes, is_async: bool, name: str, kwargs: dict[str, Any]) -> Any:
    """The body of every Ray task: load the tool's function and call it (async ones in a loop of their own)."""
    fn = _loaded.get(fn_pickled)
    if fn is None:
        from ray import cloudpickle

        try:
            fn = cloudpickle.loads(fn_pickled)
        except ImportError as exc:
            raise ToolShippingError(
                f"tool `{name}` cannot be loaded on the Ray worker ({exc}); install its module on the "
                "workers, or ship it with `RayBackend(init_kwargs={'runtime_env': {'py_modules': [...]}})`.",
                tool=name,
            ) from None
        if len(_loaded) > 256:
            _loaded.clear()
        _loaded[fn_pickled] = fn
    if is_async:
        return asyncio.run(fn(**kwargs))
    return fn(**kwargs)
