"""The model library's desired state: models added and removed, the configured model
registered at start-up. Each change is checked and recorded like any other (pool/audit.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from pool import model_identity, model_library
from pool.model_file import ModelChoice, ModelFileError, packaged_model
from pool.models import Member, Model, PoolEvent, PoolSettings, states
from pool.services import ActionError, audit, events


def model_named(name: str) -> Model:
    """The library's model by name or alias, or an ActionError that lists the known ones."""
    model = Model.objects.named(name)
    if model is None:
        known = ", ".join(Model.objects.values_list("name", flat=True)) or "none"
        raise ActionError(f"no model named {name!r} in the library; known models: {known}")
    return model


def name_for(path: Path) -> str:
    """A library name from a file's name: lowercase, the characters a name allows."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
    return (stem or "model")[:64]


def model_add(
    *,
    path: str | Path,
    name: str = "",
    alias: str = "",
    chat_format: str = "",
    about: str = "",
    sha256: str = "",
    facts: model_library.GgufFacts | None = None,
) -> Model:
    """Add the GGUF at `path` to the library, after reading what it says of itself (unless
    `facts` are given); a file that cannot be served is refused here, before any member tries it."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        raise ActionError(f"{path}: give the model's absolute path on the members' host")
    if Model.objects.filter(path=str(path)).exists():
        raise ActionError(f"{path} is in the library already, as {Model.objects.get(path=str(path)).name!r}")
    if facts is None:
        try:
            facts = model_library.inspect(path)
        except ModelFileError as exc:
            raise ActionError(str(exc)) from None
    name = name or name_for(path)
    if Model.objects.named(name) is not None:
        raise ActionError(f"a model named {name!r} is in the library already; choose another --name")
    model = Model(
        name=name,
        alias=alias,
        path=str(path),
        size=facts.size,
        sha256=sha256 or _stamped(path),
        architecture=facts.architecture,
        parameters=facts.parameters or None,
        quantization=facts.quantization,
        context_length=facts.context_length,
        has_chat_template=facts.has_chat_template,
        kv_bytes_per_token=facts.kv_bytes_per_token,
        chat_format=chat_format,
        about=about[:255],
    )
    if model.sha256:
        model.hashed_bytes = model.size
    try:
        audit.save_row(model)
    except ValidationError as exc:
        raise ActionError("; ".join(exc.messages)) from None
    events.record(PoolEvent.ACTION, f"model {name}: added ({facts.architecture}, {facts.size // 2**20} MiB)")
    return model


def model_remove(*, model: Model) -> None:
    """Remove a model from the library (not its file); refused while anything uses it."""
    serving = list(Member.objects.filter(model=model).values_list("name", flat=True))
    if serving:
        raise ActionError(f"model {model.name} is served by {', '.join(serving)}: move or remove them first")
    if PoolSettings.load().primary_model_id == model.pk:
        raise ActionError(f"model {model.name} is the pool's primary model: roll out another one first")
    audit.delete_row(model)
    events.record(PoolEvent.ACTION, f"model {model.name}: removed from the library")


@transaction.atomic
def library_ensure_configured(choice: ModelChoice, warn: Callable[[str], None] = print) -> Model:
    """At start-up: the configured model (VIBEADMIN_MODEL, or the packaged stand-in) is in
    the library, the pool has a primary model, and every member serves a library model. A
    configured file the reader refuses is registered all the same, with a warning: the
    setting chose it (a pool of remote members never loads it)."""
    model = Model.objects.filter(path=str(choice.path)).first()
    if model is None:
        pinned = packaged_model.QWEN_CODER_1_5B.sha256 if choice.is_default else ""
        try:
            facts = model_library.inspect(choice.path)
        except ModelFileError as exc:
            warn(f"warning: {exc}; local members of it will fail to start")
            facts = model_library.GgufFacts.unknown(choice.path.stat().st_size)
        name = choice.model_id if Model.objects.named(choice.model_id) is None else name_for(choice.path)
        model = model_add(
            path=choice.path,
            name=name,
            chat_format=choice.chat_format,
            about=choice.about,
            sha256=pinned,
            facts=facts,
        )
    settings_row = PoolSettings.load()
    if settings_row.primary_model_id is None:
        settings_row.primary_model = model
        audit.save_row(settings_row, fields=["primary_model"])
    primary = settings_row.primary_model or model
    for member in Member.objects.filter(model__isnull=True, kind=states.LOCAL):
        audit.update_row(member, model=primary)
    return model


def _stamped(path: Path) -> str:
    try:
        return model_identity.stamped(path)
    except OSError:
        return ""
