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
# Three pytest processes at once (markers set in test/conftest.py), each in a DDS domain of its
# own: the real-time tests that start node processes, ros2 tools and `ros2 launch` (shown live;
# test_ros2_launch.py uses ROS_DOMAIN_ID + 2), the real-time tests whose nodes run in-process
# (ROS_DOMAIN_ID + 3), and the simulated-clock tests at a lower CPU priority (nice 10,
# ROS_DOMAIN_ID + 1), so that they take only the CPU that the real-time tests leave. Most of a
# real-time test is waiting, so the two real-time halves take about the time of the longer one.
# Arguments go to all three; a process that selects no test (exit 5) is not a failure.
# `pytest` alone runs everything in one process.
sim_log=$(mktemp); inproc_log=$(mktemp)
ROS_DOMAIN_ID=$((ROS_DOMAIN_ID + 1)) nice -n 10 pytest -m "not real_time" "$@" > "$sim_log" 2>&1 &
sim_pid=$!
ROS_DOMAIN_ID=$((ROS_DOMAIN_ID + 3)) pytest -m "real_time and in_process" "$@" > "$inproc_log" 2>&1 &
inproc_pid=$!
rt=0; pytest -m "real_time and not in_process" "$@" || rt=$?
inproc=0; wait "$inproc_pid" || inproc=$?
sim=0; wait "$sim_pid" || sim=$?
echo "== pytest: the in-process real-time tests (ran alongside)"
cat "$inproc_log"
echo "== pytest: the simulated-clock tests (ran alongside)"
cat "$sim_log"; rm -f "$sim_log" "$inproc_log"
codes=("$rt" "$inproc" "$sim")
names=(pytest-real-time pytest-in-process pytest-simulated-clock)
for i in 0 1 2; do
  if [ "${codes[$i]}" -ne 0 ] && [ "${codes[$i]}" -ne 5 ]; then failed+=("${names[$i]}"); fi
done
if [ "$rt" -eq 5 ] && [ "$inproc" -eq 5 ] && [ "$sim" -eq 5 ]; then failed+=(pytest-no-tests); fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"
