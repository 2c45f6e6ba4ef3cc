"""pytest fixtures for your own test suite (registered automatically when ncp_cfr is installed).

```python
def test_my_app(cfr_emulator, monkeypatch):
    for name, value in cfr_emulator.env().items():
        monkeypatch.setenv(name, value)
    ...  # your code builds ncp_cfr.Client() and talks to the emulator
```

Every pytest session of every project with ncp_cfr installed loads this module, so it imports
nothing of the SDK until a test asks for a fixture: the SDK's modules (and httpx, Pillow) stay out
of other projects' sessions, and ``pytest --cov=ncp_cfr`` sees them imported by the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ncp_cfr.clients import Client
    from ncp_cfr.testing.emulator import Emulator


@pytest.fixture
def cfr_emulator() -> Iterator[Emulator]:
    """A running [`Emulator`][ncp_cfr.testing.Emulator] on a free loopback port.

    It detects real faces when the ``emulator`` extra is installed (else it answers no faces);
    scenarios ([`reply`][ncp_cfr.testing.Emulator.reply]) and faults take precedence.
    """
    from ncp_cfr.testing.emulator import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def cfr_client(cfr_emulator: Emulator) -> Iterator[Client]:
    """A [`Client`][ncp_cfr.Client] talking to
    [`cfr_emulator`][ncp_cfr.testing.pytest_plugin.cfr_emulator], retries off for fast failures.
    """
    with cfr_emulator.client(max_retries=0) as client:
        yield client
