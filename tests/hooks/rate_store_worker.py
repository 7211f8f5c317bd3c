"""A process that uses a PostHog key, for tests and benchmarks of the shared rate store.

    python -m tests.hooks.rate_store_worker --calls 40 --kind list

reads the connection ``posthog_default`` from the environment, makes the calls through a
:class:`PostHogHook` (list calls, or retrieves of the ids given), and prints what it
spent, and how many calls failed after their retries, as one JSON line.

With ``--barrier`` it prints ``ready`` once it has imported everything and waits for a
line on its standard input before its first call, so that processes which take
different times to start still make their calls at the same time.
"""

from __future__ import annotations

import argparse
import json
import sys

from airflow_provider_recordings.core.errors import PostHogError
from airflow_provider_recordings.hooks.posthog import PostHogHook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--kind", choices=("list", "retrieve"), default="list")
    parser.add_argument("--ids", default="", help="comma-separated recording ids to retrieve")
    parser.add_argument("--barrier", action="store_true", help="say ready, then wait for a line on stdin")
    args = parser.parse_args(argv)
    hook = PostHogHook(page_size=1)
    if args.barrier:
        print("ready", flush=True)
        sys.stdin.readline()
    ids = [i for i in args.ids.split(",") if i]
    failed = 0
    for index in range(args.calls):
        try:
            if args.kind == "list":
                next(hook.iter_recordings(date_from="-30d"), None)
            else:
                hook.get_recording(ids[index % len(ids)])
        except PostHogError:
            failed += 1
    print(json.dumps({**hook.stats.snapshot(), "failed": failed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
