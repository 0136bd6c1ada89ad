"""The HTTP floor: a FastAPI app with the service's request shape and a fixed 20-item answer, no models.

    uvicorn tools.bench.bare_app:app     (tools/bench/service.py starts it and measures it with wrk)

What it costs to answer is what uvicorn + FastAPI + body validation + sending ~2 KB cost on this machine,
the part of every request no model change can remove.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Response
from pydantic import BaseModel

app = FastAPI()

ANSWER = orjson.dumps(
    {
        "items": [
            {
                "item_id": str(1000 + rank),
                "rank": rank,
                "score": -1.234567,
                "source": "ranker",
                "title": "A film title (1999)",
                "category": "Drama",
            }
            for rank in range(1, 21)
        ],
        "meta": {
            "request_id": "0" * 32,
            "model_version": "bare",
            "index_version": "bare",
            "served_by": "bare",
        },
        "warnings": [],
    }
)


class BareRequest(BaseModel):
    user_id: str | int
    k: int = 10


@app.post("/v1/recommend")
async def recommend(body: BareRequest) -> Response:
    return Response(ANSWER, media_type="application/json")


@app.get("/v1/items/{item_id}/similar")
async def similar(item_id: str, k: int = 10) -> Response:
    return Response(ANSWER, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"status": "ready"}', media_type="application/json")
