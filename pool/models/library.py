"""The model library: every GGUF the pool may serve, one row each, with what the file says
of itself (read once, when it is added) and its sha256 (hashed once, in the background)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models

# A model's name and alias travel as the API's `model` and in URLs: no spaces, no slashes.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# The primary model's alias: what clients send to reach whatever the pool serves as primary.
PRIMARY_ALIAS = "vibethinker"


def model_name(value: str) -> None:
    if not NAME_RE.match(value):
        raise ValidationError(
            f"{value!r} is not a valid model name: lowercase letters, digits, '.', '-' and '_' (at most 64)"
        )


class ModelQuerySet(models.QuerySet):
    def named(self, name: str) -> Model | None:
        """The model a client or an operator means by `name`: its name, or its alias."""
        return self.filter(models.Q(name=name) | models.Q(alias=name)).first()


class Model(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[model_name])
    alias = models.CharField(max_length=64, blank=True, help_text="Another name clients may send")
    path = models.CharField(max_length=1024, help_text="The GGUF file on the members' host")
    size = models.BigIntegerField(default=0)
    # Hashed once, in the background: `hashed_bytes` of `size` so far; the supervisor does it.
    sha256 = models.CharField(max_length=64, blank=True)
    hashed_bytes = models.BigIntegerField(default=0)
    hash_error = models.CharField(max_length=255, blank=True)
    # What the GGUF says of itself (pool/model_library.py reads it with the `gguf` package).
    architecture = models.CharField(max_length=64, blank=True)
    parameters = models.BigIntegerField(null=True, blank=True)
    quantization = models.CharField(max_length=32, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    has_chat_template = models.BooleanField(default=False)
    # The KV cache one token of context costs (from its layers and heads): the memory check's.
    kv_bytes_per_token = models.BigIntegerField(default=0)
    # The built-in template the engines use where the file has none ("gemma"); "" reads the file's.
    chat_format = models.CharField(max_length=32, blank=True)
    about = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.alias:
            model_name(self.alias)
            if self.alias == PRIMARY_ALIAS:
                raise ValidationError({"alias": f"{PRIMARY_ALIAS!r} is the primary model's alias already"})
            taken = Model.objects.exclude(pk=self.pk).filter(
                models.Q(name=self.alias) | models.Q(alias=self.alias)
            )
            if taken.exists() or self.alias == self.name:
                raise ValidationError({"alias": f"{self.alias!r} already names a model"})
        if self.name == PRIMARY_ALIAS:
            raise ValidationError({"name": f"{PRIMARY_ALIAS!r} is the primary model's alias"})
        if Model.objects.exclude(pk=self.pk).filter(alias=self.name).exists():
            raise ValidationError({"name": f"{self.name!r} is another model's alias"})

    @property
    def hash_progress(self) -> float:
        """0..1 of the file hashed (1 once the digest is known)."""
        if self.sha256:
            return 1.0
        return min(1.0, self.hashed_bytes / self.size) if self.size else 0.0

    def memory_needed(self, context_tokens: int) -> int:
        """Bytes a member of this model needs: the weights plus the KV cache of its context."""
        return self.size + self.kv_bytes_per_token * context_tokens

    def facts(self) -> dict:
        """What the CLI's --json, /v1/models and the Models page show of a model."""
        return {
            "name": self.name,
            "alias": self.alias or None,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256 or None,
            "hash_progress": round(self.hash_progress, 3),
            "architecture": self.architecture,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "chat_template": self.has_chat_template,
            "chat_format": self.chat_format or None,
        }
