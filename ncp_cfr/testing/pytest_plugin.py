"""pytest fixtures for your own test suite (registered automatically when ncp_cfr is installed).

```python
def test_my_app(cfr_emulator, monkeypatch):
    for name, value in cfr_emulator.env().items():
        monkeypatch.setenv(name, value)
    ...  # your code builds ncp_cfr.Client() and talks to the emulator
```
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ncp_cfr.client import Client
from ncp_cfr.testing.emulator import Emulator


@pytest.fixture
def cfr_emulator() -> Iterator[Emulator]:
    """A running :class:`~ncp_cfr.testing.Emulator` on a free loopback port."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def cfr_client(cfr_emulator: Emulator) -> Iterator[Client]:
    """A :class:`~ncp_cfr.Client` talking to :func:`cfr_emulator`, retries off for fast failures."""
    with cfr_emulator.client(max_retries=0) as client:
        yield client
