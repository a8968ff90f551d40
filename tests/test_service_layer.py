"""Every write to the database goes through pool/services/: the test walks the app's source
(pool/ and vibeadmin/, outside migrations) and fails on a model write anywhere else.

A write is a call of save, delete, create, get_or_create, update_or_create, bulk_create,
bulk_update, create_user or create_superuser on anything, and of update on a manager or a
queryset (`X.objects...update(...)`, `X._default_manager...update(...)`): a dict's or a
hash's update is not one. A queryset kept in a variable and updated later would slip
through, so the code does not do that (a write is one expression)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pool", "vibeadmin")
SERVICES = ROOT / "pool" / "services"
MIGRATIONS = ROOT / "pool" / "migrations"
WRITES = {
    "save",
    "delete",
    "create",
    "get_or_create",
    "update_or_create",
    "bulk_create",
    "bulk_update",
    "create_user",
    "create_superuser",
}
QUERYSET_WRITES = {"update"}
MANAGERS = {"objects", "_default_manager"}


def source_files() -> list[Path]:
    return [
        path
        for root in SOURCES
        for path in sorted((ROOT / root).rglob("*.py"))
        if not path.is_relative_to(MIGRATIONS)
    ]


def on_a_manager(node: ast.expr) -> bool:
    """Whether the call's receiver is a chain that starts at a manager (`X.objects.filter(...)`)."""
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Attribute) and node.attr in MANAGERS:
            return True
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


def writes_in(path: Path) -> list[str]:
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if name in WRITES or (name in QUERYSET_WRITES and on_a_manager(node.func.value)):
            found.append(f"{where}:{node.lineno} .{name}()")
    return found


def test_no_model_is_written_outside_the_service_layer():
    outside = [hit for path in source_files() if not path.is_relative_to(SERVICES) for hit in writes_in(path)]
    assert outside == [], "write through pool/services/ instead:\n" + "\n".join(outside)


def test_the_service_layer_does_write():
    """The walk sees writes where they are (else the test above would pass by seeing nothing)."""
    assert any(writes_in(path) for path in SERVICES.rglob("*.py"))


@pytest.mark.parametrize(
    "code, is_write",
    [
        ("Member.objects.filter(pk=1).update(weight=2)", True),
        ("Member._default_manager.filter(pk=1).update(weight=2)", True),
        ("row.save(update_fields=['x'])", True),
        ("CacheEntry.objects.all().delete()", True),
        ("AlertRule.objects.get_or_create(name='x')", True),
        ("User.objects.create_superuser('admin', '', 'pw')", True),
        ("digest.update(chunk)", False),
        ("fields.update(a=1)", False),
    ],
)
def test_the_walk_tells_a_write_from_a_dict_update(tmp_path, code, is_write):
    module = tmp_path / "module.py"
    module.write_text(code + "\n")
    assert bool(writes_in(module)) == is_write
