"""What the kernel knows about a process (CPU time, RSS, peak RSS) and about the machine.

Read straight from ``/proc`` so the harness needs no extra dependency and measures any process,
whatever it runs (an aio echo server, a thread-per-stream server, ``streamserve serve``).
Linux only, like the servers this harness is meant to size.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
from dataclasses import dataclass
from importlib import metadata

__all__ = [
    "MachineCpu",
    "Memory",
    "cpu_seconds",
    "die_with_parent",
    "machine_cpu",
    "machine_info",
    "memory",
    "reset_peak_rss",
    "tree_cpu_seconds",
    "versions",
]

_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: state, ppid, ... (field 3 on)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of ``pid`` (not its children)."""
    fields = _stat(pid)
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of ``pid`` and of every process descended from it that is alive now: a
    server's worker processes (MLServer's ``parallel_workers``) are part of what it costs."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat(entry)[1])
        except OSError:  # it exited meanwhile
            continue
        children.setdefault(parent, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            if current == pid:
                raise
            continue
        todo.extend(children.get(current, ()))
    return total


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """CPU seconds of the whole machine so far (all cores), from the first line of /proc/stat."""

    busy: float
    """Everything but idle and I/O wait: user, system, interrupts, soft interrupts (loopback TCP)."""
    steal: float
    """Time the hypervisor gave our virtual CPUs to someone else: the noise of a shared machine."""

    def __sub__(self, other: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy - other.busy, self.steal - other.steal)


def machine_cpu() -> MachineCpu:
    """Busy and stolen CPU seconds of the machine, to tell "the machine is full" from "waiting"."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return MachineCpu(busy / _TICKS, steal / _TICKS)


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident memory of a process, in bytes."""

    rss: int
    """Resident now (VmRSS)."""
    peak: int
    """Highest resident since start or since :func:`reset_peak_rss` (VmHWM)."""


def memory(pid: int) -> Memory:
    """VmRSS and VmHWM of ``pid``."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key] = int(amount) * 1024
    return Memory(rss=values.get("VmRSS:", 0), peak=values.get("VmHWM:", 0))


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS, so the next read is the peak of one scenario only.

    Writing 5 to ``clear_refs`` does that (Linux 4.0+); returns False where it is not allowed, and
    the peak then covers the whole life of the server (say so in the report).
    """
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: the kernel sends SIGKILL to the child when the harness dies.

    The harness stops its servers in ``finally`` blocks; this covers what those cannot, a harness
    killed with SIGKILL, so no server outlives a benchmark run.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def machine_info() -> dict[str, object]:
    """CPU model, cores, memory and kernel: what a reader needs to compare two runs."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
                break
    usable = len(os.sched_getaffinity(0))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(mem_total / 2**30, 1),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    """Versions of what is measured, read from package metadata (so TensorFlow is not imported)."""
    found = {"python": platform.python_version()}
    for name, candidates in {
        "grpcio": ["grpcio"],
        "tensorflow": ["tensorflow-cpu", "tensorflow"],
        "protobuf": ["protobuf"],
        "numpy": ["numpy"],
        "streamserve": ["streamserve"],
        "streamserve-anomaly": ["streamserve-anomaly"],
    }.items():
        for candidate in candidates:
            try:
                found[name] = metadata.version(candidate)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            found[name] = "not installed"
    return found
