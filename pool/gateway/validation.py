"""What the gateway accepts, written once as data: the same table validates requests and
becomes the OpenAPI document's schemas, so the two cannot disagree.

Only fields listed here are forwarded to members; anything else is refused by name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from pool.gateway.errors import invalid
from pool.gateway.students import student_name
from pool.gateway.tutor import HINTS, MODES, SOLUTION

TASKS = ("general", "math", "code")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Field:
    kind: str  # string, integer, number, boolean, object, string_or_array, messages, stream_options
    required: bool = False
    minimum: float | None = None
    maximum: float | str | None = None  # a str names a setting, read at validation time
    description: str = ""

    def max_value(self) -> float | None:
        return getattr(settings, self.maximum) if isinstance(self.maximum, str) else self.maximum


COMMON = {
    "model": Field("string", required=True, description="The served model's id, or the alias `vibethinker`."),
    "max_tokens": Field(
        "integer", minimum=1, maximum="VIBEADMIN_MAX_TOKENS", description="Tokens to generate at most."
    ),
    "temperature": Field("number", minimum=0, maximum=2),
    "top_p": Field("number", minimum=0, maximum=1),
    "presence_penalty": Field("number", minimum=-2, maximum=2),
    "frequency_penalty": Field("number", minimum=-2, maximum=2),
    "seed": Field("integer", minimum=-(2**63), maximum=2**63 - 1),
    "n": Field("integer", minimum=1, maximum=1, description="Only one choice per request."),
    "stop": Field("string_or_array", description="A stop string or up to 4 of them."),
    "stream": Field("boolean", description="Send tokens as server-sent events as they come."),
    "stream_options": Field("stream_options", description='Only {"include_usage": true | false}.'),
    "user": Field(
        "string",
        description="The student this request is for (the platform's own name for them, at most 128 "
        "printable characters; or the header X-Vibeadmin-User): the key's per-student limits apply to it.",
    ),
    "vibeadmin": Field(
        "object",
        description='vibeadmin\'s own options: {"task": "general" | "math" | "code", "mode": "solution" | '
        '"hints" (a hint toward the next step instead of the answer), "progress": true (with stream: '
        "`event: vibeadmin` lines with the place in line and the predicted wait before the first token), "
        '"samples": k (k independent answers; the reply is the majority final answer\'s, with '
        "`vibeadmin.agreement`)}.",
    ),
}
CHAT_FIELDS = {"messages": Field("messages", required=True), **COMMON}
COMPLETION_FIELDS = {"prompt": Field("string", required=True), **COMMON}

_TYPES: dict[str, tuple[type[Any], ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass
class Validated:
    body: dict[str, Any]  # what goes to the member
    task: str
    stream: bool
    mode: str = SOLUTION
    progress: bool = False  # the caller wants its place in line while it waits (streams only)
    samples: int = 0  # independent answers to vote on (0: the tenant's default; capped in app.py)
    user: str = ""  # the student it is for (students.py); "": the key's own
    problem: str = ""  # hints mode: the student's first question as asked (hints.py checks against it)
    check_hint: bool = False  # hints mode, and not the full solution asked for: the reply is checked


# A lone UTF-16 surrogate: json.loads accepts "\ud800" and Python keeps it, but it is no
# character; members answer it with errors, and encoding it to UTF-8 raises.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A stop string longer than this is no stop string a client means (members scan each one
# against every token they write).
MAX_STOP_CHARS = 200

# Nesting deeper than this is refused: no request needs it, and objects the gateway
# forwards unread (stream_options) must not carry a structure that costs to re-encode.
MAX_DEPTH = 16


class _NotFinite(ValueError):
    """NaN, Infinity or a number too large for a double: JSON has no such numbers."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _no_constant(name: str) -> float:
    raise _NotFinite(name)


