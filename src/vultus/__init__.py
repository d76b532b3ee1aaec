"""Vultus: self-hosted, accountable face search over photo collections an organisation holds.

``vultus.open(data_dir)`` returns an :class:`Engine` with the same operations as the
``vultus`` command. Importing this package loads no model and opens no file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# onnxruntime (1.29 and later) writes a device id under ~/.cache/Microsoft, a session file
# in the temporary folder, and tries to send usage events, unless this is set. Vultus runs
# offline and writes nowhere but its data directory: switch that off before it is imported.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["open", "Engine", "Settings", "__version__"]

if TYPE_CHECKING:
    from .config import Settings
    from .engine import Engine


def open(data_dir: Any = None, **settings: Any) -> "Engine":  # noqa: A001 - mirrors builtins.open
    """Open (creating if needed) the deployment in ``data_dir`` (default ``./vultus-data``)."""
    from .engine import open as _open

    return _open(data_dir, **settings)


def __getattr__(name: str) -> Any:
    # Lazy re-exports: `import vultus` stays free of numpy, SQLAlchemy and dlib.
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(f"module 'vultus' has no attribute {name!r}")
