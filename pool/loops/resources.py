"""What the pool uses of its machine: CPU and memory per member process (psutil), and GPU
use and memory (NVML). Where NVML cannot load (no driver, no GPU) the report says why,
so the dashboard can say so instead of drawing zeros.

The runtime samples once a second (`sample`); readers take `latest` and `history`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import psutil
from prometheus_client import Gauge

from pool.metrics import HISTORY_S

HOST_CPU = Gauge("vibeadmin_host_cpu_percent", "CPU use of the whole host, percent")
MEMBER_CPU = Gauge(
    "vibeadmin_member_cpu_percent", "CPU use of a local member's process, percent of one core", ["member"]
)
MEMBER_MEMORY = Gauge(
    "vibeadmin_member_memory_bytes", "Resident memory of a local member's process", ["member"]
)
GPU_UTIL = Gauge("vibeadmin_gpu_utilization_percent", "GPU use, percent", ["gpu"])
GPU_MEMORY = Gauge("vibeadmin_gpu_memory_used_bytes", "GPU memory in use", ["gpu"])
GPU_AVAILABLE = Gauge("vibeadmin_gpu_available", "1 when NVML reports at least one GPU")


@dataclass(frozen=True)
class ProcessUse:
    cpu_percent: float
    rss_bytes: int
    gpu_bytes: int | None = None


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    util_percent: float
    memory_used: int
    memory_total: int


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[Gpu, ...] = ()
    reason: str = ""  # why there are none
    process_memory: dict[int, int] = field(default_factory=dict)  # pid -> bytes

    @property
    def available(self) -> bool:
        return bool(self.gpus)


@dataclass(frozen=True)
class Sample:
    t: float
    cpu_percent: float
    members: dict[str, ProcessUse]
    gpu: GpuReport

    def point(self) -> dict:
        """The compact form the charts draw: memory in MiB, GPUs by index."""
        return {
            "t": int(self.t),
            "cpu": {name: round(use.cpu_percent, 1) for name, use in self.members.items()},
            "mem": {name: round(use.rss_bytes / 2**20, 1) for name, use in self.members.items()},
            "gpu": {str(g.index): g.util_percent for g in self.gpu.gpus},
            "gpu_mem": {str(g.index): round(g.memory_used / 2**20, 1) for g in self.gpu.gpus},
        }


latest: Sample | None = None
history: deque[dict] = deque(maxlen=HISTORY_S)
_processes: dict[int, psutil.Process] = {}
_exported: set[str] = set()  # members with CPU and memory series in /metrics


def server_process(proc: psutil.Process) -> psutil.Process:
    """A member's pid is its watchdog's (pool/supervisor/watchdog.py): the server it runs is
    what uses the CPU, memory and GPU."""
    children = proc.children()
    return children[0] if children else proc


def process_use(pid: int | None, gpu: GpuReport) -> ProcessUse | None:
    if not pid:
        return None
    try:
        proc = _processes.get(pid)
        if proc is None:
            proc = server_process(psutil.Process(pid))
            if proc.pid != pid:  # kept once its server runs, not the watchdog alone
                _processes[pid] = proc
            proc.cpu_percent(None)  # the first reading only starts the clock
        with proc.oneshot():
            return ProcessUse(
                proc.cpu_percent(None), proc.memory_info().rss, gpu.process_memory.get(proc.pid)
            )
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        _processes.pop(pid, None)
        return None


# --- GPUs ---------------------------------------------------------------------------------

_nvml_error: str | None = None
_nvml_ready = False


def _nvml():
    """pynvml once it is initialised, or None (and the reason kept) where it cannot be."""
    global _nvml_error, _nvml_ready
    if _nvml_ready or _nvml_error is not None:
        return _pynvml() if _nvml_ready else None
    try:
        nvml = _pynvml()
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
        _nvml_error = f"no NVIDIA driver on this host (NVML: {exc})"
        return None
    _nvml_ready = True
    return nvml


def _pynvml():
    import pynvml

    return pynvml


def gpu_report() -> GpuReport:
    nvml = _nvml()
    if nvml is None:
        return GpuReport(reason=_nvml_error or "NVML is not available")
    try:
        gpus: list[Gpu] = []
        memory: dict[int, int] = {}  # pid -> bytes
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            gpus.append(
                Gpu(
                    index,
                    name.decode() if isinstance(name, bytes) else name,
                    float(util.gpu),
                    int(mem.used),
                    int(mem.total),
                )
            )
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                memory[proc.pid] = memory.get(proc.pid, 0) + int(proc.usedGpuMemory or 0)
    except Exception as exc:  # a GPU that fell off the bus must not stop the dashboard
        return GpuReport(reason=f"NVML failed: {exc}")
    if not gpus:
        return GpuReport(reason="NVML loaded but found no GPU")
    return GpuReport(tuple(gpus), "", memory)


# --- sampling -----------------------------------------------------------------------------


def sample(members: list[tuple[str, int | None]], now: float | None = None) -> Sample:
    """Measure the host, each local member's process (name, pid) and the GPUs; keep it."""
    global latest
    gpu = gpu_report()
    uses = {name: use for name, pid in members if (use := process_use(pid, gpu)) is not None}
    latest = Sample(now if now is not None else time.time(), psutil.cpu_percent(None), uses, gpu)
    history.append(latest.point())
    _export(latest)
    return latest


def _export(s: Sample) -> None:
    HOST_CPU.set(s.cpu_percent)
    GPU_AVAILABLE.set(1 if s.gpu.available else 0)
    for gone in _exported - s.members.keys():  # a member that went away loses its series
        MEMBER_CPU.remove(gone)
        MEMBER_MEMORY.remove(gone)
    _exported.clear()
    _exported.update(s.members)
    for name, use in s.members.items():
        MEMBER_CPU.labels(name).set(use.cpu_percent)
        MEMBER_MEMORY.labels(name).set(use.rss_bytes)
    for g in s.gpu.gpus:
        GPU_UTIL.labels(str(g.index)).set(g.util_percent)
        GPU_MEMORY.labels(str(g.index)).set(g.memory_used)


def busiest_gpu_percent() -> float | None:
    if latest is None or not latest.gpu.available:
        return None
    return max(g.util_percent for g in latest.gpu.gpus)
