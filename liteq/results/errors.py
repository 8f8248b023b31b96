"""Dramatiq's module path ``dramatiq.results.errors``: the result errors (in ``liteq.errors``)."""

from __future__ import annotations

from ..errors import ResultError, ResultFailure, ResultMissing, ResultTimeout

__all__ = ["ResultError", "ResultFailure", "ResultMissing", "ResultTimeout"]
