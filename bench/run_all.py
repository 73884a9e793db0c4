"""Run every benchmark in turn; ``--json-dir DIR`` writes one JSON file per benchmark.

. .ros2/env.sh && python bench/run_all.py --json-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import benchlib

BENCHES = ("codec", "bridge", "charger")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json-dir", help="write <bench>.json files here")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    args = p.parse_args()
    benchlib.apply_bench_dds_env()
    status = 0
    for name in args.only.split(","):
        cmd = [sys.executable, str(benchlib.BENCH_DIR / f"{name}.py")]
        if args.json_dir:
            cmd += ["--json", str(Path(args.json_dir) / f"{name}.json")]
        status |= subprocess.run(cmd, check=False, env=dict(os.environ)).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
