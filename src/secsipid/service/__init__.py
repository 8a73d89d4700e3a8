"""``secsipid serve``: the STI-AS / STI-VS HTTP service (ATIS-1000082 API and
secsipidx-compatible endpoints) over the library.

Layers, top down: ``cli`` (the ``serve`` command: flags, validation, the HTTP server and its
workers, SIGHUP), ``app`` (the ASGI application), ``atis`` (ATIS-1000082 shapes and error
bodies), ``state`` (signers, verifier and tokens built from the configuration), ``config``
(TOML file plus flags), ``metrics`` (Prometheus).  The HTTP server is an optional dependency:
``pip install 'secsipid[service]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ServiceApp, create_app
    from .config import ConfigError, ServiceConfig, load_config
    from .state import ServiceState, build_state

__all__ = [
    "ConfigError",
    "ServiceApp",
    "ServiceConfig",
    "ServiceState",
    "build_state",
    "create_app",
    "load_config",
]

_WHERE = {
    "ServiceApp": "app",
    "create_app": "app",
    "ConfigError": "config",
    "ServiceConfig": "config",
    "load_config": "config",
    "ServiceState": "state",
    "build_state": "state",
}


def __getattr__(name: str) -> Any:
    # Lazy: `secsipid --help` registers the serve command without importing the service.
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
