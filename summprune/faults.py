"""Fault injection for the kill-and-resume tests: ``SUMMPRUNE_FAULT=<point>`` makes this process
kill itself with SIGKILL (no cleanup, as a dropped Colab session or ``kill -9``) when it reaches
that point. Points: ``<stage>:<optimizer step>`` inside training (``finetune:3``, ``recover-2:1``)
and ``export`` (the export's files written, not yet swapped into place). Unset, this is one
environment lookup per point."""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("SUMMPRUNE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
