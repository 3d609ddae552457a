"""Dependencies: routes never parse credentials or open sessions themselves."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicom_pipeline.runtime import Runtime
from webhook.launcher import RunLauncher

bearer = HTTPBearer(auto_error=False, description="The token in DICOM_PIPELINE_WEBHOOK_TOKEN")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_launcher(request: Request) -> RunLauncher:
    launcher: RunLauncher = request.app.state.launcher
    return launcher


def require_token(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected = runtime.settings.webhook_token.get_secret_value().encode()
    supplied = (credentials.credentials if credentials else "").encode()
    # Constant-time comparison: the answer's timing says nothing about the token.
    if not credentials or not hmac.compare_digest(supplied, expected):
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
LauncherDep = Annotated[RunLauncher, Depends(get_launcher)]
Authenticated = Depends(require_token)
