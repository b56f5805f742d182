"""The IBR OpenAPI spec (spec/ibr_api_v1.0.0.yaml) as JSON Schema validators, for the tests.

An oracle independent of the sandbox's own validator (src/sandbox/spec.rs): the YAML itself,
read with PyYAML, checked by Python's ``jsonschema`` (draft 4, the base of OpenAPI 3.0 schema
objects: siblings of ``$ref`` are ignored) with the ``date-time`` and ``uri`` format checkers of
``rfc3339-validator`` and ``rfc3986-validator`` and an ``int32`` checker of ours.

The documented defects of the document (spec/README.md) are read leniently by :func:`_lenient`,
one patch per defect, each with its reason. The sandbox applies the same leniencies; they are
written twice on purpose, so that each side checks the other.

    assert_request("/registry/search", body)      # a request (or callback) body of a route
    assert_answer("/registry/sync/search", body)  # the successful answer of a route
    assert_callback(body)                         # a callback, by its header.action
    assert_error(body)                            # {"errors": [...]} with the spec's codes
"""

from __future__ import annotations

import ast
import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"
YAML_PATH = SPEC_DIR / "ibr_api_v1.0.0.yaml"
JSON_PATH = SPEC_DIR / "ibr_api_v1.0.0.json"  # the copy the sandbox embeds (make spec-json)

_URI = "urn:spec:ibr_api_v1.0.0"

#: The spec route of each callback action.
CALLBACK_ROUTES = {
    "on-search": "/registry/on-search",
    "on-subscribe": "/registry/on-subscribe",
    "on-unsubscribe": "/registry/on-unsubscribe",
    "txn-on-status": "/registry/txn/on-status",
    "notify": "/registry/notify",
}


@functools.cache
def document() -> dict[str, Any]:
    """The spec as written (the YAML)."""
    doc: dict[str, Any] = yaml.safe_load(YAML_PATH.read_text(encoding="utf-8"))
    return doc


def _ptr(path: str) -> str:
    """``/paths/<path>/post`` as a JSON pointer."""
    return "/paths/" + path.replace("~", "~0").replace("/", "~1") + "/post"


