"""Bearer API keys mapped to tenants; the tenant always comes from the key, never the body.

`ragbus.service` checks the key of every request but `/healthz` and `/metrics` before any route
runs; the `Tenant` dependency is how a handler learns the tenant, through the same function.
"""

import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragbus.settings import DEFAULT_TENANT

bearer = HTTPBearer(auto_error=False, description="API key; RAGBUS_API_KEYS maps it to a tenant")


def tenant_for(keys: Mapping[str, str], credentials: HTTPAuthorizationCredentials | None) -> str:
    """The tenant of the bearer key; with no keys configured the service is single-tenant.

    Raises 401 for a missing or unknown key. Every configured key is compared, in constant
    time, so the answer's timing tells nothing about which key came close.
    """
    if not keys:
        return DEFAULT_TENANT
    if credentials is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    offered = credentials.credentials.encode()
    found = None
    for key, tenant in keys.items():
        if secrets.compare_digest(key.encode(), offered):
            found = tenant
    if found is None:
        raise _unauthorized("invalid API key")
    return found


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


async def tenant_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The caller's tenant (and the bearer scheme in the OpenAPI document)."""
    return tenant_for(request.app.state.settings.tenant_keys, credentials)


Tenant = Annotated[str, Depends(tenant_of)]


async def operator_of(request: Request, tenant: Tenant) -> str:
    """The caller's tenant, when it may operate the index (`RAGBUS_OPERATOR_TENANTS`)."""
    allowed = {t.strip() for t in request.app.state.settings.operator_tenants.split(",")}
    if tenant not in allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"tenant {tenant!r} may not operate the index (RAGBUS_OPERATOR_TENANTS)",
        )
    return tenant


Operator = Annotated[str, Depends(operator_of)]
