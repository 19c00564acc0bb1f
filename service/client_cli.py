"""The client for people: `autoimport accounts|imports|contacts|fields ...` call a server.

Every verb is a function `(args, api) -> View`; `run` connects, calls it, and prints the view or
the error. Nothing here decides what is valid: the server does, and its answer is shown.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2, json_format
from tqdm import tqdm

from autoimport.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    fields_pb2,
    fields_pb2_grpc,
    imports_pb2,
    imports_pb2_grpc,
)
from connectors import SOURCES
from service.client_output import (
    View,
    as_dict,
    cell,
    compact_json,
    emit,
    error_lines,
    record,
    sections,
    table,
)

DEFAULT_ADDRESS = "127.0.0.1:50051"
# Deadlines (seconds) when --timeout is not given: a sync can take minutes, and an upload of a
# CSV file takes as long as the file needs (None: no deadline).
DEFAULT_TIMEOUT = 30.0
SYNC_TIMEOUT = 600.0
CSV_TIMEOUT = None
CHUNK_SIZE = 64 * 1024
# gRPC refuses received messages over 4 MiB by default; leave room for the message's framing.
MAX_CHUNK_SIZE = 4 * 1024 * 1024 - 1024
SERVICES = "{" + ",".join(SOURCES) + "}"
# Each token option falls back on its environment variable, so that secrets can stay off the
# command line.
TOKEN_VARIABLES = {
    "access_token": "AUTOIMPORT_ACCESS_TOKEN",
    "refresh_token": "AUTOIMPORT_REFRESH_TOKEN",
}
# The repeated label fields: their option, its metavar, and what one label is.
LABELS = {"list_ids": ("--list-id", "ID", "list id"), "tags": ("--tag", "TAG", "tag")}

T = TypeVar("T")


class UsageError(Exception):
    """Options that make no request; shown like argparse's errors (exit code 2)."""


class Api:
    """The stubs on one channel; `call` sends the token and the deadline with every request
    (a request, or an iterator of the requests of a client stream)."""

    def __init__(self, channel: grpc.Channel, token: str, timeout: float | None):
        self.accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        self.imports = imports_pb2_grpc.AutoImportServiceStub(channel)
        self.contacts = contacts_pb2_grpc.ContactServiceStub(channel)
        self.fields = fields_pb2_grpc.FieldServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def call(self, method: Callable[..., T], request: Any) -> T:
        return method(request, metadata=self._metadata, timeout=self._timeout)


def run(args: argparse.Namespace) -> int:
    """Runs the verb the arguments name: 0 when it succeeds, 1 when the server says no (or
    answers that something is wrong, as a failed connection check does)."""
    try:
        with connect(args) as api:
            view = args.verb(args, api)
    except UsageError as error:
        args.usage_error(str(error))  # prints the usage and raises SystemExit(2)
        raise
    except grpc.RpcError as error:
        print("\n".join(error_lines(error)), file=sys.stderr)
        return 1
    emit(view, args.json)
    return view.exit_code


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Api]:
    """The one place that opens the channel and picks the token."""
    address = server_address(args.address)
    # --timeout, else the verb's own default deadline.
    timeout = args.timeout if args.timeout is not None else args.default_timeout
    with open_channel(address, args.ca_cert or os.environ.get("AUTOIMPORT_CA_CERT")) as channel:
        yield Api(channel, client_token(args.token), timeout)


def server_address(option: str | None) -> str:
    return option or os.environ.get("AUTOIMPORT_ADDRESS") or DEFAULT_ADDRESS


def open_channel(address: str, ca_cert: str | None) -> grpc.Channel:
    if not ca_cert:
        return grpc.insecure_channel(address)
    try:
        root_certificates = Path(ca_cert).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the CA certificate {ca_cert}: {e.strerror}") from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates))


def client_token(option: str | None) -> str:
    """--token; else $AUTOIMPORT_TOKEN; else the server's admin token: $AUTOIMPORT_ADMIN_TOKEN,
    or the one a local server keeps in its data directory (so that `make run` users need no
    set-up); else none."""
    if option is not None:
        return option
    for variable in ("AUTOIMPORT_TOKEN", "AUTOIMPORT_ADMIN_TOKEN"):
        if token := os.environ.get(variable, "").strip():
            return token
    token_file = Path(os.environ.get("AUTOIMPORT_DATA_DIR") or "./data") / "admin.token"
    return token_file.read_text().strip() if token_file.is_file() else ""


