"""Dependencies shared by every domain's routes."""

from typing import Any

from litestar.datastructures import State
from litestar.di import NamedDependency

from backend.platform.runtime import Runtime

RuntimeDep = NamedDependency[Runtime]


def provide_runtime(state: State) -> Runtime:
    runtime: Any = state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
