"""The external services misbehaving in the middle of a read, end to end: a real server reading
each connector's emulator, which answers the second page's request (and its retries) with a
fault. The sync ends as a report (COMPLETED after a retry, or FAILED with a reason), never a
server error; the next sync, the fault gone, reads everything; every promise of
tests/invariants.py holds after all of it. Google's token endpoint down (the access token
expired) fails syncs without ever blaming the credentials.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES
from connectors.http import ATTEMPTS
from domain.auto_import import AUTH_FAILURES_BEFORE_REAUTH
from emulators.google_contacts import TOKEN_PATH
from emulators.server import Fault
from service.config import Settings
from tests.conftest import STORES
from tests.connectors.contract import Harness, harness_of
from tests.faults import sample
from tests.invariants import Expected, broken_promises
from tests.support import Client, ServerProcess, all_contacts, new_account, store_env

CUT_JSON = b'{"customers": [{"id": 1, "email": "cut@exa'
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
STALL = 6.0  # seconds: past the sync's deadline below
SYNC_TIMEOUT = 4.0
WINDOW = 480  # contacts seeded at most: under the 500 of a sync window

# Each fault, as the emulator gives it: (the fault, given on how many requests in a row).
FAULTS: dict[str, Callable[[Harness], tuple[Fault, int]]] = {
    "connection dropped": lambda h: (Fault.dropped(), ATTEMPTS),
    "500": lambda h: (h.unavailable(500), 2),  # retried past
    "500 on every try": lambda h: (h.unavailable(500), ATTEMPTS),
    "429 without Retry-After": lambda h: (h.rate_limited(None), 2),
    "JSON cut short": lambda h: (Fault(200, {}, CUT_JSON), 1),
    "HTML instead of JSON": lambda h: (Fault(200, {"Content-Type": "text/html"}, HTML), 1),
    "200 without the expected keys": lambda h: (Fault(200, {}, {"unexpected": []}), 1),
    "a page that never ends": lambda h: (Fault(200, {}, {}, stall=STALL), 1),
}


@dataclass
class Sources:
    ports: dict[str, int]  # each service's emulator port, fixed in the server's settings
    server: ServerProcess
    expected: list[Expected]

    @contextlib.contextmanager
    def fresh(self, service: str) -> Iterator[Harness]:
        """A new emulator of the service (no contacts of earlier cases), on its port."""
        harness = harness_of(service)(end_to_end=True)  # type: ignore[call-arg]
        harness.emulator.start(self.ports[service])
        try:
            yield harness
        finally:
            harness.emulator.stop()


@pytest.fixture(scope="module", params=STORES)
def sources(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sources]:
    with store_env(request.param, tmp_path_factory.mktemp("store")) as env:
        ports = {}
        for service in SOURCES:
            with harness_of(service)(end_to_end=True) as harness:  # type: ignore[call-arg]
                ports[service] = int(harness.emulator.url.rsplit(":", 1)[1])
                env = {**env, **harness.server_env()}
        with ServerProcess(env) as server:
            found = Sources(ports, server, [])
            yield found
            with server.client(server.admin_token) as admin:
                broken = broken_promises(Settings.from_env(server.env), admin, found.expected)
    assert broken == []


def sync(admin: Client, name: str, timeout: float = 60) -> pb.SyncReport | grpc.StatusCode:
    try:
        return admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=timeout)
    except grpc.RpcError as error:
        return error.code()


CASES = sample([(s, f) for s in sorted(SOURCES) for f in sorted(FAULTS)], 8)


@pytest.mark.parametrize(("service", "fault"), CASES)
def test_a_fault_in_the_middle_of_a_read_loses_nothing(sources: Sources, service: str, fault: str):
    server = sources.server
    with sources.fresh(service) as harness, server.client(server.admin_token) as admin:
        account = new_account(admin)
        # Two pages, and the fault on the second, where two fit in one window's 500; else one
        # page, and the fault on it.
        count = harness.page_size + 20
        two_pages = count <= WINDOW
        ids = harness.seed(count if two_pages else WINDOW)
        emails = {harness.email_of(i) for i in ids}
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(account_id=account, auto_import=harness.import_message())
        )
        given, times = FAULTS[fault](harness)
        harness.emulator.fail(
            *[
                given.__class__(**{**vars(given), "skip": int(two_pages and n == 0)})
                for n in range(times)
            ]
        )
        since = len(server.output)

        during = sync(admin, created.name, timeout=SYNC_TIMEOUT if "never ends" in fault else 60)
        with harness.emulator.lock:
            harness.emulator.faults.clear()
        after = sync(admin, created.name)

        log = "".join(server.output[since:])
        sources.expected.append(Expected(account, present=emails))
        held = {c.email for c in all_contacts(admin, account)}

    assert during in (grpc.StatusCode.DEADLINE_EXCEEDED,) or isinstance(during, pb.SyncReport)
    if isinstance(during, pb.SyncReport):
        assert during.outcome in (pb.SyncReport.COMPLETED, pb.SyncReport.FAILED)
        assert during.outcome == pb.SyncReport.COMPLETED or during.error
    assert isinstance(after, pb.SyncReport) and after.outcome == pb.SyncReport.COMPLETED, after
    assert emails <= held
    assert "Traceback" not in log and '"level": "ERROR"' not in log


TOKEN_FAULTS = {
    "503": Fault(503, {}, {"error": "backendError"}, path=TOKEN_PATH),
    "connection dropped": Fault.dropped(path=TOKEN_PATH),
}


@pytest.mark.parametrize("fault", sample(sorted(TOKEN_FAULTS), 1))
def test_a_token_endpoint_that_is_down_fails_syncs_without_blaming_the_credentials(
    sources: Sources, fault: str
):
    """Google's access token expired and its token endpoint down: each sync fails saying so,
    but the credentials are not at fault, so however many fail the import stays ACTIVE (not
    NEEDS_REAUTH, which would wait for a person); once the endpoint is back, everything is read."""
    server = sources.server
    with sources.fresh("google_contacts") as harness, server.client(server.admin_token) as admin:
        account = new_account(admin)
        emails = {harness.email_of(i) for i in harness.seed(30)}
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(account_id=account, auto_import=harness.import_message())
        )
        harness.emulator.expire_access_tokens()  # type: ignore[attr-defined]
        failed = []
        for _ in range(AUTH_FAILURES_BEFORE_REAUTH + 1):
            harness.emulator.fail(*[TOKEN_FAULTS[fault]] * ATTEMPTS)
            failed.append(sync(admin, created.name))
            with harness.emulator.lock:
                harness.emulator.faults.clear()
        state = admin.imports.GetImport(pb.GetImportRequest(name=created.name)).state
        after = sync(admin, created.name)
        sources.expected.append(Expected(account, present=emails))
        held = {c.email for c in all_contacts(admin, account)}

    for report in failed:
        assert isinstance(report, pb.SyncReport) and report.outcome == pb.SyncReport.FAILED, report
        assert "Google" in report.error and report.added == 0
    assert state == pb.AutoImport.ACTIVE
    assert isinstance(after, pb.SyncReport) and after.outcome == pb.SyncReport.COMPLETED, after
    assert emails <= held
