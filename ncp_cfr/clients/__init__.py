"""The two clients: [`Client`][ncp_cfr.Client] and [`AsyncClient`][ncp_cfr.AsyncClient].

``_base`` holds everything that is not I/O (settings, options, the exchange of one call's
attempts, batch bookkeeping); ``_sync`` and ``_async`` are the shells that send, sleep and wait;
``_deadline`` bounds a sync attempt as a whole; ``_ratelimit`` paces a batch.
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