# -- the command line ---------------------------------------------------------------------------


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "client options",
        "for the accounts, imports, contacts and fields commands; give them before the "
        "command, e.g. `autoimport --json imports list --account A`",
    )
    group.add_argument(
        "--address", help=f"server host:port (default: $AUTOIMPORT_ADDRESS, else {DEFAULT_ADDRESS})"
    )
    group.add_argument(
        "--token",
        help="the admin token or an account's API key (default: $AUTOIMPORT_TOKEN, else "
        "$AUTOIMPORT_ADMIN_TOKEN, else the content of $AUTOIMPORT_DATA_DIR/admin.token, "
        "./data/admin.token when unset)",
    )
    group.add_argument(
        "--json", action="store_true", help="print the responses as JSON (proto field names)"
    )
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"deadline of each call (default: {DEFAULT_TIMEOUT:g}; imports sync: "
        f"{SYNC_TIMEOUT:g}; contacts import-csv: none)",
    )
    group.add_argument(
        "--ca-cert",
        metavar="FILE",
        help="connect with TLS, trusting this CA certificate (PEM) (default: $AUTOIMPORT_CA_CERT; "
        "unset: plaintext)",
    )


def add_client_commands(commands: Any) -> None:
    """Adds `accounts`, `imports`, `contacts` and `fields` to the subcommands of the `autoimport`
    parser."""
    accounts = commands.add_parser(
        "accounts",
        help="client: accounts and their API keys",
        description="Accounts and their "
        "API keys. upsert and create-key need the admin token; get also takes the account's key.",
    )
    _add_account_verbs(accounts.add_subparsers(dest="verb_name", required=True, metavar="VERB"))
    imports = commands.add_parser(
        "imports",
        help="client: auto imports",
        description="Auto imports of an account: the admin token or an API key of the account.",
    )
    _add_import_verbs(imports.add_subparsers(dest="verb_name", required=True, metavar="VERB"))
    contacts = commands.add_parser(
        "contacts",
        help="client: an account's contacts, and CSV imports",
        description="The contacts of an account: the admin token or an API key of the account.",
    )
    _add_contact_verbs(contacts.add_subparsers(dest="verb_name", required=True, metavar="VERB"))
    fields = commands.add_parser(
        "fields",
        help="client: an account's custom fields",
        description="The custom fields that imports created in an account: the admin token or "
        "an API key of the account.",
    )
    _add_field_verbs(fields.add_subparsers(dest="verb_name", required=True, metavar="VERB"))


def _verb(
    verbs: Any,
    name: str,
    verb: Callable[..., View],
    help: str,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> argparse.ArgumentParser:
    """A verb's parser; `timeout` is its deadline when --timeout is not given."""
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=help, description=help)
    parser.set_defaults(verb=verb, usage_error=parser.error, default_timeout=timeout)
    return parser


def _add_account_verbs(verbs: Any) -> None:
    upsert = _verb(
        verbs, "upsert", upsert_account, "create an account, or change its plan and limit"
    )
    upsert.add_argument("account_id", metavar="ACCOUNT_ID")
    upsert.add_argument("--plan", required=True, help='e.g. "lite" or "plus"')
    upsert.add_argument("--contact-limit", type=int, required=True, metavar="N")
    get = _verb(verbs, "get", get_account, "show an account")
    get.add_argument("account_id", metavar="ACCOUNT_ID")
    create_key = _verb(
        verbs, "create-key", create_api_key, "create an API key of the account (shown only once)"
    )
    create_key.add_argument("account_id", metavar="ACCOUNT_ID")
    create_key.add_argument(
        "--expires",
        metavar="WHEN",
        help="the key stops working after a duration (e.g. 30d, 12h, 1d12h; units w d h m s) "
        "or at an RFC 3339 time (e.g. 2027-01-31T00:00:00Z); default: never",
    )
    list_keys = _verb(
        verbs, "list-keys", list_api_keys, "the account's API keys (never the keys themselves)"
    )
    list_keys.add_argument("account_id", metavar="ACCOUNT_ID")
    revoke_key = _verb(
        verbs,
        "revoke-key",
        revoke_api_key,
        "revoke an API key of the account: every server refuses it within 1 s",
    )
    revoke_key.add_argument("account_id", metavar="ACCOUNT_ID")
    revoke_key.add_argument("key_id", metavar="KEY_ID")


