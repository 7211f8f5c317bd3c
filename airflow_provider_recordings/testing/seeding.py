"""Deterministic, realistic recordings in bulk.

Ids are UUIDv7 strings like PostHog's session ids (time-ordered, millisecond prefix),
and a seed fixes the layout relative to the clock, so a failing test reproduces.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from airflow_provider_recordings.testing.records import ONGOING_US
from airflow_provider_recordings.testing.store import NewRow
from airflow_provider_recordings.testing.timefmt import SECOND_US

MIN_DURATION_US = 10 * SECOND_US
MAX_DURATION_US = 3600 * SECOND_US
_DAY_US = 86400 * SECOND_US
_MS = 1000


def uuid7(ms: int, rand: int) -> str:
    """A UUIDv7 string from a millisecond timestamp and 74 random bits."""
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _duration(rng: random.Random) -> int:
    """10 s to 1 h, skewed short like real sessions."""
    duration = MIN_DURATION_US + int((MAX_DURATION_US - MIN_DURATION_US) * rng.random() ** 2)
    return duration - duration % _MS


def _fresh_id(rng: random.Random, start_us: int, taken: Callable[[str], bool]) -> str:
    """A UUIDv7 for this start; redrawn if taken, so seeding twice with one seed works."""
    while True:
        candidate = uuid7(start_us // _MS, rng.getrandbits(74))
        if not taken(candidate):
            return candidate


def finished_rows(
    rng: random.Random, count: int, now_us: int, days: float, taken: Callable[[str], bool]
) -> Iterator[NewRow]:
    """Recordings that ended more than five minutes ago, starting uniformly in the window."""
    span = int(days * _DAY_US)
    latest_end = now_us - ONGOING_US - SECOND_US
    for _ in range(count):
        duration = _duration(rng)
        start = now_us - int(span * rng.random())
        if start + duration > latest_end:
            start = latest_end - duration
        start -= start % _MS
        yield NewRow(_fresh_id(rng, start, taken), start, start + duration, rng.getrandbits(64))


def ongoing_rows(
    rng: random.Random, count: int, now_us: int, taken: Callable[[str], bool]
) -> Iterator[NewRow]:
    """Recordings whose last data arrived within the last minute."""
    for _ in range(count):
        end = now_us - int(50 * SECOND_US * rng.random())
        end -= end % _MS
        start = end - _duration(rng)
        yield NewRow(_fresh_id(rng, start, taken), start, end, rng.getrandbits(64))


def generate(
    n: int,
    *,
    now_us: int,
    days: float,
    ongoing: int,
    shared: int,
    seed: int,
    taken: Callable[[str], bool] = lambda recording_id: False,
) -> tuple[Iterator[NewRow], list[int]]:
    """The rows to add (lazily, to keep peak memory low) and the positions among them
    that get sharing enabled."""
    if n < 0 or not 0 <= ongoing <= n or not 0 <= shared <= n:
        raise ValueError("need 0 <= ongoing <= n and 0 <= shared <= n")
    if days <= 0:
        raise ValueError("days must be > 0")
    rng = random.Random(seed)
    shared_positions = sorted(rng.sample(range(n), shared))
    rows = itertools.chain(
        finished_rows(rng, n - ongoing, now_us, days, taken), ongoing_rows(rng, ongoing, now_us, taken)
    )
    return rows, shared_positions


def busiest_distinct_ids(distinct_ids: Iterable[str], count: int) -> list[str]:
    """The ``count`` distinct ids occurring most (ties by id): the users an erasure demo
    has most to find for."""
    if count <= 0:
        return []
    tally = Counter(distinct_ids)
    ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return [distinct_id for distinct_id, _ in ranked[:count]]
