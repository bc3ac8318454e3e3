from __future__ import annotations

from fastapi import APIRouter

from parley.api.deps import AuthorizedRoute
from parley.api.openapi import Health
from parley.api.responses import JSONResponse

router = APIRouter(route_class=AuthorizedRoute, tags=["operations"])


@router.get("/health", summary="Liveness for load balancers", responses={200: {"model": Health}})
async def health() -> JSONResponse:
    # Deliberately touches nothing: a node that answers is alive. Readiness of the
    # database shows in the requests themselves (503 SERVICE_UNAVAILABLE).
    return JSONResponse({"status": "ok"})
