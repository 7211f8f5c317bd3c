"""Typed errors for every way a PostHog call can fail.

Messages carry the method, the path, the status and PostHog's own ``detail`` so that a
failed task log says what went wrong without a debugger. They never carry the API key:
the key only ever travels in a request header, which no message includes.
"""

from __future__ import annotations


class PostHogError(Exception):
    """Base class of every error raised by this provider's client."""


class PostHogConfigError(PostHogError, ValueError):
    """The connection or the task's parameters are unusable; raised before any request.

    For a connection problem, ``field`` names the field (``extra.project_id``) and
    ``problem`` says what is wrong with it, so a form can show them without the message's
    connection id. ``final``: a retry would fail the same way (bad input); False for a
    service the connection names that did not answer (it may answer later).
    """

    final = True

    def __init__(self, message: str, *, field: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


class PostHogStoreUnavailableError(PostHogConfigError):
    """The shared rate store the connection names did not answer; a retry may succeed."""

    final = False


class PostHogApiError(PostHogError):
    """PostHog answered with an error status.

    ``retryable`` says whether the same request may succeed later (5xx, 429, a broken
    body); 4xx answers other than 429 are final and are never retried.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        detail: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.code = code


class PostHogAuthError(PostHogApiError):
    """401: the key is unknown, revoked or malformed. Retrying cannot help."""


class PostHogPermissionError(PostHogAuthError):
    """403: the key lacks a scope or access to the project (or the action refuses API keys)."""


class PostHogBadRequestError(PostHogApiError):
    """400: PostHog rejected the parameters (an unknown filter, a bad value)."""


class PostHogNotFoundError(PostHogApiError):
    """404: unknown, deleted or expired recording (or an endpoint this server lacks)."""


class PostHogServerError(PostHogApiError):
    """5xx: a transient failure on PostHog's side."""

    retryable = True


class PostHogRecordingApiFailure(PostHogServerError):
    """500 ``recording_api_failure``: some versions answer this when deleting an unknown id.

    It is deterministic for that id, so retrying only burns rate budget.
    """

    retryable = False


class PostHogMalformedResponseError(PostHogApiError):
    """A 2xx answer whose body is not the JSON it should be (cut short or garbled)."""

    retryable = True


class PostHogTransportError(PostHogError):
    """The request never got an answer: connection refused or reset, or a timeout."""

    retryable = True


class PostHogRateLimitError(PostHogApiError):
    """Throttled, by PostHog (429) or by the client's own budget.

    ``retry_after`` is how many seconds to wait before the next call may succeed (None
    when the server did not say). When the wait is longer than the hook is allowed to
    sleep, this error reaches the caller, which can fail with a clear message or defer.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class PostHogBudgetExhaustedError(PostHogError):
    """The task's own call budget (``max_api_calls``) is spent; stop and report what remains."""


class PostHogRunIncompleteError(PostHogError):
    """The run stopped early with recordings left (``fail_on_remaining``); the next run goes on."""


class PostHogItemsFailedError(PostHogError):
    """Some recordings failed while the others succeeded; a rerun retries the failures."""


class PostHogMissingRecordingsError(PostHogError):
    """Recordings a task was told to wait for do not exist (deleted, expired or mistyped)."""


class PostHogWaitError(PostHogError):
    """Waiting in the triggerer ended with an error PostHog gave (the message says which)."""


class PostHogStreamInterruptedError(PostHogError):
    """A streamed answer broke off after its first bytes were used: the request cannot be
    retried on its own (what consumed it holds a part); the caller starts over."""


class PostHogStoppedError(PostHogError):
    """The run was stopped (killed, timed out, or failed elsewhere): no new request may start."""


class PostHogOutputError(PostHogError):
    """A report, receipt or archive could not be written; ``parameter`` names the setting."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class PostHogCrossOriginError(PostHogError):
    """A pagination link points at another host; following it would leak the API key."""


class PostHogPaginationError(PostHogError):
    """The server's pagination did not advance; stopping beats looping forever."""


def is_retryable(exc: BaseException) -> bool:
    """Whether repeating the same request could give a different answer."""
    return bool(getattr(exc, "retryable", False))
