"""HTTP for every connector: one client per connector, and `send`, which retries what is worth
retrying (429, 5xx, transport errors) and turns a final failure into a ConnectorError once.

Credentials travel in request headers only. Nothing here formats a request's headers or URL into
an exception or a log line: failures name the service, the method and the URL's path.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import ssl
from collections.abc import Callable, Collection, Iterator
from contextvars import ContextVar
from importlib import metadata
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from connectors.base import (
    AuthError,
    DeadlinePassed,
    PermanentError,
    RetryableError,
    seconds_left,
)

log = logging.getLogger(__name__)

ATTEMPTS = 5  # tries of one request, the first included
BASE_DELAY = 0.5  # seconds before the first retry; doubles each time, with jitter
MAX_DELAY = 30.0  # the longest backoff between two tries
MAX_RETRY_AFTER = 120.0  # a Retry-After longer than this ends the retries: try again next sync
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _version() -> str:
    try:
        return metadata.version("contact-autoimport")
    except metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"contact-autoimport/{_version()}"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CA bundle), loaded once per process: loading it
    for each client cost 25 to 60 ms, a third of a 500-contact sync. Contexts are thread-safe."""
    return httpx.create_ssl_context()


def new_client(base_url: str, headers: dict[str, str], timeout: float = 30.0) -> httpx.Client:
    """A client with explicit timeouts and a keep-alive pool; `headers` carry the credentials."""
    return httpx.Client(
        base_url=base_url,
        verify=_tls_context(),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers},
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=30),
        follow_redirects=False,
    )


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a float is allowed), or None."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


# A service's own reading of a retryable response: the seconds to wait before trying again
# (more than MAX_RETRY_AFTER: do not retry now), or None for the default (Retry-After, else
# exponential backoff with jitter).
WaitHint = Callable[[httpx.Response], float | None]


def _advised_wait(state: RetryCallState, wait_hint: WaitHint | None) -> float | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    response = outcome.result()
    hinted = wait_hint(response) if wait_hint is not None else None
    return hinted if hinted is not None else retry_after(response)


