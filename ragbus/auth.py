"""Bearer API keys mapped to tenants; the tenant always comes from the key, never the body."""

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragbus.settings import DEFAULT_TENANT, CommonSettings

_bearer = HTTPBearer(auto_error=False, description="API key; RAGBUS_API_KEYS maps it to a tenant")


def tenant_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's tenant. With no keys configured the service is single-tenant."""
    settings: CommonSettings = request.app.state.settings
    keys = settings.tenant_keys
    if not keys:
        return DEFAULT_TENANT
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    for key, tenant in keys.items():
        if secrets.compare_digest(key.encode(), credentials.credentials.encode()):
            return tenant
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
    )


Tenant = Annotated[str, Depends(tenant_of)]
