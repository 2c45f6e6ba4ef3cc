"""The two clients: [`Client`][ncp_cfr.Client] and [`AsyncClient`][ncp_cfr.AsyncClient].

From the bottom up: ``_base`` holds what is not I/O (settings, options, the clock, one call's
attempts as actions); ``_plans`` the plans each operation runs; ``_methods`` every public method,
written once for both clients; ``_batches`` a batch in progress (the store, the quota stop, the
summary); ``_sync`` and ``_async`` the shells that send, sleep and wait; ``_deadline`` bounds a
sync attempt as a whole; ``_ratelimit`` paces a batch.
"""

from ncp_cfr.clients._async import AsyncBatchStream, AsyncClient
from ncp_cfr.clients._base import Clock, ImageInput, Progress
from ncp_cfr.clients._ratelimit import RateLimiter
from ncp_cfr.clients._sync import BatchStream, Client

__all__ = [
    "AsyncBatchStream",
    "AsyncClient",
    "BatchStream",
    "Client",
    "Clock",
    "ImageInput",
    "Progress",
    "RateLimiter",
]
