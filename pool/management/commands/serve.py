"""`manage.py serve`: the embedded default in one process — daphne for HTTP and
websockets, and the supervisor for this node's members."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pool.bootstrap import StartupProgress, check_migrated, ensure_admin, first_run, register_model
from pool.model_file import ModelFileError, ensure_model
from pool.services import events


class Command(BaseCommand):
    help = "Serve the API, the dashboard and the solve page, and supervise this node's members."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument(
            "--api-port",
            type=int,
            default=settings.API_PORT,
            help="The API's own port, faster than /v1/ on --port (0: none)",
        )
        parser.add_argument("--no-supervisor", action="store_true", help="Serve only; members run elsewhere")

    def handle(self, *args, host: str, port: int, api_port: int, no_supervisor: bool, **options):
        check_migrated()
        from pool.gateway import assembly

        assembly.slots()  # chosen before the supervisor reads in-flight counts from them
        # Only checked: daphne binds the main port itself once serving starts.
        claim_port(host, port, what="", hint="set VIBEADMIN_PORT (or --port) to a free port").close()
        if api_port == port:
            raise CommandError(
                f"the API's own port must differ from the main one ({port}): set VIBEADMIN_API_PORT"
            )
        api_socket = None
        if api_port:
            hint = "set VIBEADMIN_API_PORT (or --api-port) to a free port, or to 0 for none"
            api_socket = claim_port(host, api_port, what=" for the API", hint=hint)
        url = self.url = f"http://{host}:{port}/"
        supervisor = None
        if no_supervisor:
            first_run(self.say, with_members=False)
        else:
            supervisor = self.prepare_supervisor()
        ensure_admin(self.say, url + "login/")
        self.say(f"Serving on {url}  (API: {url}v1/  solve page: {url}solve/)")
        if api_socket:
            self.say(
                f"API's own port: http://{host}:{api_port}/v1/  (the same API, without daphne's cost per request)"
            )
        take_stop_signals()
        if note := fit_connections_to_file_limit(raise_file_limit()):
            self.say(note)
        try:
            run_daphne(host, port, api_socket)
        finally:
            if supervisor:
                self.say("Stopping members...")  # never raises: stdout may be a pipe already closed
                supervisor.shutdown()

    def prepare_supervisor(self):
        from pool.services.rollout_machine import RolloutMachine
        from pool.supervisor import process
        from pool.supervisor.reconcile import Supervisor

        try:
            model = ensure_model(progress=self.say)
        except ModelFileError as exc:
            raise CommandError(str(exc)) from None
        if model.is_default:
            self.say(
                f"Model: {model.about} (not VibeThinker itself), served as {model.model_id!r}. "
                "For real use set VIBEADMIN_MODEL=/path/to/VibeThinker-1.5B.gguf"
            )
        else:
            self.say(f"Model: {model.path} (served as {model.model_id!r})")
        try:
            if warning := process.check_llama_server():
                self.say(warning)
        except process.MemberCommandError as exc:
            raise CommandError(str(exc)) from None
        register_model(self.say, model)
        first_run(self.say, with_members=True)
        events.listen(StartupProgress(self.say, url=self.url))
        supervisor = Supervisor(model=model, rollouts=RolloutMachine())
        supervisor.start_thread()
        return supervisor

    def say(self, line: str) -> None:
        say_safely(self.stdout, line)


def say_safely(stdout, line: str) -> None:
    """Write a line; if stdout is a closed pipe (`make run | tee log`, then Ctrl-C ends tee
    first), point it at /dev/null instead: a line lost must not stop the members' shutdown."""
    try:
        stdout.write(line)
        stdout.flush()
    except (BrokenPipeError, ValueError):
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def take_stop_signals() -> None:
    """Ctrl-C and SIGTERM stop serve whatever it inherited: a shell's background job starts
    its children with SIGINT ignored, and Twisted installs its own SIGINT handler only
    over Python's default one. Both are set back to the defaults, which Twisted replaces.
    SIGHUP (the terminal closed) stops it too (run_daphne), rather than ending it at once
    with its members left running."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# Files the process needs besides its doors' sockets: members' pipes and logs, the
# database, Redis, the channel layer, its own modules.
FILES_BESIDES_DOORS = 512


def raise_file_limit() -> int:
    """As many open files as the system lets this process have (each door may hold
    VIBEADMIN_MAX_CONNECTIONS sockets, past the usual soft limit of 1,024); returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
            )
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fit_connections_to_file_limit(limit: int) -> str:
    """Each door's cap lowered to what the open-file limit allows for both, so that a door
    full of sockets refuses the next with its 503 instead of failing to accept (EMFILE),
    which would stall every client; the line to say when it was lowered."""
    fits = max(1, (limit - FILES_BESIDES_DOORS) // 2)
    wanted = settings.VIBEADMIN_MAX_CONNECTIONS
    if wanted <= fits:
        return ""
    settings.VIBEADMIN_MAX_CONNECTIONS = fits
    return (
        f"Each door takes {fits} connections, not VIBEADMIN_MAX_CONNECTIONS={wanted}: this process may "
        f"open {limit} files (ulimit -n); raise that limit to take more."
    )


def claim_port(host: str, port: int, *, what: str, hint: str) -> socket.socket:
    """The port bound (by listener.bind, as daphne will bind its own), or one clear line."""
    from pool.gateway.listener import bind

    try:
        return bind(host, port)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {host}:{port}{what}: {(exc.strerror or str(exc)).lower()}; {hint}"
        ) from None


def run_daphne(host: str, port: int, api_socket: socket.socket | None = None) -> None:
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from pool.gateway.bounds import bound_daphne
    from pool.gateway.listener import ApiListener
    from vibeadmin.asgi import application

    api = ApiListener(api_socket) if api_socket else None

    def on_ready():
        # Called before the reactor runs, so get_event_loop() would not be daphne's loop.
        from daphne.server import twisted_loop

        from pool.dashboard import live
        from pool.loops import runtime

        # From here on, sends from the supervisor thread go through the web server's loop.
        events.bind_loop(twisted_loop)
        runtime.start_background(twisted_loop)
        live.start_background(twisted_loop)
        bound_daphne(server.http_factory)  # listening has begun, but no connection is taken yet
        if api:
            api.start(twisted_loop)
            reactor.addSystemEventTrigger(
                "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(api.stop()))
            )
        reactor.addSystemEventTrigger("before", "shutdown", close_upstream)

    def close_upstream():
        # The pooled connections to members close cleanly instead of warning at exit.
        from pool.gateway import upstream

        return Deferred.fromFuture(asyncio.ensure_future(upstream.close()))

    server = Server(
        application=application,
        # Twisted's listen backlog is 50: past it, a burst of connections (idle ones held
        # against the door included) waits in SYN retries; the API's door listens with 2,048.
        endpoints=[
            e + ":backlog=2048" for e in build_endpoint_description_strings(host=host.strip("[]"), port=port)
        ],
        ready_callable=on_ready,
        action_logger=None,
    )
    # Twisted stops the reactor on SIGINT and SIGTERM; SIGHUP is left to its default (the end).
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reactor.stop))  # type: ignore[attr-defined,misc]
    server.run()
    events.bind_loop(None)
