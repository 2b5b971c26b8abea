"""`tests/stage_noise.py` under a second name (`copy`), for a stage after a gated one."""

from __future__ import annotations

from tests.stage_noise import Config, run

NAME = "copy"

__all__ = ["NAME", "Config", "run"]
