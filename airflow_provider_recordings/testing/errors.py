"""PostHog's error envelope (drf-exceptions-hog), so clients parse emulator errors the
same way they parse production ones."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer; raised anywhere in request handling and rendered once."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str,
        detail: str,
        attr: str | None = None,
        headers: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.code = code
        self.detail = detail
        self.attr = attr
        self.headers = dict(headers or {})
        self.payload = payload

    def body(self) -> dict[str, Any]:
        if self.payload is not None:
            return dict(self.payload)
        return {"type": self.type, "code": self.code, "detail": self.detail, "attr": self.attr}


def plain(status: int, payload: dict[str, Any]) -> ApiError:
    """An answer a view builds by hand (``Response({"error": ...}, status=...)``), not
    through the exception handler, so it lacks the usual envelope."""
    detail = str(payload.get("message") or payload.get("error") or "")
    return ApiError(status, "", "", detail, payload=payload)


def not_authenticated() -> ApiError:
    return ApiError(
        401,
        "authentication_error",
        "authentication_failed",
        "Personal API key found in request Authorization header is invalid.",
    )


def permission_denied(detail: str) -> ApiError:
    return ApiError(403, "authentication_error", "permission_denied", detail)


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, "invalid_request", "not_found", detail)


def recording_not_found() -> ApiError:
    return not_found("Recording not found")


def invalid_input(detail: str, attr: str | None = None) -> ApiError:
    return ApiError(400, "validation_error", "invalid_input", detail, attr)


def parse_error(detail: str) -> ApiError:
    return ApiError(400, "invalid_request", "parse_error", detail)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "invalid_request", "method_not_allowed", f'Method "{method}" not allowed.')


def server_error(code: str, detail: str) -> ApiError:
    return ApiError(500, "server_error", code, detail)


def unhandled() -> ApiError:
    """What the exception handler answers for an exception that is no API error (a
    ``ValueError`` from ``int("x")``, say)."""
    return ApiError(500, "server_error", "error", "A server error occurred.")


CAPACITY_DETAIL = "ClickHouse is at capacity. Try again later."


def throttled(wait_text: str | None, detail: str | None = None) -> ApiError:
    """PostHog's 429. With a wait: ``Retry-After`` and DRF's text, or ``detail`` where
    PostHog names the limit. Without a wait (the database is busy): no ``Retry-After``,
    and ``detail`` or the capacity text."""
    if wait_text is None:
        return ApiError(429, "throttled_error", "throttled", detail or CAPACITY_DETAIL)
    return ApiError(
        429,
        "throttled_error",
        "throttled",
        detail or f"Request was throttled. Expected available in {wait_text} seconds.",
        headers={"Retry-After": wait_text},
    )