def _add_import_verbs(verbs: Any) -> None:
    create = _verb(verbs, "create", create_import, "create an import")
    create.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    create.add_argument("--service", required=True, metavar=SERVICES)
    create.add_argument(
        "--external-account",
        required=True,
        metavar="X",
        help="; ".join(f"{s.display_name}: {s.external_account_help}" for s in SOURCES.values()),
    )
    create.add_argument("--display-name", metavar="NAME")
    _add_token_options(create)
    _add_criteria_options(create, resettable=False)
    _add_label_options(create, clearable=False)
    create.add_argument("--request-id", metavar="UUID", help="makes a retried create safe")

    listing = _verb(verbs, "list", list_imports, "list an account's imports (every page)")
    listing.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    listing.add_argument("--service", default="", metavar=SERVICES, help="only this service's")
    listing.add_argument(
        "--page-size", type=int, default=0, metavar="N", help="imports per call (default: 50)"
    )

    update = _verb(
        verbs,
        "update",
        update_import,
        "change the fields the options name, and only those "
        "(a token option replaces both tokens, the absent one taken from its variable)",
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument("--etag", help="fail (ABORTED) if the import changed since this etag")
    update.add_argument("--display-name", metavar="NAME")
    _add_token_options(update)
    update.add_argument(
        "--credentials-from-env",
        action="store_true",
        help="replace the credentials with $AUTOIMPORT_ACCESS_TOKEN and $AUTOIMPORT_REFRESH_TOKEN",
    )
    _add_criteria_options(update, resettable=True)
    _add_label_options(update, clearable=True)

    delete = _verb(verbs, "delete", delete_import, "delete an import (its history stays)")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--etag", help="fail (ABORTED) if the import changed since this etag")
    for name, verb, help in (
        ("get", get_import, "show an import"),
        ("pause", pause_import, "pause an import's syncs"),
        ("resume", resume_import, "resume a paused import"),
        ("history", import_history, "every event of an import, oldest first"),
    ):
        _verb(verbs, name, verb, help).add_argument("name", metavar="NAME")

    services = _verb(verbs, "services", list_services, "the services an import can read")
    services.add_argument("--account", required=True, metavar="ACCOUNT_ID")

    sync = _verb(
        verbs,
        "sync",
        trigger_sync,
        f"run a sync of an import now and show its report (deadline {SYNC_TIMEOUT:g} s unless "
        "--timeout is given); while one runs, show that one's",
        timeout=SYNC_TIMEOUT,
    )
    sync.add_argument("name", metavar="NAME")
    sync.add_argument(
        "--request-id", metavar="UUID", help="makes a retried sync safe: it returns the same report"
    )
    for name, verb, help in (
        (
            "check",
            check_connection,
            "check the credentials, the external account, the scopes and the quota of an "
            "existing import (NAME) or of one about to be created (the create options); saves "
            "nothing; exits 1 when a check fails",
        ),
        (
            "preview",
            preview_import,
            "read the first page the next sync of an import (NAME, or the create options) would "
            "read, and show what it would add, update and skip; saves nothing",
        ),
    ):
        parser = _verb(verbs, name, verb, help, timeout=SYNC_TIMEOUT)
        parser.add_argument("name", nargs="?", default="", metavar="NAME")
        parser.add_argument("--account", metavar="ACCOUNT_ID")
        parser.add_argument("--service", metavar=SERVICES)
        parser.add_argument("--external-account", metavar="X")
        _add_token_options(parser)
        _add_criteria_options(parser, resettable=False)
        if name == "preview":
            parser.add_argument(
                "--sample", type=int, default=0, metavar="N", help="records shown (default 10)"
            )
    syncs = _verb(verbs, "syncs", list_syncs, "an import's syncs, newest first (every page)")
    syncs.add_argument("name", metavar="NAME")
    syncs.add_argument(
        "--page-size", type=int, default=0, metavar="N", help="syncs per call (default: 20)"
    )


def _add_contact_verbs(verbs: Any) -> None:
    listing = _verb(verbs, "list", list_contacts, "list an account's contacts (every page)")
    listing.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    listing.add_argument(
        "--page-size", type=int, default=0, metavar="N", help="contacts per call (default: 50)"
    )
    for name, verb, help in (
        ("get", get_contact, "show a contact, with its custom fields"),
        ("unsubscribe", unsubscribe_contact, "unsubscribe a contact (no import reactivates it)"),
    ):
        parser = _verb(verbs, name, verb, help)
        parser.add_argument("--account", required=True, metavar="ACCOUNT_ID")
        parser.add_argument("email", metavar="EMAIL")

    upload = _verb(
        verbs,
        "import-csv",
        import_csv,
        "import a CSV file (header row first), streamed in chunks with a progress bar on stderr "
        "(no deadline unless --timeout is given)",
        timeout=CSV_TIMEOUT,
    )
    upload.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    upload.add_argument("file", metavar="FILE", help='the CSV file; "-" reads standard input')
    _add_label_options(upload, clearable=False)
    upload.add_argument(
        "--request-id", metavar="UUID", help="makes a retried upload safe: it is applied once"
    )
    upload.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=CHUNK_SIZE,
        metavar="BYTES",
        help=f"bytes per message (default: {CHUNK_SIZE}; at most {MAX_CHUNK_SIZE})",
    )
    upload.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar (none either with --json, or when stderr is not a terminal)",
    )