# Built once: json.loads with hooks would build a decoder on every request.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 in OpenAI's shape for anything else: invalid
    JSON, NaN/Infinity (which Python's json accepts and members would choke on), or
    nesting too deep (Python's parser gives up with RecursionError near 1,000 levels)."""
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))  # as json.loads does
    except _NotFinite as exc:
        raise invalid(f"numbers must be finite; {str(exc)[:20]!r} is not", code="invalid_json") from None
    except RecursionError:
        raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels", code="too_deep") from None
    except (UnicodeDecodeError, ValueError):
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(body, MAX_DEPTH):
        raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels", code="too_deep")
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Only containers are walked, and each at most once: strings and numbers cost nothing."""
    if limit < 0:
        return True
    if isinstance(value, dict):
        return any(_deeper_than(v, limit - 1) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list):
        return any(_deeper_than(v, limit - 1) for v in value if isinstance(v, dict | list))
    return False


def validate(body: dict[str, Any], fields: dict[str, Field]) -> Validated:
    """Every field a member is sent is checked to its type and range here: what a member
    would refuse must be refused first, since its refusal could read as its own fault."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}", param=unknown[0], code="unknown_field")
    for name, spec in fields.items():
        if name not in body or body[name] is None:
            if spec.required:
                raise invalid(f"{name!r} is required", param=name, code="missing_field")
            continue
        _check(name, body[name], spec)
    options = body.get("vibeadmin") or {}
    if set(options) - {"task", "mode", "progress", "samples"}:
        raise invalid("vibeadmin takes only 'task', 'mode', 'progress' and 'samples'", param="vibeadmin")
    task = options.get("task", "general")
    if not isinstance(task, str) or task not in TASKS:
        raise invalid(f"vibeadmin.task must be one of {', '.join(TASKS)}", param="vibeadmin.task")
    mode, progress = _tutor_options(options, body)
    if sum(len(text) for text in prompt_texts(body)) > settings.VIBEADMIN_MAX_PROMPT_CHARS:
        raise invalid(
            f"the prompt is longer than {settings.VIBEADMIN_MAX_PROMPT_CHARS} characters",
            param="messages" if "messages" in body else "prompt",
            code="prompt_too_long",
        )
    forwarded = {k: v for k, v in body.items() if k != "vibeadmin" and v is not None}
    forwarded.setdefault(
        "max_tokens", min(settings.VIBEADMIN_DEFAULT_MAX_TOKENS, settings.VIBEADMIN_MAX_TOKENS)
    )
    samples = options.get("samples", 0)
    if type(samples) is not int or samples < 1 and "samples" in options:
        raise invalid("vibeadmin.samples must be a whole number, 1 or more", param="vibeadmin.samples")
    user = student_name(body.get("user"), param="user")
    return Validated(forwarded, task, bool(body.get("stream")), mode, progress, samples, user=user)


def _tutor_options(options: dict[str, Any], body: dict[str, Any]) -> tuple[str, bool]:
    """vibeadmin.mode and vibeadmin.progress, checked."""
    mode = options.get("mode", SOLUTION)
    if mode not in MODES:
        raise invalid(f"vibeadmin.mode must be one of {', '.join(MODES)}", param="vibeadmin.mode")
    if mode == HINTS and "messages" not in body:
        raise invalid("vibeadmin.mode 'hints' needs a chat request (messages)", param="vibeadmin.mode")
    progress = options.get("progress", False)
    if not isinstance(progress, bool):
        raise invalid("vibeadmin.progress must be a boolean", param="vibeadmin.progress")
    if progress and not body.get("stream"):
        raise invalid("vibeadmin.progress needs stream: true", param="vibeadmin.progress")
    return mode, progress


