"""Whose fault a member's error reply is: the client's request, or the member.

The difference decides everything after it. A request the member refuses as unusable would
be refused by every member alike: retrying it elsewhere and counting it against each one
lets three requests from any caller take the whole pool out of rotation. So such a reply
goes back to the client as its own 400 and the member stays as it was; only what is the
member's doing (no connection, a timeout, a broken stream, an error page that is not its
own JSON, a failed probe) is retried and counted against it.

So the body decides as much as the status: a 4xx is the request's only when it is the
member's own JSON (an HTML or text page comes from a proxy in front of a remote member, or
from something that is no llama.cpp server), and a 5xx only when its type names the
request. llama-server's replies, as measured (tests/test_gateway_llama_server_blame.py
tries them): a request it cannot use is 400 {"error": {"type": "invalid_request_error"}};
a model still loading is 503 {"error": {"type": "unavailable_error"}}; anything that throws
inside it is 500 {"error": {"type": "server_error"}}, which is the member's: the request
shapes that made it throw (a message name that is an object, a lone surrogate) the
gateway refuses itself before any member sees them, and a decode that fails (out of
memory, a broken model) says the same.
"""

from __future__ import annotations

import json

from pool.gateway import errors

# Statuses that speak of the member, whatever the body says: the gateway's own key refused
# (401, 403), a path the member lacks (404, 405), the member too busy or gone (408, 429, and
# 502-504, which come from proxies in front of a remote member, or a loading llama-server).
MEMBER_STATUSES = frozenset({401, 403, 404, 405, 408, 429, 502, 503, 504})
# Error types members use for their own state, not the request's.
MEMBER_TYPES = frozenset({"unavailable_error", "authentication_error", "permission_error"})
# Error types that name the request, whatever the status they come with.
REQUEST_TYPES = frozenset({"invalid_request_error", "exceed_context_size_error", "not_supported_error"})
# The part of a member's error reply that is read to judge it.
READ_BYTES = 4096


def about_the_request(status: int, body: bytes) -> bool:
    """True when a member's error reply (status >= 400) is about the request it was sent."""
    if status in MEMBER_STATUSES or status >= 600:
        return False
    if status < 500:
        return _is_json_object(body) and _error_type(body) not in MEMBER_TYPES
    return _error_type(body) in REQUEST_TYPES


def client_error(status: int, body: bytes) -> errors.ApiError:
    """What the client is told, in OpenAI's shape: that the model server refused the request,
    without the member's name or text (the operator's log keeps both). A prompt past the
    member's context is named, as OpenAI names it, so a client can shorten it."""
    if _error_type(body) == "exceed_context_size_error":
        return errors.invalid(
            "the prompt and max_tokens together are longer than the model's context; shorten them",
            code="context_length_exceeded",
        )
    return errors.invalid(
        "the model server could not use this request; check it against /v1/openapi.json",
        code="rejected_by_model_server",
    )


def _error_type(body: bytes) -> str | None:
    """The `type` of a body shaped {"error": {"message": ..., "type": ...}}, "" where it has
    no type; None where the body is not such JSON (an HTML page, plain text, a cut body)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    kind = error.get("type")
    return kind if isinstance(kind, str) else ""


def _is_json_object(body: bytes) -> bool:
    """The member's own reply: OpenAI's error shape, or FastAPI's {"detail": ...} from
    llama-cpp-python; not a proxy's page."""
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
