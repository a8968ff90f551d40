"""`manage.py supervise --node NAME`: only the supervisor, for the members assigned to one
node (a GPU host). Gateways and the dashboard run elsewhere (`serve --no-supervisor`)
and share the database and Redis with it."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pool.bootstrap import StartupProgress
from pool.management.commands.serve import say_safely
from pool.model_file import ModelFileError, ensure_model
from pool.services import events


class Command(BaseCommand):
    help = "Supervise this node's members (start, probe, restart, drain) and nothing else."

    def add_arguments(self, parser):
        parser.add_argument("--node", default=settings.VIBEADMIN_NODE, help="this host's node name")

    def handle(self, *args, node: str, **options):
        from pool.bootstrap import check_migrated, register_model
        from pool.supervisor import process
        from pool.supervisor.reconcile import Supervisor

        check_migrated()
        from pool.gateway import assembly

        assembly.slots()  # the in-flight counts a draining member waits for: Redis's, with REDIS_URL

        try:
            model = ensure_model(progress=self.stdout.write)
            if warning := process.check_llama_server():
                self.stdout.write(warning)
        except (ModelFileError, process.MemberCommandError) as exc:
            raise CommandError(str(exc)) from None
        register_model(self.stdout.write, model)
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: done.set())
        events.listen(StartupProgress(self.stdout.write, node=node))
        supervisor = Supervisor(node=node, model=model)
        supervisor.start_thread()
        self.stdout.write(
            f"Supervising node {node!r}; members listen on {settings.VIBEADMIN_MEMBER_BIND} "
            f"and are reached at {settings.VIBEADMIN_ADVERTISE_HOST}. Ctrl-C stops them."
        )
        done.wait()
        say_safely(self.stdout, "Stopping this node's members...")  # stdout may be a closed pipe
        supervisor.shutdown()
