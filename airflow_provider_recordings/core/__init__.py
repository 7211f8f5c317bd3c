"""The sans-I/O core of the PostHog client.

Pure code that decides which request comes next and what a response means (a page, a
retry, an error). The synchronous hook (``requests``) and the asynchronous trigger
(``httpx``) only move bytes; everything they agree on lives here, once.
"""