def _check(name: str, value: Any, spec: Field) -> None:
    if spec.kind == "messages":
        return _check_messages(value)
    if spec.kind == "stream_options":
        return _check_stream_options(value)
    if spec.kind == "string_or_array":
        ok = isinstance(value, str) or (
            isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise invalid(f"{name!r} must be a string or a list of up to 4 strings", param=name)
        for text in [value] if isinstance(value, str) else value:
            if not text or len(text) > MAX_STOP_CHARS:
                raise invalid(f"each {name!r} string must be 1 to {MAX_STOP_CHARS} characters", param=name)
            _check_text(text, name)
        return
    # bool is an int in Python; JSON's true is not a number.
    if not isinstance(value, _TYPES[spec.kind]) or (isinstance(value, bool) and spec.kind != "boolean"):
        raise invalid(f"{name!r} must be {'an' if spec.kind[0] in 'aeiou' else 'a'} {spec.kind}", param=name)
    if isinstance(value, str):
        _check_text(value, name)
    if isinstance(value, float) and not math.isfinite(value):  # a body built in Python, not parsed
        raise invalid(f"{name!r} must be a finite number", param=name)
    if spec.minimum is not None and value < spec.minimum:
        raise invalid(f"{name!r} must be at least {spec.minimum:g}", param=name)
    top = spec.max_value()
    if top is not None and value > top:
        raise invalid(f"{name!r} must be at most {top:g}", param=name)


def _check_text(text: str, where: str) -> None:
    if _SURROGATE.search(text):
        raise invalid(
            f"{where!r} holds a lone UTF-16 surrogate (such as \\ud800), which is no character",
            param=where,
            code="invalid_unicode",
        )


def _check_stream_options(value: Any) -> None:
    if (
        not isinstance(value, dict)
        or set(value) - {"include_usage"}
        or not isinstance(value.get("include_usage", False), bool)
    ):
        raise invalid(
            "'stream_options' may only be {\"include_usage\": true or false}", param="stream_options"
        )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object with 'role' and 'content'", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise invalid(
                f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", param=f"{where}.role"
            )
        extra = set(message) - {"role", "content", "name"}
        if extra:
            raise invalid(f"{where} has an unknown field {sorted(extra)[0]!r}", param=where)
        if "name" in message:
            name = message["name"]
            if not isinstance(name, str):
                raise invalid(f"{where}.name must be a string", param=f"{where}.name")
            _check_text(name, f"{where}.name")
        content = message.get("content")
        if isinstance(content, list):
            if not all(
                isinstance(p, dict)
                and set(p) == {"type", "text"}
                and p["type"] == "text"
                and isinstance(p["text"], str)
                for p in content
            ):
                raise invalid(
                    f'{where}.content parts must be text parts, {{"type": "text", "text": ...}}',
                    param=f"{where}.content",
                )
            for part in content:
                _check_text(part["text"], f"{where}.content")
        elif isinstance(content, str):
            _check_text(content, f"{where}.content")
        else:
            raise invalid(f"{where}.content must be a string", param=f"{where}.content")
    if not any(m["role"] == "user" and content_text(m["content"]).strip() for m in messages):
        raise invalid("'messages' must hold at least one user message with text", param="messages")


def content_text(content: str | list) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def prompt_texts(body: dict[str, Any]) -> list[str]:
    if "messages" in body:
        return [content_text(m["content"]) for m in body["messages"]]
    return [body["prompt"]]


# --- the same table as JSON Schema, for /v1/openapi.json ------------------------------

MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role", "content"],
    "additionalProperties": False,
    "properties": {
        "role": {"type": "string", "enum": list(ROLES)},
        "content": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                    },
                },
            ]
        },
        "name": {"type": "string"},
    },
}


def json_schema(fields: dict[str, Field]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, spec in fields.items():
        if spec.kind == "messages":
            prop: dict[str, Any] = {"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA}
        elif spec.kind == "string_or_array":
            prop = {
                "oneOf": [{"type": "string"}, {"type": "array", "maxItems": 4, "items": {"type": "string"}}]
            }
        elif spec.kind == "stream_options":
            prop = {
                "type": "object",
                "additionalProperties": False,
                "properties": {"include_usage": {"type": "boolean"}},
            }
        else:
            prop = {"type": spec.kind}
        if spec.minimum is not None:
            prop["minimum"] = spec.minimum
        if spec.max_value() is not None:
            prop["maximum"] = spec.max_value()
        if name == "vibeadmin":
            prop["properties"] = {
                "task": {"type": "string", "enum": list(TASKS)},
                "mode": {"type": "string", "enum": list(MODES)},
                "progress": {"type": "boolean"},
                "samples": {"type": "integer", "minimum": 1},
            }
        if spec.description:
            prop["description"] = spec.description
        properties[name] = prop
    required = [name for name, spec in fields.items() if spec.required]
    return {"type": "object", "required": required, "additionalProperties": False, "properties": properties}
