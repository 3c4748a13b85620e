"""CPU accounting of the processes under test, read from /proc (Linux)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import descendants


@dataclass(frozen=True, slots=True)
class ProcessTime:
    """CPU seconds a process had used when the snapshot was taken."""

    pid: int
    name: str
    cpu_s: float


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """Share of one core a process used during a phase, in percent."""

    name: str
    pct: float


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far (0.0 if unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_name(pid: int) -> str:
    """The module of a `python -m module` process, else its program name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        return module.removeprefix("services.")
    return Path(argv[0]).name


def snapshot(root_pid: int) -> tuple[ProcessTime, ...]:
    """CPU time of `root_pid` and every process below it."""
    return tuple(ProcessTime(pid, process_name(pid), cpu_seconds(pid))
                 for pid in (root_pid, *descendants(root_pid)))


def usage(before: Sequence[ProcessTime], after: Sequence[ProcessTime],
          wall_s: float) -> tuple[ProcessCpu, ...]:
    """Per-process CPU use between two snapshots, busiest first (processes seen in both)."""
    start = {p.pid: p.cpu_s for p in before}
    used = [ProcessCpu(p.name, 100.0 * (p.cpu_s - start[p.pid]) / wall_s)
            for p in after if p.pid in start and wall_s > 0]
    return tuple(sorted(used, key=lambda u: u.pct, reverse=True))


def wait_quiet(root_pid: int, below_pct: float, max_wait_s: float, step_s: float = 0.5) -> float:
    """Wait until a process tree uses under `below_pct` of a core (a backlog left by the
    previous phase would otherwise slow the next one); returns the seconds waited."""
    began = time.perf_counter()
    before = snapshot(root_pid)
    while time.perf_counter() - began < max_wait_s:
        time.sleep(step_s)
        after = snapshot(root_pid)
        if sum(u.pct for u in usage(before, after, step_s)) < below_pct:
            break
        before = after
    return time.perf_counter() - began
