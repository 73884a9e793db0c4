"""The issue-16 targets, one table: which figure of which benchmark, its unit and its limit.

:func:`extract` turns the JSON of one run of ``bridge.py``, ``idle.py`` and ``charger.py --parts
startup`` into ``{key: (value, reference)}``; ``reference`` is the same figure of the reference
pipeline (``bench/reference.py``) measured in the same run, for the figures judged or shown as a
ratio. ``run_all.py`` takes the median over runs; a single benchmark prints one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One target: the median ``op`` ``limit`` (the median of value / reference if ``ratio``)."""

    key: str
    label: str
    unit: str
    op: str = ""  # "<=", "==" or "" (informative)
    limit: float = math.nan
    ratio: bool = False  # judged on value / reference

    def verdict(self, judged: float | None) -> str:
        """PASS / MISS of the judged number ('' if informative, 'n/a' without data)."""
        if not self.op:
            return ""
        if judged is None or math.isnan(judged):
            return "n/a"
        ok = judged <= self.limit if self.op == "<=" else judged == self.limit
        return "PASS" if ok else "MISS"

    @property
    def text(self) -> str:
        """The target as text, e.g. ``<= 1.2 x ref``."""
        if not self.op:
            return ""
        limit = f"{self.limit:g}" + (" x ref" if self.ratio else f" {self.unit}")
        return f"{self.op} {limit}"


TARGETS = (
    Target("idle_1", "idle, 1 pistol, one process: CPU per pistol", "% core", "<=", 2),
    Target("idle_8", "idle, 8 pistols, one process: CPU per pistol", "% core", "<=", 2),
    Target("idle_bridge", "idle, one process per node: can_bridge", "% core", "<=", 3),
    Target("idle_driver", "idle, one process per node: converter_driver", "% core", "<=", 3),
    Target("idle_server", "idle, one process per node: charge_server", "% core", "<=", 3),
    Target("protocol_1", "protocol load (100 fr/s), 1 pistol: bridge CPU", "% core", "<=", 3),
    Target("protocol_8", "protocol load, 8 pistols one link: per pistol", "% core", "<=", 3),
    Target("limit_drops", "bus limit, 1 pistol: dropped", "frames", "==", 0),
    Target("limit_p99", "bus limit, 1 pistol: latency p99", "ms", "<=", 1.5, ratio=True),
    Target("limit_cpu", "bus limit, 1 pistol: CPU", "% core", "<=", 1.2, ratio=True),
    Target("limit_tx", "bus limit, 1 pistol: TX period p99 deviation", "ms", "<=", 1),
    Target("x8_drops", "bus limit, 8 pistols one link: dropped", "frames", "==", 0),
    Target("x8_p99", "bus limit, 8 pistols one link: latency p99", "ms", "<=", 2),
    Target("x8_cpu", "bus limit, 8 pistols one link: CPU", "% core", "<=", 60),
    Target("x8_tx", "bus limit, 8 pistols one link: TX p99 dev., worst pistol", "ms", "<=", 2),
    Target("gc_pause", "GC: longest pause under load (bus limit, 1 and 8)", "ms", "<=", 5),
    Target("startup_1", "start-up, 1 pistol: exec -> first status frame", "s", "<=", 1),
    Target("startup_8", "start-up, 8 pistols: exec -> first status frames", "s", "<=", 2),
    Target("rss_extra", "RSS per extra pistol (4 nodes with the simulator)", "MiB"),
)