def _at(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.strip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _set(doc: Any, pointer: str, value: Any) -> None:
    parent_pointer, _, last = pointer.rpartition("/")
    parent = _at(doc, parent_pointer)
    if isinstance(parent, list):
        parent[int(last)] = value
    else:
        parent[last.replace("~1", "/").replace("~0", "~")] = value


def _lenient(doc: dict[str, Any]) -> dict[str, Any]:
    """The spec with its documented defects read leniently: each patch widens what the document
    accepts to what it plainly means, never more."""
    doc = copy.deepcopy(doc)
    schemas = "/components/schemas"
    # 1. An identifier/attribute value is `oneOf [string, integer, number, boolean, object]`: an
    #    integer is also a number, so as written `oneOf` refuses every integer. Meant: any of them.
    value = _at(
        doc, f"{schemas}/SubscriptionInfo/properties/filter/anyOf/1/properties/value/allOf/1"
    )
    value["anyOf"] = value.pop("oneOf")
    # 2. `enrollement` / `enrollement_status_change` are misspelt in the standard itself; peers
    #    that correct them are accepted too.
    _at(
        doc,
        f"{schemas}/NotifyEventRequest/properties/notify_event/items/properties/data"
        "/properties/reg_event_type/enum",
    ).extend(["enrollment", "enrollment_status_change"])
    # 3. EnrolledResponse requires `enrolled_status` on every item, even a rejected one, which has
    #    no answer to give (a made-up "no" would read as "not enrolled"): a `rjct` item may omit it.
    item = _at(doc, f"{schemas}/EnrolledResponse/properties/enrolled_response/items")
    item["required"].remove("enrolled_status")
    item["anyOf"] = [
        {"properties": {"status": {"enum": ["rjct"]}}},
        {"required": ["enrolled_status"]},
    ]
    # 4. `txn_type` may be `subscribe`, but `txn_status` only offers a SearchResponse or a receipt:
    #    the status of a subscribe transaction is its SubscribeResponse.
    _at(
        doc,
        f"{schemas}/TxnStatusResponse/properties/txnstatus_response/properties/txn_status/oneOf",
    ).append({"$ref": "#/components/schemas/SubscribeResponse"})
    # 5. on-subscribe / on-unsubscribe reuse the request header schema; a callback-style header (as
    #    every other callback has) is accepted too.
    for route in ("/registry/on-subscribe", "/registry/on-unsubscribe"):
        pointer = (
            _ptr(route) + "/requestBody/content/application~1json/schema/properties/header/allOf/0"
        )
        _set(
            doc,
            pointer,
            {
                "anyOf": [
                    _at(doc, pointer),
                    {"$ref": "#/components/schemas/MsgCallbackHeader_V1.0.0"},
                ]
            },
        )
    # 6. /registry/sync/enrolled and /registry/sync/enrollment/updates point `responses.default` at
    #    a schema, not a response object; their answers are the bare message in practice,
    #    sometimes in a callback-style envelope: either is accepted.
    for route in ("/registry/sync/enrolled", "/registry/sync/enrollment/updates"):
        pointer = _ptr(route) + "/responses/default"
        message = _at(doc, pointer)
        envelope = {
            "type": "object",
            "properties": {
                "signature": {"$ref": "#/components/schemas/MsgSignature"},
                "header": {"$ref": "#/components/schemas/MsgCallbackHeader_V1.0.0"},
                "message": {
                    "type": "object",
                    "oneOf": [message, {"$ref": "#/components/schemas/EncryptedMessage"}],
                },
            },
            "required": ["header", "message"],
        }
        _set(
            doc,
            pointer,
            {
                "description": "The bare message, or the message in an envelope",
                "content": {"application/json": {"schema": {"anyOf": [message, envelope]}}},
            },
        )
    # Not patched: `components.securitySchemas` (misspelt) describes no body; the `locale` example
    # `en` breaks its own pattern `^[a-z]{3}$`, which stays enforced (we send `eng`).
    return doc


@functools.cache
def lenient_document() -> dict[str, Any]:
    return _lenient(document())


def _int32(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return float(value).is_integer() and -(2**31) <= value <= 2**31 - 1


@functools.cache
def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    draft4 = jsonschema.Draft4Validator.FORMAT_CHECKER
    for name in ("date-time", "uri"):
        if name not in draft4.checkers:  # its package is missing: the check would pass silently
            raise RuntimeError(f"jsonschema cannot check the {name!r} format (requirements-dev)")
        checker.checkers[name] = draft4.checkers[name]
    checker.checks("int32")(_int32)
    return checker


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource(contents=lenient_document(), specification=DRAFT4)
    return Registry().with_resource(_URI, resource)


def _validator(pointer: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        {"$ref": f"{_URI}#{pointer}"}, registry=_registry(), format_checker=_format_checker()
    )


def _location(error: jsonschema.ValidationError) -> str:
    """``header.sender_uri``, ``message.search_request[0].timestamp``; a missing member is
    located at its own place (``header.sender_id``), ``(body)`` is the whole."""
    steps = list(error.absolute_path)
    if error.validator == "required":
        steps.append(ast.literal_eval(error.message.removesuffix(" is a required property")))
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else ("." if out else "") + str(step)
    return out or "(body)"


def _flatten(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """An error, or when no alternative (anyOf/oneOf) matched, the errors of the alternative that
    got deepest into the body: the one the sender most likely meant."""
    if not error.context:
        return [error]
    by_alternative: dict[Any, list[jsonschema.ValidationError]] = {}
    for e in error.context:
        by_alternative.setdefault(e.relative_schema_path[0], []).append(e)
    closest = max(
        by_alternative.values(), key=lambda errors: max(len(e.absolute_path) for e in errors)
    )
    return [flat for e in closest for flat in _flatten(e)]


def _problems(pointer: str, body: Any) -> list[str]:
    errors = [flat for e in _validator(pointer).iter_errors(body) for flat in _flatten(e)]
    return sorted({f"{_location(e)}: {e.message}" for e in errors})


def request_pointer(path: str) -> str:
    return _ptr(path) + "/requestBody/content/application~1json/schema"


def answer_pointer(path: str) -> str:
    response = _at(lenient_document(), _ptr(path) + "/responses/default")
    if "$ref" in response:
        return response["$ref"].lstrip("#") + "/content/application~1json/schema"
    return _ptr(path) + "/responses/default/content/application~1json/schema"


ERROR_POINTER = "/components/responses/HttpErrorResponse/content/application~1json/schema"


def request_problems(path: str, body: Any) -> list[str]:
    """What is wrong with a request (or callback) body of ``POST path``; empty when it conforms."""
    return _problems(request_pointer(path), body)


def answer_problems(path: str, body: Any) -> list[str]:
    return _problems(answer_pointer(path), body)


def error_codes() -> list[str]:
    """The spec's ``Error.code`` enum."""
    codes: list[str] = lenient_document()["components"]["schemas"]["Error"]["properties"]["code"][
        "enum"
    ]
    return codes


def assert_request(path: str, body: Any) -> None:
    problems = request_problems(path, body)
    assert not problems, f"POST {path} body does not conform to the spec: {problems}\n{body}"


def assert_answer(path: str, body: Any) -> None:
    problems = answer_problems(path, body)
    assert not problems, f"the answer of POST {path} does not conform to the spec: {problems}"


def assert_callback(body: Any) -> None:
    action = body["header"]["action"]
    assert action in CALLBACK_ROUTES, action
    assert_request(CALLBACK_ROUTES[action], body)


def assert_error(body: Any) -> None:
    """An error body of the spec's shape, with codes of its ``Error`` enum."""
    problems = _problems(ERROR_POINTER, body)
    assert not problems, f"error body does not conform: {problems}"
    assert isinstance(body, dict) and body.get("errors"), body
    for error in body["errors"]:
        assert error["code"] in error_codes(), error
        assert isinstance(error["message"], str) and error["message"], error
