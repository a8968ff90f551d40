"""A fake member without the generation lock, for the gateway-overhead benchmark.

pool.fake_member answers like llama-cpp-python, one generation at a time. To make the
gateway the bottleneck at 256 concurrent requests that would take 256 processes on this
machine, so this variant lets every request generate at once (same replies, same timing)
and the benchmark raises the members' max_inflight in the database to match.

    python -m bench.fast_member --port 0 --ttft 0.02 --max-tokens 16
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from pool import fake_member
from pool.fake_member import FakeMember, FakeMemberProcess


class ConcurrentFakeMember(FakeMember):
    @contextlib.asynccontextmanager
    async def locked(self):
        yield


class ConcurrentFakeMemberProcess(FakeMemberProcess):
    """FakeMemberProcess, but running this module."""

    def start(self, timeout: float = 15.0) -> ConcurrentFakeMemberProcess:
        import dataclasses
        import subprocess
        import time

        cmd = [sys.executable, "-m", "bench.fast_member", "--port", "0", "--watch-stdin"]
        for key, value in dataclasses.asdict(self.config).items():
            flag = "--" + key.replace("_", "-")
            if type(value) is bool:
                cmd += [flag] if value else []
            else:
                cmd += [flag, str(value)]
        root = Path(__file__).resolve().parent.parent
        # stderr dropped: wrk hanging up mid-stream at the end of a run makes aiohttp log tracebacks.
        self.proc = subprocess.Popen(cmd, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            self.url = self._read_url(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self


if __name__ == "__main__":
    fake_member.FakeMember = ConcurrentFakeMember  # serve() builds the member by this name
    fake_member.main()
