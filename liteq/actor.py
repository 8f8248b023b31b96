"""Dramatiq's module path ``dramatiq.actor``: the actor class and decorator (see ``actors``)."""

from __future__ import annotations

from .actors import Actor, actor

__all__ = ["Actor", "actor"]
