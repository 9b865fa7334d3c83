"""Every domain's background work, found in `backend/<domain>/jobs.py` (its `JOBS` list): adding
a job is one place, the domain's own."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType

import backend
from backend.platform.work import Cron, Job, Task, Work


def _jobs_modules() -> list[ModuleType]:
    names = [f"backend.{p.name}.jobs" for p in pkgutil.iter_modules(backend.__path__) if p.ispkg]
    return [importlib.import_module(name) for name in names if importlib.util.find_spec(name)]


WORK: list[Work] = [work for module in _jobs_modules() for work in module.JOBS]
JOBS = [work for work in WORK if isinstance(work, Job)]
TASKS = {work.name: work for work in WORK if isinstance(work, Task)}
CRONS = [work for work in WORK if isinstance(work, Cron)]
