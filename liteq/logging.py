"""``get_logger``: the logger naming scheme actors use, for application code to share."""

from __future__ import annotations

import logging


def get_logger(module: str, name: str | type | None = None) -> logging.Logger:
    """The logger ``module.name`` (``name`` may be a class, whose name is used), or ``module``."""
    if name is None:
        return logging.getLogger(module)
    if isinstance(name, type):
        name = name.__name__
    return logging.getLogger(f"{module}.{name}")
