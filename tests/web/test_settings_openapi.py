"""/openapi.json describes the feeds and groups API, with its error responses."""

from __future__ import annotations

from mamori.web.openapi import SPEC
from mamori.web.settings_openapi import OPENAPI_PATHS


def test_settings_paths_are_in_the_spec_with_their_errors() -> None:
    assert set(OPENAPI_PATHS) == {
        "/api/v1/feeds", "/api/v1/feeds/{name}", "/api/v1/feeds/{name}/refresh",
        "/api/v1/groups", "/api/v1/groups/{name}",
    }  # fmt: skip
    for path, item in OPENAPI_PATHS.items():
        assert SPEC["paths"][path] is item
        for method, op in item.items():
            if method == "parameters":
                continue
            codes = set(op["responses"])
            assert {"401", "403", "429"} <= codes, (path, method)
            if method in ("post", "put", "patch") and not path.endswith("/refresh"):
                assert {"409", "422"} <= codes and "requestBody" in op, (path, method)
            error = op["responses"]["401"]["content"]["application/json"]["schema"]
            assert error["required"] == ["error"] and "field" in error["properties"]
