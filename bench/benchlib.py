"""Shared helpers of the benchmarks: DDS environment, statistics, CPU accounting, tables, JSON.

Import this module before anything that may import rclpy: it forces DDS discovery onto this
machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and gives the benchmarks their own DDS
domain (``ROS_DOMAIN_ID``, default 71) so that they do not see other people's nodes. Child
processes inherit both through the environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DOMAIN_ID = "71"


def apply_bench_dds_env() -> None:
    """Keep DDS on this machine (forced) and in the benchmark domain (unless set explicitly)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", BENCH_DOMAIN_ID)


apply_bench_dds_env()

BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100, nearest-rank on sorted data); NaN for no data."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """Return p50 / p99 / max of durations given in seconds, in milliseconds."""
    return {
        "p50_ms": percentile(values_s, 50) * 1e3,
        "p99_ms": percentile(values_s, 99) * 1e3,
        "max_ms": (max(values_s) * 1e3) if values_s else math.nan,
        "n": len(values_s),
    }


# --- CPU accounting ------------------------------------------------------------------------------


def process_cpu() -> float:
    """CPU seconds (user + system) used so far by this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def thread_cpu_by_tid() -> dict[int, float]:
    """CPU seconds per native thread id of this process (Linux /proc)."""
    out: dict[int, float] = {}
    base = Path(f"/proc/{os.getpid()}/task")
    # readdir of task/ can miss threads while others start or end: add the known ones by id
    tids = {int(t.name) for t in base.iterdir()} | set(thread_names())
    for tid in tids:
        try:
            stat = (base / str(tid) / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces: split after the closing parenthesis
        rest = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(rest[11]), int(rest[12])
        out[tid] = (utime + stime) / CLK_TCK
    return out


def thread_names() -> dict[int, str]:
    """Python thread name per native thread id (threads Python does not know are absent)."""
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def cpu_by_thread_name(
    before: dict[int, float], after: dict[int, float], names_before: dict[int, str] | None = None
) -> dict[str, float]:
    """Group the CPU seconds spent between two :func:`thread_cpu_by_tid` snapshots by name.

    Threads that Python did not start (DDS, rcl) are grouped as ``native``.
    """
    names = {**(names_before or {}), **thread_names()}
    grouped: dict[str, float] = {}
    for tid, cpu in after.items():
        delta = cpu - before.get(tid, 0.0)
        name = names.get(tid, "native")
        if name.startswith("Thread-"):
            name = "python-other"
        grouped[name] = grouped.get(name, 0.0) + delta
    return {k: round(v, 3) for k, v in sorted(grouped.items(), key=lambda kv: -kv[1])}


# --- results -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure, optionally checked against a target."""

    name: str
    value: float
    unit: str
    target: str = ""  # e.g. "<= 2" (same unit); empty = informative
    note: str = ""

    @property
    def verdict(self) -> str:
        """PASS / MISS against the target, '' when there is none, 'n/a' without a value."""
        if not self.target:
            return ""
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "n/a"
        op, _, limit = self.target.partition(" ")
        lim = float(limit)
        ok = {
            "<=": self.value <= lim,
            "<": self.value < lim,
            ">=": self.value >= lim,
            "==": self.value == lim,
        }[op]
        return "PASS" if ok else "MISS"


@dataclass
class Report:
    """The figures of one benchmark run, printable as a table and writable as JSON."""

    bench: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, target: str = "", note: str = "") -> None:
        """Append a figure."""
        self.figures.append(Figure(name, value, unit, target, note))

    def table(self) -> str:
        """Return the figures as a fixed-width text table."""
        rows = [("figure", "value", "unit", "target", "verdict", "note")]
        for f in self.figures:
            rows.append((f.name, _fmt(f.value), f.unit, f.target, f.verdict, f.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for n, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (with machine and load context)."""
        return {
            "bench": self.bench,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine_info(),
            "figures": [asdict(f) | {"verdict": f.verdict} for f in self.figures],
            "details": self.details,
        }

    def finish(self, args: argparse.Namespace) -> int:
        """Print the table, write JSON if asked; exit status 0 (misses are figures, not errors)."""
        print(f"\n== {self.bench}  ({time.strftime('%Y-%m-%d %H:%M')}, {load_text()})")
        print(self.table())
        if getattr(args, "json", None):
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.as_json(), indent=2, default=_json_default) + "\n")
            print(f"(written to {path})")
        return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 100):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def load_text() -> str:
    """Return the machine's load average and CPU count as text."""
    l1, l5, _ = os.getloadavg()
    return f"load {l1:.2f}/{l5:.2f} on {os.cpu_count()} CPUs"


def machine_info() -> dict[str, Any]:
    """Describe the machine and its load at the time of the run."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "ros_domain_id": os.environ.get("ROS_DOMAIN_ID"),
    }


def base_parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the options every benchmark has."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE (JSON)")
    return p


def spin_sleep_until(deadline: float) -> None:
    """Sleep until monotonic ``deadline`` (coarse sleep, no busy wait)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def rate(count: int, seconds: float) -> float:
    """Return count / seconds (NaN for a zero window)."""
    return count / seconds if seconds > 0 else math.nan


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean, NaN for no data."""
    v = list(values)
    return sum(v) / len(v) if v else math.nan