def _add_field_verbs(verbs: Any) -> None:
    listing = _verb(verbs, "list", list_fields, "list the custom fields imports created")
    listing.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    listing.add_argument(
        "--service", default="", metavar="SERVICE", help="only this service's (e.g. shopify, csv)"
    )


def _add_token_options(parser: argparse.ArgumentParser) -> None:
    for name, variable in TOKEN_VARIABLES.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            metavar="TOKEN",
            help=f"{name.replace('_', ' ')} of the external account (absent: ${variable})",
        )


def _add_criteria_options(parser: argparse.ArgumentParser, resettable: bool) -> None:
    group = parser.add_argument_group(
        "criteria",
        "which contacts to import; options of one service only (they replace the "
        "whole criteria); none: every contact",
    )
    for source in SOURCES.values():
        for criterion in fields(source.criteria_type):
            option = "--" + criterion.name.replace("_", "-")
            help = f"{source.display_name}: {criterion.metadata.get('help', criterion.name)}"
            if criterion.type in (bool, "bool"):
                group.add_argument(option, action="store_true", default=None, help=help)
            else:
                metavar = criterion.name.rpartition("_")[2].upper()
                group.add_argument(option, metavar=metavar, help=help)
    if resettable:
        group.add_argument(
            "--all-contacts", action="store_true", help="reset the criteria: every contact"
        )


def _add_label_options(parser: argparse.ArgumentParser, clearable: bool) -> None:
    for field, (option, metavar, label) in LABELS.items():
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            option,
            dest=field,
            action="append",
            metavar=metavar,
            help=f"a {label} of the imported contacts (repeatable)",
        )
        if clearable:
            group.add_argument(
                "--clear-" + field.replace("_", "-"),
                dest=f"clear_{field}",
                action="store_true",
                help=f"remove every {label}",
            )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds greater than 0")
    return seconds


def _chunk_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 0 < size <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of bytes from 1 to {MAX_CHUNK_SIZE}"
        )
    return size


# -- building requests --------------------------------------------------------------------------


def _credentials(args: argparse.Namespace) -> imports_pb2.Credentials:
    """Each token from its option or, when the option is absent, from its variable."""
    tokens = {name: getattr(args, name) for name in TOKEN_VARIABLES}
    for name, variable in TOKEN_VARIABLES.items():
        if tokens[name] is None:
            tokens[name] = os.environ.get(variable, "")
    return imports_pb2.Credentials(**tokens)


