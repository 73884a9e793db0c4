#!/usr/bin/env bash
# Run every check: lint (ruff), types (mypy --strict on the pure-Python packages), tests (pytest).
#
#   ./scripts/test.sh               # everything (brings the build up to date first)
#   ./scripts/test.sh -k codec      # extra arguments go to pytest
#
# Exit status is non-zero if any of the three fails.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${EVSE_CAN_ROS_STATE:-$REPO/.ros2}")
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # DDS stays on this machine
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$("$REPO/scripts/domain-id.sh")}  # per checkout

# The build must be current (new files are only installed by a build); fast when it is.
log=$(mktemp)
"$REPO/scripts/setup.sh" > "$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 2; }
rm -f "$log"
set +u; . "$STATE/env.sh"; set -u
cd "$REPO"

existing() { for d in "$@"; do [ -e "$d" ] && printf '%s\n' "$d"; done; }
failed=()
echo "== ruff"
mapfile -t lint_paths < <(existing evse_can_ros test bench launch cmake)
ruff check "${lint_paths[@]}" && ruff format --check --quiet "${lint_paths[@]}" || failed+=(ruff)
echo "== mypy --strict (pure-Python packages)"
mapfile -t pure < <(existing evse_can_ros/protocol evse_can_ros/config.py evse_can_ros/simulation.py evse_can_ros/text.py evse_can_ros/core evse_can_ros/converter evse_can_ros/nodeset.py \
                             evse_can_ros/transport evse_can_ros/tools cmake/idl_parse_cache.py)
mypy "${pure[@]}" || failed+=(mypy)
echo "== pytest"
# `pytest` (not `python -m pytest`): the repo root must not shadow the installed package.
# Two pytest processes at once: the real-time tests (ROS nodes, processes, threads: marker
# real_time, test/conftest.py) one after the other at normal priority, as they always ran, and
# the simulated-clock tests at a lower CPU priority (nice 10, the next ROS_DOMAIN_ID), so that
# they only take the CPU that the real-time tests leave. Arguments go to both; a half that
# selects no test (exit 5) is not a failure. `pytest` alone runs everything in one process.
sim_log=$(mktemp)
ROS_DOMAIN_ID=$((ROS_DOMAIN_ID + 1)) nice -n 10 pytest -m "not real_time" "$@" > "$sim_log" 2>&1 &
sim_pid=$!
rt=0; pytest -m real_time "$@" || rt=$?
sim=0; wait "$sim_pid" || sim=$?
echo "== pytest: the simulated-clock tests (ran alongside)"
cat "$sim_log"; rm -f "$sim_log"
if [ "$rt" -ne 0 ] && [ "$rt" -ne 5 ]; then failed+=(pytest-real-time); fi
if [ "$sim" -ne 0 ] && [ "$sim" -ne 5 ]; then failed+=(pytest-simulated-clock); fi
if [ "$rt" -eq 5 ] && [ "$sim" -eq 5 ]; then failed+=(pytest-no-tests); fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"
