"""A short schemathesis run against the app's own OpenAPI (the long one is
`python -m bench.fuzz_api`): no generated request gets a server error or a response that
breaks its documented schema."""

from __future__ import annotations

import pytest

from bench.fuzz_api import run


# Every operation is exercised (sign-in and user management among them): about 100 s on this
# 2-core machine when other work shares it, close to the suite's default limit.
@pytest.mark.timeout(300)
def test_generated_requests_get_no_server_error_and_match_the_schema() -> None:
    result = run(max_examples=2, seed=20261123)
    assert result["generated"] > 300, result["output"]  # every operation was exercised
    assert result["ok"] and result["failed"] == 0 and result["passed"] == result["generated"], result["output"]
