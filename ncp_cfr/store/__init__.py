"""The result store: every answer paid for, kept in one SQLite file so that a rerun pays only for
what is new.

A [`ResultStore`][ncp_cfr.store.ResultStore] maps a [`request_key`][ncp_cfr.store.request_key]
(the photo's content hash, the operation, the options that change the answer and the service's
base URL) to a [`StoredResult`][ncp_cfr.store.StoredResult]: the answer as JSON, the service's own
answer, the request id and the time; or a permanent failure (an unreadable or invalid image).

```python
from ncp_cfr.store import ResultStore, content_hash, request_key

with ResultStore("library.db") as store:
    data = open("photo.jpg", "rb").read()
    key = request_key(content_hash(data), "face", {"max_side": 1920}, base_url)
    hit = store.get(key)  # None: not stored yet, a call is needed
```

The file uses SQLite's write-ahead log (WAL): every [`put`][ncp_cfr.store.ResultStore.put] is one
short transaction, committed before it returns, so a process killed at any moment (SIGKILL
included) leaves a file that opens and holds every answer whose ``put`` returned. Several threads
may share one store, and several processes one file, on a local disk (WAL does not work on
network file systems: SMB, NFS).
"""

from ncp_cfr.store._schema import SCHEMA_VERSION, Operation
from ncp_cfr.store._store import ResultStore, StoredResult, content_hash, request_key

__all__ = [
    "SCHEMA_VERSION",
    "Operation",
    "ResultStore",
    "StoredResult",
    "content_hash",
    "request_key",
]
