"""/v1/openapi.json, built from the validation table so it says what the gateway checks."""

from __future__ import annotations

from functools import lru_cache

from pool.gateway.validation import CHAT_FIELDS, COMPLETION_FIELDS, json_schema

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _responses(ok: str) -> dict:
    errors = {
        "400": "Bad input (not JSON, wrong types, empty messages, out-of-range values, prompt too long)",
        "401": "Missing, invalid or revoked API key",
        "404": "Unknown model",
        "413": "Body larger than the gateway accepts",
        "429": "A key's limit reached (or its student's), or the queue is full (see Retry-After)",
        "502": "The members failed the request",
        "503": "No member ready, or the queue's deadline passed (see Retry-After)",
    }
    return {
        "200": {"description": ok},
        **{
            code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
            for code, text in errors.items()
        },
    }


def _query(name: str, description: str, kind: str = "string") -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


@lru_cache(maxsize=4)
def openapi_document(model_id: str) -> dict:
    def operation(summary: str, schema_name: str) -> dict:
        return {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
            },
            "responses": _responses("A completion (JSON), or server-sent events when stream is true"),
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vibeadmin inference API",
            "version": "1",
            "description": f"OpenAI-compatible. Model: {model_id!r} or the alias 'vibethinker'.",
        },
        "paths": {
            "/v1/chat/completions": {"post": operation("Chat completion", "ChatCompletionRequest")},
            "/v1/completions": {"post": operation("Text completion", "CompletionRequest")},
            "/v1/models": {
                "get": {
                    "summary": "The served model",
                    "security": [{"bearer": []}],
                    "responses": _responses("The model list"),
                }
            },
            "/v1/usage": {
                "get": {
                    "summary": "The key's tokens and requests today and this month, its limits and what "
                    "remains; with ?user=ID, one student's of the key",
                    "security": [{"bearer": []}],
                    "parameters": [_query("user", "A student of this key (the requests' `user`)")],
                    "responses": _responses("The usage (JSON)"),
                }
            },
            "/v1/usage/users": {
                "get": {
                    "summary": "The key's students by tokens used, most first, a page at a time",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _query("period", "day (default) or month"),
                        _query("limit", "Students per page, 1 to 1000 (default 100)", "integer"),
                        _query("offset", "Students to skip (next_offset of the previous page)", "integer"),
                    ],
                    "responses": _responses("A list of students (JSON)"),
                }
            },
        },
        "components": {
            "schemas": {
                "ChatCompletionRequest": json_schema(CHAT_FIELDS),
                "CompletionRequest": json_schema(COMPLETION_FIELDS),
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
