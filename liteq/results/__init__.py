"""Actor results: the ``Results`` middleware and the backends it stores them in."""

from ..errors import ResultError, ResultFailure, ResultMissing, ResultTimeout
from .backend import Missing, ResultBackend
from .middleware import Results

__all__ = [
    "Missing", "ResultBackend", "ResultError", "ResultFailure", "ResultMissing",
    "ResultTimeout", "Results",
]
