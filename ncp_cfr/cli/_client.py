"""The client a command sends with: the real service, or the built-in emulator.

Also the demo's one-person gallery (the bundled photo) and whether to show a progress bar. The
clients and the emulator are imported only when a client is opened, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ncp_cfr import protocol
from ncp_cfr.cli._exits import UsageError

DEMO_IMAGE = Path(__file__).parent.parent / "data" / "grace_hopper.jpg"
#: The demo's gallery name for the bundled photo: Hangul, to show names render as glyphs.
DEMO_GALLERY_NAME = "그레이스 호퍼"


def has_credentials() -> bool:
    """Whether both keys are set in the environment."""
    env = os.environ
    return bool(env.get(protocol.ENV_CLIENT_ID) and env.get(protocol.ENV_CLIENT_SECRET))


def _demo_emulator(detector: str) -> Any:
    """An emulator with the real detector and a one-person gallery (the bundled photo)."""
    from ncp_cfr.testing import Emulator
    from ncp_cfr.testing.gallery import Gallery

    gallery = Gallery()
    gallery.add(DEMO_GALLERY_NAME, DEMO_IMAGE)
    return Emulator(detector=None if detector == "none" else detector, gallery=gallery)


@contextmanager
def open_client(args: argparse.Namespace, *, emulator: bool) -> Iterator[Any]:
    """The real service, or (``emulator``) an in-process emulator with real detection."""
    from ncp_cfr.clients import Client

    if emulator:
        emu = _demo_emulator(args.detector)
        with emu.client(in_process=True, max_retries=args.max_retries) as client:
            yield client
        return
    if not has_credentials():
        raise UsageError(
            f"no credentials: set {protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET} "
            "to your NCP application's Client ID and Secret, or add --emulator to try offline"
        )
    with Client(
        base_url=args.base_url, timeout=args.timeout, max_retries=args.max_retries
    ) as client:
        yield client


def show_progress(args: argparse.Namespace, total: int) -> bool:
    """Whether a batch of ``total`` files shows a progress bar (``--progress`` decides if given)."""
    if args.progress is not None:
        return bool(args.progress)
    # A bar only where a person watches, and only when there is something to wait for.
    return total > 1 and sys.stderr.isatty()
