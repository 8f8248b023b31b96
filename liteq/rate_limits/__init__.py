"""Rate limits and barriers shared by processes through a backend (SQLite by default)."""

from ..errors import RateLimitExceeded
from .backend import RateLimiterBackend
from .barrier import Barrier
from .bucket import BucketRateLimiter
from .concurrent import ConcurrentRateLimiter
from .rate_limiter import RateLimiter
from .window import WindowRateLimiter

__all__ = [
    "Barrier", "BucketRateLimiter", "ConcurrentRateLimiter", "RateLimitExceeded",
    "RateLimiter", "RateLimiterBackend", "WindowRateLimiter",
]