def _scenarios(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not report:
        return {}
    return {r["scenario"]: r for r in report.get("details", {}).get("scenarios", [])}


def extract(
    bridge: dict[str, Any] | None,
    idle: dict[str, Any] | None = None,
    startup: dict[str, Any] | None = None,
) -> dict[str, tuple[float, float | None]]:
    """Figures of one run (JSON reports as written by the benchmarks) by target key."""
    out: dict[str, tuple[float, float | None]] = {}
    b = _scenarios(bridge)
    ref_p, ref_l = b.get("ref-protocol"), b.get("ref-limit")

    def ref(scenario: dict[str, Any] | None, key: str, per: int = 1) -> float | None:
        return None if scenario is None else _get(scenario, key) / per

    if "protocol" in b:
        out["protocol_1"] = (b["protocol"]["bridge_cpu_pct"], ref(ref_p, "bridge_cpu_pct"))
    if "protocol-x8" in b:
        out["protocol_8"] = (b["protocol-x8"]["bridge_cpu_pct"] / 8, ref(ref_p, "bridge_cpu_pct"))
    pauses = []
    for name, prefix in (("limit", "limit"), ("limit-x8", "x8")):
        r = b.get(name)
        if r is None:
            continue
        out[f"{prefix}_drops"] = (float(r["dropped"]), ref(ref_l, "dropped"))
        out[f"{prefix}_p99"] = (r["latency"]["p99_ms"], ref(ref_l, "latency.p99_ms"))
        out[f"{prefix}_cpu"] = (r["bridge_cpu_pct"], ref(ref_l, "bridge_cpu_pct"))
        tx = r["tx_p99_worst_pistol_ms"] if prefix == "x8" else r["tx_period_deviation"]["p99_ms"]
        out[f"{prefix}_tx"] = (tx, ref(ref_l, "tx_period_deviation.p99_ms"))
        pauses.append(r["gc_max_pause_ms"])
    if pauses:
        out["gc_pause"] = (max(pauses), None)
    i = _scenarios(idle)
    for name, key in (("one-process-1", "idle_1"), ("one-process-8", "idle_8")):
        if name in i:
            out[key] = (i[name]["per_pistol_pct"], None)
    if "processes" in i:
        cpu = i["processes"]["cpu_pct"]
        for node, key in (("can_bridge", "idle_bridge"), ("converter_driver", "idle_driver"),
                          ("charge_server", "idle_server")):  # fmt: skip
            out[key] = (cpu[node], None)
    runs = (startup or {}).get("details", {}).get("startup", {})
    firsts = {
        int(p): [r["spawn_to_first_status_s"] for r in rs if r.get("spawn_to_first_status_s")]
        for p, rs in runs.items()
    }
    rss = {int(p): [r["rss_kib"]["VmRSS"] / 1024 for r in rs] for p, rs in runs.items()}
    for p, key in ((1, "startup_1"), (8, "startup_8")):
        if firsts.get(p):
            out[key] = (median(firsts[p]), None)
    if rss.get(1) and rss.get(8):
        out["rss_extra"] = ((median(rss[8]) - median(rss[1])) / 7, None)
    return out


def _get(d: dict[str, Any], dotted: str) -> float:
    v: Any = d
    for part in dotted.split("."):
        v = v[part]
    return float(v)


def median(values: list[float]) -> float:
    """Median (NaN for no values)."""
    v = sorted(x for x in values if x is not None and not math.isnan(x))
    if not v:
        return math.nan
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def table(runs: list[dict[str, tuple[float, float | None]]]) -> str:
    """The targets over ``runs``: median, the runs, target, verdict, reference and ratio."""
    rows = [("figure", "median", "runs", "target", "verdict", "reference", "ratio")]
    for t in TARGETS:
        got = [r[t.key] for r in runs if t.key in r]
        if not got:
            continue
        values = [v for v, _ in got]
        refs = [ref for _, ref in got if ref is not None]
        value = median(values)
        reference = median(refs) if refs else None
        ratios = [v / r for v, r in got if r]
        ratio = median(ratios) if ratios else None
        verdict = t.verdict(ratio if t.ratio else value)
        rows.append((
            f"{t.label} [{t.unit}]",
            _fmt(value),
            " ".join(_fmt(v) for v in values),
            t.text,
            verdict,
            "" if reference is None else _fmt(reference),
            "" if ratio is None else f"{ratio:.2f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"
