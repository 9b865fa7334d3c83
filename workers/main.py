"""arq's entry point: `arq workers.main.WorkerSettings` runs a worker, `--check` checks one.

Settings are read at import, so a missing REDIS_URL stops the worker with a message naming it.
"""

from backend.settings import get_settings
from workers.settings import worker_settings

WorkerSettings = worker_settings(get_settings())