def _criteria_given(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The criteria options given, by the criteria member they belong to."""
    given: dict[str, dict[str, Any]] = {}
    for source in SOURCES.values():
        for criterion in fields(source.criteria_type):
            if getattr(args, criterion.name) is not None:
                given.setdefault(source.id, {})[criterion.name] = getattr(args, criterion.name)
    return given


def _set_criteria(auto_import: imports_pb2.AutoImport, args: argparse.Namespace) -> bool:
    """Sets the criteria member the options belong to; False when no criteria option is given."""
    given = _criteria_given(args)
    if len(given) > 1 or (given and getattr(args, "all_contacts", False)):
        raise UsageError("give the criteria options of one service only, or --all-contacts")
    for member, values in given.items():
        criteria = getattr(auto_import, member)
        criteria.SetInParent()  # set even when every value is the default
        for option, value in values.items():
            setattr(criteria, option, value)
    return bool(given)


def _set_changes(auto_import: imports_pb2.AutoImport, args: argparse.Namespace) -> list[str]:
    """Sets what the update options give; returns the update_mask paths of exactly those."""
    paths = []
    if args.display_name is not None:
        auto_import.display_name = args.display_name
        paths.append("display_name")
    if args.credentials_from_env or any(getattr(args, n) is not None for n in TOKEN_VARIABLES):
        auto_import.credentials.CopyFrom(_credentials(args))
        paths.append("credentials")
    if _set_criteria(auto_import, args) or args.all_contacts:
        paths.append("criteria")
    for field in LABELS:
        if getattr(args, field) or getattr(args, f"clear_{field}"):
            getattr(auto_import, field).extend(getattr(args, field) or [])
            paths.append(field)
    return paths


def _pages(api: Api, method: Callable[..., T], request: Any) -> Iterator[T]:
    """Every page of a List call, following next_page_token (set on `request`)."""
    while True:
        page: Any = api.call(method, request)
        yield page
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def _time(message: Any, field: str) -> str:
    """A Timestamp field as RFC 3339, or "-" when unset."""
    return getattr(message, field).ToJsonString() if message.HasField(field) else cell("")


# -- the verbs ----------------------------------------------------------------------------------


def upsert_account(args: argparse.Namespace, api: Api) -> View:
    account = accounts_pb2.Account(
        account_id=args.account_id, plan=args.plan, contact_limit=args.contact_limit
    )
    request = accounts_pb2.UpsertAccountRequest(account=account)
    return record(api.call(api.accounts.UpsertAccount, request))


def get_account(args: argparse.Namespace, api: Api) -> View:
    request = accounts_pb2.GetAccountRequest(account_id=args.account_id)
    return record(api.call(api.accounts.GetAccount, request))


def create_api_key(args: argparse.Namespace, api: Api) -> View:
    request = accounts_pb2.CreateApiKeyRequest(account_id=args.account_id)
    if args.expires:
        _set_expiry(request, args.expires)
    view = record(api.call(api.accounts.CreateApiKey, request))
    return View(view.data, view.text, note="The key is shown only this once: store it now.")


_DURATION = re.compile(r"(?:\d+[wdhms])+")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def _set_expiry(request: accounts_pb2.CreateApiKeyRequest, expires: str) -> None:
    """--expires: a duration (ttl) or an RFC 3339 time (expire_time). Whether it is one the
    server accepts (not in the past, not zero) is the server's to say."""
    expires = expires.strip()
    if _DURATION.fullmatch(expires):
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(expires))
        if seconds >= 2**63:
            raise UsageError(f"--expires {expires!r} is too long")
        request.ttl.seconds = seconds
        return
    try:
        request.expire_time.FromJsonString(expires)
    except ValueError:
        raise UsageError(
            f"--expires {expires!r}: give a duration such as 30d, 12h or 1d12h, or an RFC 3339 "
            "time such as 2027-01-31T00:00:00Z"
        ) from None


def list_api_keys(args: argparse.Namespace, api: Api) -> View:
    request = accounts_pb2.ListApiKeysRequest(account_id=args.account_id)
    listed = api.call(api.accounts.ListApiKeys, request)
    rows = [
        (
            k.key_id,
            k.prefix,
            cell(k.creator),
            _time(k, "create_time"),
            _time(k, "expire_time"),
            _time(k, "revoke_time"),
        )
        for k in listed.api_keys
    ]
    text = table(("KEY ID", "PREFIX", "CREATOR", "CREATED", "EXPIRES", "REVOKED"), rows)
    return View(as_dict(listed), text)


