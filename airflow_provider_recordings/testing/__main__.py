"""``python -m airflow_provider_recordings.testing``: serve the emulator."""

from __future__ import annotations

import sys

from airflow_provider_recordings.testing.cli import main

if __name__ == "__main__":
    sys.exit(main())
