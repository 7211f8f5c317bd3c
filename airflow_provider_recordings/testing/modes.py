"""Literal types naming the emulator's modes, shared by config, API and command line."""

from __future__ import annotations

from typing import Literal

Shape = Literal["live", "published"]
BulkDeleteMode = Literal["allowed", "forbidden", "absent", "not_allowed"]
OngoingMode = Literal["present", "missing", "null"]
DeleteUnknownMode = Literal["204", "500"]
PersonsMode = Literal["allowed", "absent", "not_allowed"]
SyntheticMode = Literal["present", "absent"]
