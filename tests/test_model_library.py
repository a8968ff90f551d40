"""The model library: GGUF files read and checked when added, hashed once in the
background, listed and removed from the command line. The files are tiny GGUFs written with
the `gguf` package (testing/tiny_gguf.py), never served."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pool import llama_build, model_identity, model_library
from pool.model_file import ModelChoice
from pool.models import Member, Model, PoolEvent, PoolSettings
from pool.services import ActionError, model_hashing
from pool.services.library import library_ensure_configured, model_add, model_remove
from pool.services.members import member_add
from testing.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.django_db


def pool(*args: str) -> str:
    out = StringIO()
    call_command("pool", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny-llama.Q4_K_M.gguf", chat_template="{{ messages }}")


def test_a_gguf_is_added_with_what_it_says_of_itself(tiny):
    said = pool("model", "add", str(tiny), "--name", "tiny", "--alias", "small")
    assert "Added tiny: llama" in said
    (row,) = json.loads(pool("model", "list", "--json"))
    assert row["name"] == "tiny" and row["alias"] == "small" and row["path"] == str(tiny)
    assert row["architecture"] == "llama"
    assert row["parameters"] == 32 * 64 + 64
    assert row["quantization"] == "Q4_K_M"
    assert row["context_length"] == 2048
    assert row["chat_template"] is True
    assert row["size"] == tiny.stat().st_size
    # 2 layers x 2 KV heads x (16 + 16) x 2 bytes: the memory check's cost of one token
    assert Model.objects.get(name="tiny").kv_bytes_per_token == 2 * 2 * 32 * 2


def test_an_added_model_is_audited(tiny):
    pool("model", "add", str(tiny), "--name", "tiny")
    event = PoolEvent.objects.get(kind=PoolEvent.CHANGE, subject="model tiny")
    assert event.actor_kind == "cli" and "architecture llama" in event.new_value


def test_a_file_that_is_not_a_gguf_is_refused_with_one_line(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("hello\n")
    with pytest.raises(CommandError) as refused:
        pool("model", "add", str(path))
    assert str(refused.value) == f"{path} is not a GGUF file (it does not start with 'GGUF')"
    assert not Model.objects.exists()


def test_a_truncated_gguf_is_refused_with_one_line(tiny, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[: tiny.stat().st_size - 100])
    with pytest.raises(CommandError) as refused:
        pool("model", "add", str(cut))
    assert "truncated" in str(refused.value) and "\n" not in str(refused.value)
    assert not Model.objects.exists()


def test_an_architecture_the_library_does_not_name_is_refused(tmp_path, monkeypatch):
    # A stand-in for libllama holding two architecture names, as the real one holds all of its.
    fake = tmp_path / "libllama.so"
    fake.write_bytes(b"\x00llama\x00gemma3\x00")
    monkeypatch.setattr(model_library, "libllama", lambda: fake)
    path = write_tiny_gguf(tmp_path / "strange.gguf", arch="strangeformer")
    with pytest.raises(
        ActionError, match="a 'strangeformer' model, an architecture the bundled llama.cpp cannot load"
    ):
        model_add(path=path)
    assert model_add(path=write_tiny_gguf(tmp_path / "ok.gguf", arch="gemma3")).architecture == "gemma3"


@pytest.mark.skipif(llama_build.libllama() is None, reason="llama.cpp is not built here")
def test_the_bundled_llama_cpp_knows_the_stand_ins_and_not_a_made_up_architecture():
    assert model_library.supported("qwen2") and model_library.supported("gemma3")
    assert not model_library.supported("strangeformer")


def test_a_relative_path_or_a_name_taken_is_refused(tiny, tmp_path):
    with pytest.raises(ActionError, match="absolute path"):
        model_add(path="models/tiny.gguf")
    model_add(path=tiny, name="tiny", alias="small")
    other = write_tiny_gguf(tmp_path / "other.gguf")
    with pytest.raises(ActionError, match="already"):
        model_add(path=other, name="small")
    with pytest.raises(ActionError, match="'vibethinker' is the primary model's alias"):
        model_add(path=other, name="vibethinker")


def test_the_sha256_is_computed_once_in_the_background_with_progress(tiny, monkeypatch):
    model = model_add(path=tiny, name="tiny")
    assert model.sha256 == "" and model.hash_progress == 0.0
    seen: list[int] = []
    monkeypatch.setattr(model_identity, "BLOCK", 1024)
    monkeypatch.setattr(model_hashing, "PROGRESS_EVERY", 2048)
    real_update = Model.objects.filter

    def spying_filter(*args, **kwargs):
        rows = real_update(*args, **kwargs)
        original = rows.update

        def update(**fields):
            if "hashed_bytes" in fields and "sha256" not in fields:
                seen.append(fields["hashed_bytes"])
            return original(**fields)

        rows.update = update
        return rows

    monkeypatch.setattr(Model.objects, "filter", spying_filter)
    digest = model_hashing.hash_model(model.pk)
    assert digest == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert seen and seen == sorted(seen) and seen[-1] < tiny.stat().st_size
    model.refresh_from_db()
    assert model.sha256 == digest and model.hash_progress == 1.0
    # Stamped beside the file: the next registration of it needs no hashing.
    assert model_identity.stamped(tiny) == digest
    monkeypatch.setattr(model_hashing, "compute", lambda *a: pytest.fail("hashed twice"))
    assert model_hashing.hash_model(model.pk) == digest


def test_a_model_a_member_serves_cannot_be_removed(tiny):
    model = model_add(path=tiny, name="tiny")
    member_add(name="m1", model=model)
    with pytest.raises(CommandError, match="served by m1"):
        pool("model", "remove", "tiny")
    Member.objects.all().delete()
    assert "Removed tiny" in pool("model", "remove", "tiny")
    assert not Model.objects.exists()


def test_the_primary_model_cannot_be_removed(tiny):
    model = library_ensure_configured(ModelChoice(tiny, "tiny", "", False))
    with pytest.raises(ActionError, match="primary model"):
        model_remove(model=model)


def test_the_configured_model_is_registered_as_primary_and_members_serve_it(tiny):
    old = member_add(name="m1")  # from before the library: no model
    assert old.model is None
    model = library_ensure_configured(ModelChoice(tiny, "tiny-chat", "chatml", False, "a tiny one"))
    assert model.name == "tiny-chat" and model.chat_format == "chatml"
    assert PoolSettings.load().primary_model == model
    assert Member.objects.get(name="m1").model == model
    # Started again: nothing new, the same row.
    assert library_ensure_configured(ModelChoice(tiny, "tiny-chat", "chatml", False)).pk == model.pk
    assert Model.objects.count() == 1


def test_members_are_added_and_scaled_per_model(tiny, tmp_path):
    library_ensure_configured(ModelChoice(tiny, "tiny", "", False))
    model_add(path=write_tiny_gguf(tmp_path / "other.gguf"), name="other")
    pool("add", "--name", "m1")
    pool("add", "--name", "m2", "--model", "other")
    said = pool("scale", "2", "--model", "other")
    assert said.splitlines()[0] == "m3: add"
    status = {m["name"]: m["model"] for m in json.loads(pool("status", "--json"))}
    assert status == {"m1": "tiny", "m2": "other", "m3": "other"}
    with pytest.raises(CommandError, match="no model named 'nope' in the library; known models: tiny, other"):
        pool("add", "--model", "nope")
    changed = PoolEvent.objects.get(kind=PoolEvent.CHANGE, subject="member m2")
    assert "model other" in changed.new_value


def test_the_supervisor_starts_each_member_with_its_model_s_file_and_template(make_supervisor, tmp_path):
    from tests.helpers import stub_command

    seen: dict[str, tuple[str, str, str]] = {}
    stub = stub_command()

    def command_for(member, model, port):
        seen[member.name] = (str(model.path), model.model_id, model.chat_format)
        return stub(member, model, port)

    gemma = model_add(path=write_tiny_gguf(tmp_path / "g.gguf"), name="gemma-base", chat_format="gemma")
    member_add(name="m1", model=gemma)
    member_add(name="m2")  # no library model: the supervisor's own (the configured one)
    supervisor = make_supervisor(command_for=command_for)
    supervisor.reconcile()
    assert seen["m1"] == (str(tmp_path / "g.gguf"), "gemma-base", "gemma")
    assert seen["m2"] == (str(supervisor.model.path), "stand-in", "")


def test_a_configured_file_the_reader_refuses_is_registered_with_a_warning(tmp_path):
    # VIBEADMIN_MODEL chose it: a pool of remote members never loads it, so start all the same.
    stub = tmp_path / "stand-in.gguf"
    stub.write_bytes(b"GGUF" + bytes(28))
    said: list[str] = []
    model = library_ensure_configured(ModelChoice(stub, "stand-in", "", False), warn=said.append)
    assert model.architecture == "" and PoolSettings.load().primary_model == model
    assert said == [f"warning: {stub} is truncated or damaged: " + said[0].split("damaged: ", 1)[1]]
    assert said[0].endswith("; local members of it will fail to start")


def test_what_a_file_says_is_read_once_while_it_stays_the_same(tiny, monkeypatch):
    first = model_library.inspect(tiny)
    monkeypatch.setattr(model_library, "_read", lambda *a: pytest.fail("the vocabulary parsed twice"))
    assert model_library.inspect(tiny) == first
