"""The errors every API operation can answer, added to the OpenAPI schema in one place.

Views document the errors that are theirs (a 409 for a finished batch); these
come from the framework around them, so no view would list them, and clients
generated from the schema were surprised by them: 401 without credentials,
404 for an id that is not there (or not yours) and for a page past the end,
503 with Retry-After while a dependency is down (jobs.outages).
"""

from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/Error"}
UNAUTHENTICATED = "No credentials, or credentials that are not valid (`not_authenticated`)."
NOT_FOUND = "No such object, or one of another organisation; or a page past the end (`invalid_page`)."
UNAVAILABLE = "A dependency is down (`database_unavailable`, ...): try again after `Retry-After` seconds."


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}, **extra}


def _common_errors(path: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = {parameter["name"] for parameter in operation.get("parameters", [])}
    errors: dict[str, dict[str, Any]] = {}
    if operation.get("security", [{}]) != [{}]:  # [{}]: the signed link, whose token is the credential
        errors["401"] = _error(UNAUTHENTICATED)
    if "{" in path or "page" in names:
        errors["404"] = _error(NOT_FOUND)
    errors["503"] = _error(UNAVAILABLE, headers={"Retry-After": {"schema": {"type": "integer"}}})
    return errors


def add_common_errors(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    if "Error" not in result.get("components", {}).get("schemas", {}):
        raise ValueError("no view documents jobs.api.errors.ERROR, so the Error component is missing")
    for path, item in result.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status, response in _common_errors(path, operation).items():
                responses.setdefault(status, response)
    return result
