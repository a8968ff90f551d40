"""The member's side of its lease on a supervisor: a tiny parent around the server process.

    python watchdog.py --grace 30 --stop-grace 10 -- llama-server --model ... --port ...

No member may outlive vibeadmin. The supervisor stops members itself on the way out, but a
supervisor killed outright (the OOM killer, SIGKILL) or one whose own shutdown failed
cannot. So each member runs under this watchdog, which holds a lease on its supervisor:
its standard input is a pipe whose other end only the supervisor holds, and the kernel
closes it however the supervisor ends. Once no lease is left, the watchdog waits `--grace`
seconds for a restarted supervisor to adopt the member (it connects to the watchdog's
socket, `socket_name(pid)`, and holds that connection as the new lease); if none does, it
stops the server (SIGTERM, then SIGKILL after `--stop-grace`) and exits.

The server runs in a process group of its own, with PR_SET_PDEATHSIG: a signal to the
watchdog's group (the supervisor's stop) reaches the server once, through the watchdog,
which forwards it and exits as the server did; a SIGKILL of the watchdog kills the server
with it. Linux only, as llama-server's builds here are. This file imports nothing of the
project (it runs as a script, without Django).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def socket_name(pid: int) -> bytes:
    """The watchdog's adoption socket, in Linux's abstract namespace (no file to leave behind)."""
    return f"\0vibeadmin-member-{pid}".encode()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="watchdog")
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--stop-grace", type=float, default=10.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return Watchdog(command, args.grace, args.stop_grace).run()


class Watchdog:
    def __init__(self, command: list[str], grace_s: float, stop_grace_s: float):
        self.command = command
        self.grace_s = grace_s
        self.stop_grace_s = stop_grace_s
        self.selector = selectors.DefaultSelector()
        self.leases: set[int] = set()
        self.orphaned_at: float | None = None

    def run(self) -> int:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_name(os.getpid()))
        self.listener.listen(4)
        self.selector.register(self.listener, selectors.EVENT_READ, self.adopted)
        os.set_blocking(0, False)
        self.selector.register(0, selectors.EVENT_READ, self.lease_spoke)
        self.leases.add(0)
        self.server = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_die_with_parent
        )
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.forward)
        return self.watch()

    def watch(self) -> int:
        while (code := self.server.poll()) is None:
            for key, _ in self.selector.select(timeout=self.wait_s()):
                key.data(key.fileobj)
            if self.orphaned_at is not None and time.monotonic() - self.orphaned_at >= self.grace_s:
                say(f"no supervisor adopted this member in {self.grace_s:g} s: stopping it")
                return self.stop()
        return mirror(code)

    def wait_s(self) -> float:
        if self.orphaned_at is None:
            return 0.5  # the server's exit is noticed within this
        return max(0.0, min(0.5, self.orphaned_at + self.grace_s - time.monotonic()))

    def lease_spoke(self, fileobj) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # a lease says nothing; only its end matters
        self.selector.unregister(fileobj)
        self.leases.discard(fd)
        if not isinstance(fileobj, int):
            fileobj.close()
        if not self.leases:
            self.orphaned_at = time.monotonic()
            say(f"its supervisor is gone: the member stops in {self.grace_s:g} s unless one adopts it")

    def adopted(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():  # only its own user's supervisor may hold it
            conn.close()
            return
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, self.lease_spoke)
        self.leases.add(conn.fileno())
        if self.orphaned_at is not None:
            say("a supervisor adopted this member")
        self.orphaned_at = None

    def forward(self, signum, frame) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signum)

    def stop(self) -> int:
        self.forward(signal.SIGTERM, None)
        try:
            code = self.server.wait(self.stop_grace_s)
        except subprocess.TimeoutExpired:
            self.forward(signal.SIGKILL, None)
            code = self.server.wait()
        return mirror(code)


def _die_with_parent() -> None:
    """In the server, before exec: killed if the watchdog dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the watchdog died before the line above
        os._exit(1)


def mirror(code: int) -> int:
    """Exit as the server did: with its code, or killed by its signal."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code if code >= 0 else 128 - code


def say(line: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(f"vibeadmin watchdog: {line}\n")
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
