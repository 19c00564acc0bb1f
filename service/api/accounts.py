"""AccountService: accounts and their API keys."""

from __future__ import annotations

from typing import Any

from autoimport.v1 import accounts_pb2, accounts_pb2_grpc
from domain.errors import ValidationError
from service.api.convert import account_message, require
from service.api.interceptors import current_principal
from service.application import AutoImports


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, app: AutoImports):
        self._app = app

    def UpsertAccount(
        self, request: accounts_pb2.UpsertAccountRequest, context: Any
    ) -> accounts_pb2.Account:
        principal = current_principal()
        principal.require_admin()
        account = request.account
        try:
            upserted = self._app.upsert_account(
                account.account_id, account.plan, account.contact_limit, actor=principal.actor
            )
        except ValidationError as e:
            raise e.under("account") from None
        return account_message(upserted)

    def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: Any
    ) -> accounts_pb2.Account:
        account_id = require(request.account_id, "account_id")
        current_principal().require_account(account_id)
        return account_message(self._app.get_account(account_id))

    def CreateApiKey(
        self, request: accounts_pb2.CreateApiKeyRequest, context: Any
    ) -> accounts_pb2.CreateApiKeyResponse:
        principal = current_principal()
        principal.require_admin()
        account_id = require(request.account_id, "account_id")
        key, key_id = self._app.create_api_key(account_id, actor=principal.actor)
        return accounts_pb2.CreateApiKeyResponse(key=key, key_id=key_id)
