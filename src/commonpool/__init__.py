"""commonpool: a shared compute pool for training AI models on donated machines.

The code lives in the top-level folders `scheduler/`, `workers/`, `api/` and
`migrations/`, installed as `commonpool.scheduler`, `commonpool.workers`, ...
"""

__version__ = "0.1.0"
