"""Run every benchmark and judge the issue-16 targets on the median of ``--runs`` runs.

Each run measures the product and the reference pipeline (``bench/reference.py``) side by side
(``bridge.py`` runs both in the same invocation), so ratios come from the same minutes of the
same machine: on a shared machine absolute times are noise, ratios much less so. The codec, the
executor-loop (spin) and the safety benchmarks run once (informative; ``--skip codec,safety``
leaves them out); start-up runs 3 fresh processes per pistol count (its median is the figure).
~12 minutes.

    . .ros2/env.sh && python bench/run_all.py [--runs 3] [--json-dir DIR] [--skip safety]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import targets

BRIDGE_SCENARIOS = "ref-protocol,ref-limit,protocol,protocol-x8,limit,limit-x8"
ONCE = ("codec", "spin", "safety")


def run(name: str, script: str, extra: list[str], out: Path) -> dict[str, Any] | None:
    """Run one benchmark script with ``--json out``; return its report (None if it failed)."""
    cmd = [sys.executable, str(benchlib.BENCH_DIR / script), *extra, "--json", str(out)]
    print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
    code = subprocess.run(cmd, check=False, env=dict(os.environ)).returncode
    if code != 0 or not out.exists():
        print(f"### {name} failed (exit {code})", flush=True)
        return None
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs of the judged benchmarks")
    p.add_argument("--json-dir", help="keep every benchmark's JSON (and targets.json) here")
    p.add_argument("--skip", default="", help=f"comma-separated, from {', '.join(ONCE)}")
    p.add_argument("--seconds", type=float, default=8.0, help="bridge.py window per scenario")
    args = p.parse_args()
    benchlib.apply_bench_dds_env()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evse-bench-") as tmp:
        out_dir = Path(args.json_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        failed = []
        if "codec" not in skip and run("codec", "codec.py", [], out_dir / "codec.json") is None:
            failed.append("codec")
        if "spin" not in skip and run("spin", "spin.py", [], out_dir / "spin.json") is None:
            failed.append("spin")
        startup = run("start-up", "charger.py", ["--parts", "startup"], out_dir / "startup.json")
        per_run = []
        for n in range(1, args.runs + 1):
            bridge = run(f"bridge, run {n}/{args.runs}", "bridge.py",
                         ["--scenarios", BRIDGE_SCENARIOS, "--seconds", str(args.seconds)],
                         out_dir / f"bridge-{n}.json")  # fmt: skip
            idle = run(f"idle, run {n}/{args.runs}", "idle.py", [], out_dir / f"idle-{n}.json")
            failed += [f"{b} run {n}" for b, r in (("bridge", bridge), ("idle", idle)) if not r]
            per_run.append(targets.extract(bridge, idle, startup if n == 1 else None))
        if (
            "safety" not in skip
            and run("safety", "charger.py", ["--parts", "safety"], out_dir / "safety.json") is None
        ):
            failed.append("safety")
        summary = targets.table(per_run)
        (out_dir / "targets.json").write_text(json.dumps(per_run, indent=1) + "\n")
    minutes = (time.monotonic() - started) / 60
    print(f"\n== issue-16 targets: median of {args.runs} runs ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"{benchlib.load_text()}, {minutes:.0f} min)")  # fmt: skip
    print("   ratio = product / reference pipeline measured in the same run (median of ratios)")
    print(summary)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
