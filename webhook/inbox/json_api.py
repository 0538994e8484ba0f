"""What every endpoint of the inbox's JSON API shares: the body parsed into its model, a path id
checked, and the `{"ok": true, ...}` answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from waypost.errors import InvalidBody
from webhook.inbox import store


async def parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidBody(
            "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        ) from None


def path_id(request: Request, name: str) -> int:
    return store.row_id(request.path_params[name], name.removesuffix("_id"))


def ok(status: int = 200, **body: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **body}, status_code=status)