def revoke_api_key(args: argparse.Namespace, api: Api) -> View:
    request = accounts_pb2.RevokeApiKeyRequest(account_id=args.account_id, key_id=args.key_id)
    return record(api.call(api.accounts.RevokeApiKey, request))


def create_import(args: argparse.Namespace, api: Api) -> View:
    auto_import = imports_pb2.AutoImport(
        service=args.service,
        external_account=args.external_account,
        display_name=args.display_name or "",
        credentials=_credentials(args),
        list_ids=args.list_ids or [],
        tags=args.tags or [],
    )
    _set_criteria(auto_import, args)
    request = imports_pb2.CreateImportRequest(
        account_id=args.account, auto_import=auto_import, request_id=args.request_id or ""
    )
    return record(api.call(api.imports.CreateImport, request))


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The request's target: an existing import by name, or one described by the create
    options."""
    if args.name:
        if args.service or args.external_account or _criteria_given(args):
            raise UsageError("give either NAME or --service/--external-account and criteria")
        return {"name": args.name}
    if not (args.account and args.service and args.external_account):
        raise UsageError("give NAME, or --account, --service and --external-account")
    auto_import = imports_pb2.AutoImport(
        service=args.service,
        external_account=args.external_account,
        credentials=_credentials(args),
    )
    _set_criteria(auto_import, args)
    return {"account_id": args.account, "auto_import": auto_import}


def check_connection(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.CheckConnectionRequest(**_target(args))
    checked = api.call(api.imports.CheckConnection, request)
    rows = [(f.check, "ok" if f.ok else "FAIL", cell(f.detail)) for f in checked.findings]
    verdict = "everything looks right" if checked.ok else "the import would not sync as it is"
    text = sections(table(("CHECK", "", "DETAIL"), rows), verdict)
    return View(as_dict(checked), text, exit_code=0 if checked.ok else 1)


def preview_import(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.PreviewImportRequest(**_target(args), sample_size=args.sample)
    preview = api.call(api.imports.PreviewImport, request)
    summary = record(preview, omit=("skipped", "fields_to_create", "sample")).text
    parts = [summary]
    if preview.fields_to_create:
        parts.append(
            table(
                ("FIELD TO CREATE", "PERSONALIZATION TAG"),
                [(f.title, f.personalization_tag) for f in preview.fields_to_create],
            )
        )
    if preview.sample:
        parts.append(
            table(
                ("EXTERNAL ID", "EMAIL", "NAME", "WOULD BE"),
                [
                    (
                        cell(r.external_id),
                        cell(r.email),
                        cell(f"{r.first_name} {r.last_name}".strip()),
                        r.outcome + (" (unsubscribed)" if r.unsubscribed else ""),
                    )
                    for r in preview.sample
                ],
            )
        )
    if preview.skipped:
        parts.append(
            table(
                ("EXTERNAL ID", "EMAIL", "WOULD BE SKIPPED FOR"),
                [(cell(s.external_id), cell(s.email), cell(s.reason)) for s in preview.skipped],
            )
        )
    return View(as_dict(preview), sections(*parts))


def get_import(args: argparse.Namespace, api: Api) -> View:
    return record(api.call(api.imports.GetImport, imports_pb2.GetImportRequest(name=args.name)))


def list_imports(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.ListImportsRequest(
        account_id=args.account, service=args.service, page_size=args.page_size
    )
    listed = imports_pb2.ListImportsResponse()
    for page in _pages(api, api.imports.ListImports, request):
        listed.auto_imports.extend(page.auto_imports)
        listed.counts_by_service.update(page.counts_by_service)
    rows = [
        (
            i.name,
            i.service,
            i.external_account,
            imports_pb2.AutoImport.State.Name(i.state),
            i.display_name,
        )
        for i in listed.auto_imports
    ]
    counts = ", ".join(f"{s} {n}" for s, n in sorted(listed.counts_by_service.items()))
    text = table(("NAME", "SERVICE", "EXTERNAL ACCOUNT", "STATE", "DISPLAY NAME"), rows)
    return View(as_dict(listed), f"{text}\n\nimports per service: {counts}")


def update_import(args: argparse.Namespace, api: Api) -> View:
    auto_import = imports_pb2.AutoImport(name=args.name, etag=args.etag or "")
    paths = _set_changes(auto_import, args)
    if not paths:
        raise UsageError(
            "nothing to update: give --display-name, --access-token/--refresh-token, criteria "
            "options or --all-contacts, --list-id or --clear-list-ids, --tag or --clear-tags"
        )
    request = imports_pb2.UpdateImportRequest(
        auto_import=auto_import, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    return record(api.call(api.imports.UpdateImport, request))


def delete_import(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.DeleteImportRequest(name=args.name, etag=args.etag or "")
    api.call(api.imports.DeleteImport, request)
    return View({}, f"deleted {args.name}")


def pause_import(args: argparse.Namespace, api: Api) -> View:
    return record(api.call(api.imports.PauseImport, imports_pb2.PauseImportRequest(name=args.name)))


def resume_import(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.ResumeImportRequest(name=args.name)
    return record(api.call(api.imports.ResumeImport, request))


def import_history(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.GetImportHistoryRequest(name=args.name)
    events = list(api.call(api.imports.GetImportHistory, request))
    rows = [
        (
            str(e.version),
            e.time.ToJsonString(),
            e.type,
            e.actor,
            compact_json(json_format.MessageToDict(e.details)),
        )
        for e in events
    ]
    text = table(("VERSION", "TIME", "TYPE", "ACTOR", "DETAILS"), rows)
    return View([as_dict(e) for e in events], text)


def list_services(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.ListServicesRequest(account_id=args.account)
    services = api.call(api.imports.ListServices, request).services
    summary = table(
        ("SERVICE", "DISPLAY NAME", "IMPORTS", "CRITERIA"),
        [(s.id, s.display_name, str(s.import_count), s.criteria_description) for s in services],
    )
    fields = table(
        ("SERVICE", "FIELD", "TITLE", "PERSONALIZATION TAG"),
        [(s.id, f.key, f.title, f.personalization_tag) for s in services for f in s.fields],
    )
    return View({"services": [as_dict(s) for s in services]}, f"{summary}\n\n{fields}")


def trigger_sync(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.TriggerSyncRequest(name=args.name, request_id=args.request_id or "")
    return _sync_report(api.call(api.imports.TriggerSync, request))


def _sync_report(report: imports_pb2.SyncReport) -> View:
    """The outcome and counts; the error when there is one (always when FAILED); then the
    skipped contacts, when any."""
    failed = report.outcome == imports_pb2.SyncReport.FAILED
    view = record(report, omit=("skipped",) if report.error or failed else ("skipped", "error"))
    skipped = [(cell(s.external_id), cell(s.email), cell(s.reason)) for s in report.skipped]
    if not skipped:
        return view
    return View(view.data, sections(view.text, table(("EXTERNAL ID", "EMAIL", "REASON"), skipped)))


def list_syncs(args: argparse.Namespace, api: Api) -> View:
    request = imports_pb2.ListSyncsRequest(name=args.name, page_size=args.page_size)
    listed = imports_pb2.ListSyncsResponse()
    for page in _pages(api, api.imports.ListSyncs, request):
        listed.syncs.extend(page.syncs)
    rows = [
        (
            s.sync_id,
            imports_pb2.SyncReport.Outcome.Name(s.outcome),
            _time(s, "start_time"),
            _time(s, "end_time"),
            *map(str, (s.fetched, s.added, s.updated, s.unchanged)),
            str(s.skipped_missing_email + s.skipped_invalid_email + s.skipped_at_source),
            str(s.deferred),
            str(s.blocked_by_limit),
        )
        for s in listed.syncs
    ]
    headers = ("SYNC ID", "OUTCOME", "START", "END", "FETCHED", "ADDED", "UPDATED", "UNCHANGED")
    text = table((*headers, "SKIPPED", "DEFERRED", "BLOCKED"), rows)
    return View(as_dict(listed), text)


def list_contacts(args: argparse.Namespace, api: Api) -> View:
    request = contacts_pb2.ListContactsRequest(account_id=args.account, page_size=args.page_size)
    listed = contacts_pb2.ListContactsResponse()
    for page in _pages(api, api.contacts.ListContacts, request):
        listed.contacts.extend(page.contacts)
        listed.total_size = page.total_size
    rows = [
        (
            c.email,
            contacts_pb2.Contact.Status.Name(c.status),
            cell(c.first_name),
            cell(c.last_name),
            cell(list(c.list_ids)),
            cell(list(c.tags)),
        )
        for c in listed.contacts
    ]
    text = table(("EMAIL", "STATUS", "FIRST NAME", "LAST NAME", "LISTS", "TAGS"), rows)
    count = f"{listed.total_size} contact{'' if listed.total_size == 1 else 's'}"
    return View(as_dict(listed), sections(text, count))


def get_contact(args: argparse.Namespace, api: Api) -> View:
    request = contacts_pb2.GetContactRequest(account_id=args.account, email=args.email)
    return record(api.call(api.contacts.GetContact, request), expand="fields")


def unsubscribe_contact(args: argparse.Namespace, api: Api) -> View:
    request = contacts_pb2.UnsubscribeContactRequest(account_id=args.account, email=args.email)
    return record(api.call(api.contacts.UnsubscribeContact, request), expand="fields")


def import_csv(args: argparse.Namespace, api: Api) -> View:
    options = contacts_pb2.CsvImportOptions(
        account_id=args.account,
        list_ids=args.list_ids or [],
        tags=args.tags or [],
        request_id=args.request_id or "",
    )
    with _input(args.file) as file, _progress(args, file) as bar:
        options.size_bytes = _size_of(file)  # so that a cut-off stream is refused, not applied
        requests = _csv_requests(options, file, args.chunk_size, bar)
        report = api.call(api.contacts.ImportCsv, requests)
    errors = [(str(e.row), cell(e.reason)) for e in report.errors]
    view = record(report, omit=("errors",))
    if not errors:
        return view
    return View(view.data, sections(view.text, table(("ROW", "REASON"), errors)))


@contextmanager
def _input(path: str) -> Iterator[IO[bytes]]:
    """The file to upload, opened for reading in binary; "-": standard input."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below, after the upload)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    with file:
        yield file


