"""Fuzzing the running API from its own OpenAPI with schemathesis: valid and invalid generated requests
to every operation; every answer must be below 500, and every error in the one documented shape."""

from __future__ import annotations

from typing import Any

import httpx


def _error_shape_ok(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message", "request_id"}
        and isinstance(error["code"], str)
        and isinstance(error["request_id"], str)
    )


def fuzz(base_url: str, headers: dict[str, str], minimum_requests: int) -> dict[str, Any]:
    """Runs generated cases until at least ``minimum_requests`` were sent; returns the tallies."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    tally: dict[str, Any] = {
        "requests": 0,
        "server_errors": 0,
        "bad_error_shape": 0,
        "by_status": {},
        "examples": [],
    }
    client = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def record(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
        request = client.build_request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=kwargs.get("headers"),
            json=kwargs.get("json"),
            content=kwargs.get("data") if isinstance(kwargs.get("data"), (bytes, str)) else None,
        )
        response = client.send(request)
        tally["requests"] += 1
        status = str(response.status_code)
        tally["by_status"][status] = tally["by_status"].get(status, 0) + 1
        failure = None
        if response.status_code >= 500:
            tally["server_errors"] += 1
            failure = "5xx"
        elif response.status_code >= 400 and not _error_shape_ok(response):
            tally["bad_error_shape"] += 1
            failure = "shape"
        if failure and len(tally["examples"]) < 10:
            tally["examples"].append(
                {"failure": failure, "curl": case.as_curl_command(), "body": response.text[:300]}
            )

    rounds = 0
    while tally["requests"] < minimum_requests and rounds < 10:
        rounds += 1
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    strategy = operation.as_strategy(generation_mode=mode)
                except Exception:
                    continue

                @hypothesis.settings(
                    max_examples=150,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    derandomize=False,
                )
                @hypothesis.given(strategy)
                def run(case: Any) -> None:
                    record(case)

                try:
                    run()
                except hypothesis.errors.Unsatisfiable:
                    continue
    client.close()
    tally["operations"] = len(operations)
    tally["failed"] = tally["server_errors"] + tally["bad_error_shape"]
    return tally
