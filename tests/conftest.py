"""Fixtures shared by the whole suite. Keep them small and general."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import manage, stub_command

# Stands in for the GGUF where members are stub scripts that never read it.
STAND_IN_MODEL_PATH = Path("/nonexistent/stand-in.gguf")


@pytest.fixture
def fast_settings(settings, tmp_path):
    """Supervisor and health settings low enough for a test to see crashes, back-off and
    stops in well under a second; members' logs go to this test's own folder."""
    settings.DATA_DIR = tmp_path
    settings.VIBEADMIN_TICK_S = 0.05
    settings.VIBEADMIN_BACKOFF_S = 0.05
    settings.VIBEADMIN_BACKOFF_MAX_S = 0.2
    settings.VIBEADMIN_MAX_RESTARTS = 2
    settings.VIBEADMIN_STOP_GRACE_S = 1.0
    settings.VIBEADMIN_STOP_DRAIN_S = 5.0
    settings.VIBEADMIN_DRAIN_TIMEOUT_S = 30.0
    settings.VIBEADMIN_PROBE_INTERVAL_S = 0.2
    settings.VIBEADMIN_PROBE_TIMEOUT_S = 1.0
    settings.VIBEADMIN_UNHEALTHY_AFTER = 2
    settings.VIBEADMIN_HEALTHY_AFTER = 1
    settings.VIBEADMIN_START_TIMEOUT_S = 60.0
    settings.VIBEADMIN_N_CTX = 512
    return settings


@pytest.fixture(scope="session")
def gemma_model():
    """The small gemma GGUF (assembled once if missing), for tests marked real_model: fast
    to start and answer. Named, never the default: the default 1.5B is default_model."""
    from testing.small_model import gemma_model

    return gemma_model()


@pytest.fixture(scope="session")
def default_model():
    """The default model (the 1.5B stand-in), assembled once into the cache if missing."""
    from pool.model_file import ensure_model

    return ensure_model(progress=lambda line: None)


@pytest.fixture
def make_supervisor(fast_settings, db):
    """Build Supervisors driven step by step from the test (never their thread); every
    process they started is stopped when the test ends, whatever happened in it."""
    from pool.model_file import ModelChoice
    from pool.supervisor import process
    from pool.supervisor.reconcile import Supervisor

    made = []
    children_before = set(process._children)

    def make(*, command_for=None, model=None, **kwargs) -> Supervisor:
        model = model or ModelChoice(STAND_IN_MODEL_PATH, "stand-in", "", False)
        supervisor = Supervisor(model=model, command_for=command_for or stub_command(), **kwargs)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.shutdown()
    for pid in set(process._children) - children_before:  # a test that failed half-way may leave one
        process.stop(pid, 0)


@pytest.fixture
def supervisor(make_supervisor):
    """A supervisor whose local members are tests/stub_member.py: up and answering probes
    in a fraction of a second, no model needed."""
    return make_supervisor()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("migrated")
    result = manage("migrate", "--noinput", "-v", "0", data_dir=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def data_dir(migrated_template, tmp_path) -> Path:
    """A data folder of its own for a child `manage.py` (see helpers.manage): a migrated
    database with no members, so tests never touch the developer's var/."""
    folder = tmp_path / "data"
    shutil.copytree(migrated_template, folder)
    return folder


pytest_plugins = ["tests.gateway_kit", "tests.browser_kit", "tests.real_members"]