def _progress(args: argparse.Namespace, file: IO[bytes]) -> tqdm[Any]:
    """A bar on stderr of the bytes sent, of the file's size when it is a regular file; none with
    --json or --quiet, or when stderr is not a terminal."""
    try:
        status = os.fstat(file.fileno())
        size = status.st_size if stat.S_ISREG(status.st_mode) else None
    except (OSError, ValueError):  # not a file descriptor (e.g. an in-memory stream)
        size = None
    return tqdm(
        total=size,
        desc="stdin" if args.file == "-" else Path(args.file).name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=args.json or args.quiet or not sys.stderr.isatty(),
    )


def _size_of(file: IO[bytes]) -> int:
    """A regular file's size in bytes; 0 (unknown) for a pipe or a terminal."""
    try:
        status = os.fstat(file.fileno())
    except (OSError, ValueError):
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


def _csv_requests(
    options: contacts_pb2.CsvImportOptions, file: IO[bytes], chunk_size: int, bar: tqdm[Any]
) -> Iterator[contacts_pb2.ImportCsvRequest]:
    """The options, then the file's bytes chunk by chunk: never the whole file in memory.
    gRPC asks for the next message once it took the last one, so the bar counts bytes sent."""
    yield contacts_pb2.ImportCsvRequest(options=options)
    while chunk := file.read(chunk_size):
        yield contacts_pb2.ImportCsvRequest(chunk=chunk)
        bar.update(len(chunk))


def list_fields(args: argparse.Namespace, api: Api) -> View:
    request = fields_pb2.ListFieldsRequest(account_id=args.account, service=args.service)
    listed = api.call(api.fields.ListFields, request)
    rows = [
        (f.title, f.personalization_tag, f.service, _time(f, "create_time")) for f in listed.fields
    ]
    text = table(("TITLE", "PERSONALIZATION TAG", "SERVICE", "CREATED"), rows)
    return View(as_dict(listed), text)
