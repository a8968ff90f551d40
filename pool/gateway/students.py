"""A platform's students: each request may name one (OpenAI's `user` field, or the header
X-Vibeadmin-User for clients that cannot set it), and the key's per-student limits then
apply to that name alone. A name is the platform's own pseudonym; the gateway only checks
that it is short, printable text, and counts by it."""

from __future__ import annotations

from pool.gateway import errors

MAX_NAME_CHARS = 128
HEADER = b"x-vibeadmin-user"


def student_name(value: object, *, param: str) -> str:
    """The student a request names ("" for none: the key's own request), or a 400."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise errors.invalid(f"{param!r} must be a string (the student's name)", param=param)
    if len(value) > MAX_NAME_CHARS:
        raise errors.invalid(
            f"{param!r} names a student in at most {MAX_NAME_CHARS} characters; this one has {len(value)}",
            param=param,
            code="invalid_user",
        )
    if not value.isprintable():  # control characters, line breaks, lone surrogates
        raise errors.invalid(
            f"{param!r} must be printable text, without control characters", param=param, code="invalid_user"
        )
    return value


def from_request(body_user: str, header_value: str | None) -> str:
    """The body's `user` and the header agree, or only one is given."""
    from_header = student_name(_utf8(header_value), param="X-Vibeadmin-User") if header_value else ""
    if body_user and from_header and body_user != from_header:
        raise errors.invalid(
            "'user' and the X-Vibeadmin-User header name different students; send one of them",
            param="user",
            code="invalid_user",
        )
    return body_user or from_header


def _utf8(latin1: str) -> str:
    """Headers arrive as bytes read as latin-1 (asgi_io.header); a name is UTF-8."""
    try:
        return latin1.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid(
            "the X-Vibeadmin-User header is not UTF-8 text", param="X-Vibeadmin-User", code="invalid_user"
        ) from None