def _waiter(wait_hint: WaitHint | None) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        advised = _advised_wait(state, wait_hint)
        if advised is not None:
            return advised
        ceiling = min(MAX_DELAY, BASE_DELAY * 2.0 ** (state.attempt_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    return wait


class _WaitTooLong(stop_base):
    """Stops when the service asks to wait longer than a sync should."""

    def __init__(self, wait_hint: WaitHint | None):
        self._wait_hint = wait_hint

    def __call__(self, state: RetryCallState) -> bool:
        advised = _advised_wait(state, self._wait_hint)
        return advised is not None and advised > MAX_RETRY_AFTER


# The monotonic time by which the caller of the running sync wants an answer (from its gRPC
# deadline), or None: each request's timeout is cut to it, and no retry waits past it.
_deadline: ContextVar[float | None] = ContextVar("autoimport_http_deadline", default=None)


@contextlib.contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Every request sent inside the block ends by `at` (time.monotonic()), or fails."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the deadline, None when there is none."""
    return seconds_left(_deadline.get())


class _PastDeadline(stop_base):
    """Stops when the next try would start after the deadline."""

    def __call__(self, state: RetryCallState) -> bool:
        left = remaining()
        return left is not None and state.upcoming_sleep >= left


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One try, its timeouts cut to what is left before the deadline."""
    left = remaining()
    if left is None:
        return client.request(method, url, **kwargs)
    if left <= 0:
        raise DeadlinePassed()
    default = client.timeout
    timeout = httpx.Timeout(
        connect=min(default.connect or left, left),
        read=min(default.read or left, left),
        write=min(default.write or left, left),
        pool=min(default.pool or left, left),
    )
    return client.request(method, url, timeout=timeout, **kwargs)


# Told of every error answer (HTTP 400 and above) and every transport failure, on each try
# (retried or not): (service, the status code or the transport error's name). The service's
# metrics listen here; connectors import nothing from `service`.
_error_listeners: list[Callable[[str, str], None]] = []


def on_error(listener: Callable[[str, str], None]) -> None:
    """Adds `listener` (once: adding it again changes nothing)."""
    if listener not in _error_listeners:
        _error_listeners.append(listener)


def _observed_request(service: str, *args: Any, **kwargs: Any) -> httpx.Response:
    """`_request`, its errors told to the listeners."""
    try:
        response = _request(*args, **kwargs)
    except httpx.TransportError as e:
        _tell(service, type(e).__name__)
        raise
    if response.status_code >= 400:
        _tell(service, str(response.status_code))
    return response


def _tell(service: str, status: str) -> None:
    for listener in _error_listeners:
        try:
            listener(service, status)
        except Exception:  # a listener never breaks a request
            log.exception("an HTTP error listener failed")


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    what = (
        type(outcome.exception()).__name__
        if outcome is not None and outcome.failed
        else f"HTTP {outcome.result().status_code}"
        if outcome is not None
        else "?"
    )
    sleep = state.next_action.sleep if state.next_action is not None else 0.0
    log.info("%s, attempt %d: retrying in %.1fs", what, state.attempt_number, sleep)


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    service: str,
    params: dict[str, Any] | None = None,
    json: Any = None,
    data: dict[str, str] | None = None,
    accept: Collection[int] = (),
    wait_hint: WaitHint | None = None,
    retry_when: Callable[[httpx.Response], bool] | None = None,
) -> httpx.Response:
    """Sends a request, retried on 429, 5xx and transport errors; a 2xx or 3xx response is
    returned, any other final outcome raises AuthError, PermanentError or RetryableError,
    except the statuses in `accept`, returned for the caller to read (e.g. an error body that
    says what to do). `data` is sent form-encoded. `retry_when` names more responses worth
    retrying (a service's own "slow down" or "try again")."""
    path = httpx.URL(url).path
    retrying = Retrying(
        stop=stop_after_attempt(ATTEMPTS) | _WaitTooLong(wait_hint) | _PastDeadline(),
        wait=_waiter(wait_hint),
        retry=(
            retry_if_exception_type(httpx.TransportError)
            | retry_if_result(
                lambda r: (
                    r.status_code in RETRY_STATUSES or (retry_when is not None and retry_when(r))
                )
            )
        ),
        before_sleep=_log_retry,
        retry_error_callback=lambda state: state.outcome,
        reraise=False,
    )
    try:
        result = retrying(
            _observed_request, service, client, method, url, params=params, json=json, data=data
        )
    except httpx.TransportError as e:  # not retried: cannot happen, kept for safety
        raise RetryableError(f"{service} could not be reached ({type(e).__name__})") from None
    if not isinstance(result, httpx.Response):  # retries exhausted: the last outcome
        if result.failed:
            error = result.exception()
            log.warning("%s %s %s failed: %s", service, method, path, type(error).__name__)
            left = remaining()
            if left is not None and left <= 0:  # e.g. a read cut short by the deadline
                raise DeadlinePassed() from None
            raise RetryableError(
                f"{service} could not be reached ({type(error).__name__}): the next sync "
                "tries again"
            ) from None
        result = result.result()
    if result.status_code in accept:
        return result
    return _check(result, service=service, method=method, path=path)


def _check(response: httpx.Response, *, service: str, method: str, path: str) -> httpx.Response:
    status = response.status_code
    if status < 400:
        return response
    log.warning("%s %s %s answered HTTP %d", service, method, path, status)
    if status in (401, 403):
        raise AuthError(f"{service} rejected the credentials: reconnect the account")
    if status == 429:
        raise RetryableError(f"{service} is rate limiting this account: the next sync tries again")
    if status >= 500:
        raise RetryableError(f"{service} is unavailable (HTTP {status}): the next sync tries again")
    raise PermanentError(
        f"{service} refused the request (HTTP {status}): {error_message(response)}"
    )


def error_message(response: httpx.Response, limit: int = 300) -> str:
    """The service's own error text: Shopify's `errors` (a string, a list or a field map),
    Google's `error.message`, HubSpot's `message`; else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:limit] or response.reason_phrase
    message: Any = body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        message = body["message"]  # HubSpot's; its `errors` list is less readable
    elif isinstance(body, dict):
        error = body.get("errors", body.get("error", body))
        if isinstance(error, dict) and "message" in error:
            error = error["message"]
        message = error
    if isinstance(message, dict):
        message = "; ".join(
            f"{key} {' '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in message.items()
        )
    elif isinstance(message, list):
        message = "; ".join(map(str, message))
    return str(message)[:limit]
