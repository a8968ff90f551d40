"""`manage.py serve` refuses to start on a bad model or a taken port, with one clear line,
and leaves nothing half-done: no members created, no member process started."""

import socket

import pytest

from tests.helpers import free_port, manage, member_names, one_line_error


def started_nothing(data_dir) -> bool:
    """No member rows, no member ever spawned (each spawn writes a log), no admin created."""
    logs = data_dir / "logs"
    return (
        member_names(data_dir) == []
        and not (logs.exists() and any(logs.iterdir()))
        and not (data_dir / "admin-password.txt").exists()
    )


def test_a_missing_model_file_stops_serve_before_anything_starts(data_dir):
    result = manage(
        "serve", data_dir=data_dir, VIBEADMIN_MODEL="/nonexistent", VIBEADMIN_PORT=str(free_port())
    )

    assert one_line_error(result) == (
        "CommandError: model file /nonexistent does not exist; set VIBEADMIN_MODEL to a GGUF file"
    )
    assert started_nothing(data_dir)


def test_a_file_that_is_not_a_gguf_model_stops_serve(data_dir, tmp_path):
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("hello")

    result = manage(
        "serve", data_dir=data_dir, VIBEADMIN_MODEL=str(not_a_model), VIBEADMIN_PORT=str(free_port())
    )

    assert "is not a GGUF file" in one_line_error(result)
    assert started_nothing(data_dir)


def test_a_model_folder_instead_of_a_file_stops_serve(data_dir, tmp_path):
    result = manage(
        "serve", data_dir=data_dir, VIBEADMIN_MODEL=str(tmp_path), VIBEADMIN_PORT=str(free_port())
    )

    assert "is not a file" in one_line_error(result)
    assert started_nothing(data_dir)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "VIBEADMIN_PORT",
            "cannot listen on 127.0.0.1:{port}: address already in use; "
            "set VIBEADMIN_PORT (or --port) to a free port",
        ),
        (
            "VIBEADMIN_API_PORT",
            "cannot listen on 127.0.0.1:{port} for the API: address already in use; "
            "set VIBEADMIN_API_PORT (or --api-port) to a free port, or to 0 for none",
        ),
    ],
    ids=["main port", "API port"],
)
def test_a_port_already_taken_stops_serve_with_a_hint(data_dir, variable, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {
            "VIBEADMIN_PORT": str(free_port()),
            "VIBEADMIN_API_PORT": str(free_port()),
            variable: str(port),
        }

        result = manage("serve", data_dir=data_dir, **ports)

    assert one_line_error(result) == "CommandError: " + message.format(port=port)
    assert started_nothing(data_dir)


def test_the_api_port_cannot_be_the_main_port(data_dir):
    port = free_port()

    result = manage("serve", data_dir=data_dir, VIBEADMIN_PORT=str(port), VIBEADMIN_API_PORT=str(port))

    assert one_line_error(result) == (
        f"CommandError: the API's own port must differ from the main one ({port}): set VIBEADMIN_API_PORT"
    )
    assert started_nothing(data_dir)


def test_prepare_model_reports_a_missing_model_the_same_way(data_dir):
    result = manage("prepare_model", data_dir=data_dir, VIBEADMIN_MODEL="/nonexistent")

    assert "model file /nonexistent does not exist" in one_line_error(result)


def test_a_database_never_migrated_stops_serve_with_the_command_to_run(tmp_path):
    result = manage("serve", data_dir=tmp_path, VIBEADMIN_PORT=str(free_port()))

    assert one_line_error(result).startswith("CommandError: the database has ")
    assert "run `python manage.py migrate` first" in one_line_error(result)
    assert not (tmp_path / "admin-password.txt").exists()


def test_a_llama_server_setting_that_points_nowhere_stops_serve(data_dir, gemma_model):
    result = manage(
        "serve",
        data_dir=data_dir,
        VIBEADMIN_MODEL=str(gemma_model.path),
        VIBEADMIN_LLAMA_SERVER="/nonexistent/llama-server",
        VIBEADMIN_PORT=str(free_port()),
    )

    assert one_line_error(result) == (
        "CommandError: llama-server not found at /nonexistent/llama-server: "
        "set VIBEADMIN_LLAMA_SERVER to a llama-server binary"
    )
    assert started_nothing(data_dir)
