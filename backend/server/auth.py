"""Bearer-token check shared by every route but health."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def require_token(request: Request) -> None:
    expected = request.app.state.settings.token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(
            401,
            {"code": "unauthorized", "message": "Missing or wrong token. Send 'Authorization: Bearer <token>' "
             "with the token from the backend's state file (backend.json)."},
            headers={"WWW-Authenticate": "Bearer"},
        )
