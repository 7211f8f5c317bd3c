"""Apache Airflow provider for PostHog session recordings.

Importing the package is cheap on purpose: DAG files import it at every parse, so
nothing here touches the network or imports Airflow's heavier modules.
"""

from __future__ import annotations

__version__ = "0.3.0"

__all__ = ["__version__"]
