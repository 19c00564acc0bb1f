"""Around every call: domain and service errors become rich gRPC statuses; callers authenticate.

Both work by wrapping the method's behaviour (not in intercept_service itself, which grpcio runs
on its polling thread), and keep wrapping through the whole iteration of a streamed response.
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from domain.errors import ValidationError, shown
from service import metrics
from service.api.status import STORE_ERRORS, disk_full, status_for
from service.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

# Health checks and reflection answer without a token (load balancers and grpcurl need them).
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or the holder of one account's API key."""

    actor: str
    account_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.account_id is None

    def require_account(self, account_id: str) -> None:
        if not self.is_admin and account_id != self.account_id:
            raise PermissionDenied(f"this API key cannot access account {shown(account_id)}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("only the admin token may do this")


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    return _principal.get()


def intercept_calls(
    handler: grpc.RpcMethodHandler,
    around: Callable[[grpc.ServicerContext], contextlib.AbstractContextManager[Any]],
) -> grpc.RpcMethodHandler:
    """The same handler, with each call (and each streamed response, to its end) run inside
    `around(context)`."""
    kind, behavior = _behavior_of(handler)

    def respond(request: Any, context: grpc.ServicerContext) -> Any:
        with around(context):
            return behavior(request, context)

    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with around(context):
            yield from behavior(request, context)

    return handler._replace(**{kind: stream if handler.response_streaming else respond})  # type: ignore[attr-defined]


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions to statuses with rich details; an unexpected one is logged, and the caller
    gets INTERNAL without internals. A call the client cancelled, or stopped waiting for, is
    logged as such: it is not a server error."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method  # type: ignore[attr-defined]

        @contextlib.contextmanager
        def errors_as_status(context: grpc.ServicerContext) -> Iterator[None]:
            try:
                yield
            except Exception as e:
                if not context.is_active():
                    log.info("%s cancelled by the client (or past its deadline)", method)
                    # Aborting ends the call without grpcio's "Exception calling application".
                    context.abort(grpc.StatusCode.CANCELLED, "cancelled by the client")
                status = status_for(e)
                if status.code is grpc.StatusCode.INTERNAL:  # type: ignore[attr-defined]
                    log.exception("%s failed", method)
                elif isinstance(e, STORE_ERRORS):  # one line: the store's, not the code's, fault
                    level = logging.ERROR if disk_full(e) else logging.WARNING  # someone must act
                    log.log(level, "%s: %s", method, status.details)  # type: ignore[attr-defined]
                context.abort_with_status(status)

        return intercept_calls(handler, errors_as_status)


class DecodingInterceptor(grpc.ServerInterceptor):
    """A request that is not the method's message is INVALID_ARGUMENT (grpcio would log a
    traceback and answer INTERNAL). Last in the chain: the caller is authenticated first, and
    the error interceptor answers the refusal."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        return None if handler is None else _decoded_or_refused(handler)


@dataclass(frozen=True)
class _Undecodable:
    """What a request that does not parse as the method's message is read as."""

    message: str


def _decoded_or_refused(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler with requests that do not parse read as _Undecodable, and refused with
    INVALID_ARGUMENT (raised inside the call, where the error interceptor answers it)."""
    parse = handler.request_deserializer
    if parse is None:
        return handler
    descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    name = descriptor.full_name if descriptor is not None else "request"

    def decoded(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return _Undecodable(name)

    def checked(request: Any) -> Any:
        if isinstance(request, _Undecodable):
            raise ValidationError.single(
                "request", f"is not a valid {request.message} message (protobuf)"
            )
        return request

    kind, behavior = _behavior_of(handler)

    def each_checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behavior(map(checked, requests), context)

    def one_checked(request: Any, context: grpc.ServicerContext) -> Any:
        return behavior(checked(request), context)

    call = each_checked if handler.request_streaming else one_checked
    return handler._replace(request_deserializer=decoded, **{kind: call})  # type: ignore[attr-defined]


def _behavior_of(handler: grpc.RpcMethodHandler) -> tuple[str, Callable[..., Any]]:
    """The handler's one behaviour, and the attribute that holds it."""
    kind = next(
        k
        for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        if getattr(handler, k) is not None
    )
    return kind, getattr(handler, kind)


class AuthInterceptor(grpc.ServerInterceptor):
    """`authorization: Bearer <token>`: the admin token (the current one, or one of the previous
    tokens still accepted while clients move to it), or an account's API key.

    `identify_api_key` gives (account_id, key_id) of a valid key, None for an unknown one, and
    raises Unauthenticated, saying why, for a revoked or expired one."""

    def __init__(
        self,
        admin_token: str,
        identify_api_key: Callable[[str], tuple[str, str] | None],
        previous_admin_tokens: Sequence[str] = (),
    ):
        self._admin_tokens = [t.encode() for t in (admin_token, *previous_admin_tokens) if t]
        self._identify_api_key = identify_api_key

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_METHOD_PREFIXES):  # type: ignore[attr-defined]
            return handler
        return intercept_calls(handler, self._authenticated)

    @contextlib.contextmanager
    def _authenticated(self, context: grpc.ServicerContext) -> Iterator[None]:
        token = self._bearer_token(context)
        reset = _principal.set(self.authenticate(token))
        try:
            yield
        finally:
            _principal.reset(reset)

    def authenticate(self, token: str) -> Principal:
        # Every token compared, each in constant time: the time says nothing of which matched.
        matches = [hmac.compare_digest(token.encode(), admin) for admin in self._admin_tokens]
        if any(matches):
            return Principal(actor="admin")
        found = self._identify_api_key(token) if token.startswith("aik_") else None
        if found is None:
            raise Unauthenticated(
                "the API key is not valid: create one with AccountService.CreateApiKey"
            )
        account_id, key_id = found
        return Principal(actor=f"key:{key_id}", account_id=account_id)

    @staticmethod
    def _bearer_token(context: grpc.ServicerContext) -> str:
        for key, value in context.invocation_metadata():
            if key == "authorization":
                scheme, _, token = str(value).partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
                raise Unauthenticated("authorization metadata must be 'Bearer <key>'")
        raise Unauthenticated("missing 'authorization: Bearer <key>' metadata")


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every call and times it (service/metrics.py's grpc_server_* metrics), by method and
    final status code: first in the chain, so that it sees the codes the others give."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method  # type: ignore[attr-defined]
        grpc_type = _RPC_TYPES[(handler.request_streaming, handler.response_streaming)]

        @contextlib.contextmanager
        def measured(context: grpc.ServicerContext) -> Iterator[None]:
            handled = metrics.rpc_started(grpc_type, method)
            started = time.perf_counter()
            failed = False
            try:
                yield
            except BaseException:
                failed = True
                raise
            finally:
                code = _code_of(context) or (
                    grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
                )
                handled(code.name, time.perf_counter() - started)

        return intercept_calls(handler, measured)


_RPC_TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code the call ends with, as set so far (by abort, or set_code)."""
    try:
        code = context.code()  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError):
        return None
    if isinstance(code, grpc.StatusCode) or code is None:
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), None)
