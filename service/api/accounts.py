"""AccountService: accounts and their API keys."""

from __future__ import annotations

from typing import Any

from autoimport.v1 import accounts_pb2, accounts_pb2_grpc
from domain.errors import ValidationError
from service.api.convert import account_message, api_key_message, key_expiration_of, require
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
        expire_time, ttl = key_expiration_of(request)
        key, info = self._app.create_api_key(
            account_id, actor=principal.actor, expire_time=expire_time, ttl=ttl
        )
        return accounts_pb2.CreateApiKeyResponse(
            key=key, key_id=info.key_id, api_key=api_key_message(info)
        )

    def ListApiKeys(
        self, request: accounts_pb2.ListApiKeysRequest, context: Any
    ) -> accounts_pb2.ListApiKeysResponse:
        account_id = require(request.account_id, "account_id")
        current_principal().require_account(account_id)
        keys = self._app.list_api_keys(account_id)
        return accounts_pb2.ListApiKeysResponse(api_keys=[api_key_message(k) for k in keys])

    def RevokeApiKey(
        self, request: accounts_pb2.RevokeApiKeyRequest, context: Any
    ) -> accounts_pb2.ApiKey:
        """The admin, or any key of the account: a key may revoke itself or its siblings."""
        principal = current_principal()
        account_id = require(request.account_id, "account_id")
        key_id = require(request.key_id, "key_id")
        principal.require_account(account_id)
        revoked = self._app.revoke_api_key(account_id, key_id, actor=principal.actor)
        return api_key_message(revoked)
