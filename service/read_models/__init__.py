"""Read models: projections of the application's events into queryable views."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment

from service.errors import Unavailable
from service.read_models.sql import PageTokens
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.sqlite_pages import limit_page_cache

# Every projection with its view class per persistence module. One runner per view (projector.py).
PROJECTIONS: list[tuple[type[Projection[Any]], Mapping[str, type[Any]]]] = [
    (AccountViewsProjection, VIEW_CLASSES),
]


def open_view(
    projection: type[Projection[Any]], view_classes: Mapping[str, type[Any]], env: dict[str, str]
) -> Any:
    """The view of a projection, configured as eventsourcing's ProjectionRunner would build it,
    so that readers and the runner use the same tables."""
    environment = Environment(projection.name, env)
    factory = InfrastructureFactory.construct(env=environment)
    view_class = view_classes[env["PERSISTENCE_MODULE"]]
    limit_page_cache(env)  # before any connection opens (service/sqlite_pages.py)
    return factory.tracking_recorder(view_class)


READ_TIMEOUT = 10.0  # seconds a read waits for the views to catch up before UNAVAILABLE


class ReadModels:
    """The views a server reads, the wait that gives a caller read-your-writes, and the page
    tokens of their lists."""

    def __init__(
        self,
        app: Any,
        store_env: Callable[[str], dict[str, str]],
        timeout: float | None = None,
        explain: Callable[[], str | None] = lambda: None,
        *,
        secret: str,
    ):
        """`explain()`: why the views are not advancing, when that is known (the projector in
        this process is failing), to tell callers instead of "catching up". `secret` signs the
        page tokens handed to callers."""
        self._app = app
        self.page_tokens = PageTokens(secret)
        self._timeout = READ_TIMEOUT if timeout is None else timeout
        self._explain = explain
        name = AccountViewsProjection.name
        self.views: AccountViews = open_view(AccountViewsProjection, VIEW_CLASSES, store_env(name))

    def caught_up(self) -> AccountViews:
        """The views, once they have processed every event saved so far (so also the caller's
        own writes). Raises Unavailable if the projector does not get there in time."""
        latest = self._app.recorder.max_notification_id()
        try:
            self.views.wait_until(self._app.name, latest, timeout=self._timeout)
        except TimeoutError:
            stuck = self._explain()
            if stuck:
                raise Unavailable(f"the read model is not advancing ({stuck}); retry") from None
            raise Unavailable(
                f"the read model is catching up with the event store (event {latest}); retry"
            ) from None
        return self.views

    def close(self) -> None:
        self.views.datastore.close()
