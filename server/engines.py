"""A gateway's upstreams: which model name leads where, and whether it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.config import ModelConfig, ModelsFile
from server.engine_process import EngineProcess
from server.errors import ApiError
from server.supervisor import EngineState, EngineSupervisor, watch_remote
from server.upstream import Upstream

logger = logging.getLogger(__name__)

# Builds the process that serves `model` from `checkpoint`; tests swap in fakes.
ProcessFactory = Callable[[ModelConfig, str, Path, Path], EngineProcess]


@dataclass
class ModelStatus:
    name: str
    kind: str
    state: str
    num_restarts: int = 0
    pid: int | None = None
    ready_since: float | None = None


class Engines:
    """Starts, supervises and looks up every configured model's upstream."""

    def __init__(
        self,
        models: ModelsFile,
        checkpoints: dict[str, str],
        logs_dir: Path,
        make_process: ProcessFactory = EngineProcess,
    ) -> None:
        self.models = models
        # Unix socket paths must stay under ~100 bytes: keep them out of $HOME.
        self._runtime = tempfile.TemporaryDirectory(prefix="tokenmill-")
        runtime_dir = Path(self._runtime.name)
        self._supervisors: dict[str, EngineSupervisor] = {}
        self._remotes: dict[str, Upstream] = {}
        self._by_name: dict[str, ModelConfig] = {}
        for model in models.models:
            for name in model.served_names:
                self._by_name[name] = model
            if model.is_remote:
                self._remotes[model.name] = Upstream.for_remote(model)
                continue
            checkpoint = checkpoints[model.name]

            def factory(
                model: ModelConfig = model, checkpoint: str = checkpoint
            ) -> EngineProcess:
                return make_process(
                    model, checkpoint, runtime_dir, logs_dir / f"{model.name}.log"
                )

            self._supervisors[model.name] = EngineSupervisor(
                factory, model.engine.startup_timeout_s
            )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every engine and remote probe in the background."""
        for supervisor in self._supervisors.values():
            self._tasks.append(asyncio.create_task(supervisor.run()))
        for upstream in self._remotes.values():
            self._tasks.append(asyncio.create_task(watch_remote(upstream)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for upstream in self._remotes.values():
            await upstream.close()
        self._runtime.cleanup()

    def resolve(self, name: str) -> Upstream | None:
        """The ready upstream for `name`; None if unknown; ApiError 503 if not ready."""
        model = self._by_name.get(name)
        if model is None:
            return None
        upstream = self._remotes.get(model.name)
        if upstream is None:
            upstream = self._supervisors[model.name].upstream
        if upstream is None or not upstream.is_ready:
            raise ApiError(
                503,
                f"model {model.name!r} is not ready yet ({self._state(model)}); "
                "retry shortly, GET /ready tells when every model is",
                code="engine_not_ready",
                retry_after_s=5,
            )
        return upstream

    def statuses(self) -> list[ModelStatus]:
        statuses = []
        for model in self.models.models:
            supervisor = self._supervisors.get(model.name)
            statuses.append(
                ModelStatus(
                    name=model.name,
                    kind="remote" if model.is_remote else "local",
                    state=self._state(model),
                    num_restarts=supervisor.num_restarts if supervisor else 0,
                    pid=supervisor.process.pid
                    if supervisor and supervisor.process
                    else None,
                    ready_since=supervisor.ready_since if supervisor else None,
                )
            )
        return statuses

    def _state(self, model: ModelConfig) -> str:
        if model.is_remote:
            ready = self._remotes[model.name].is_ready
            return EngineState.READY if ready else EngineState.UNREACHABLE
        return self._supervisors[model.name].state
