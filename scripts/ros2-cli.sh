#!/usr/bin/env bash
# Install the upstream ROS 2 command line and launch system (`ros2 launch`, `ros2 action`,
# `ros2 topic`, `ros2 param`, `ros2 node`, `ros2 lifecycle`, ..., launch, launch_ros) into the venv
# of scripts/setup.sh, from a folder of their unmodified upstream source tarballs. They are pure
# Python but not on PyPI; they are a test-time tool, not part of this repository.
#
#   scripts/ros2-cli.sh [FOLDER]
#
# FOLDER holds launch-*.tar.gz, launch_ros-*.tar.gz, ros2cli-*.tar.gz, rosidl_runtime_py-*.tar.gz
# and composition_interfaces-*.tar.gz (rcl_interfaces). Default: $EVSE_CAN_ROS_ROS2_CLI, else
# ../shared/third_party/ros2-cli beside the checkout. Exit status: 0 installed (or up to date),
# 3 no such folder (nothing done; the tests that need the tools then skip), 2 error.
# Afterwards `. .ros2/env.sh` also puts them on the path (env.sh sources the install below).
# Idempotent: a re-run with the same tarballs, lock and script takes < 1 s; fresh ~15 s.
# Python dependencies: requirements/lock.txt plus requirements/ros2-cli.txt (pinned); `lark` comes
# from the lock (lark-parser, also used by rosidl), not installed a second time.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${EVSE_CAN_ROS_STATE:-$REPO/.ros2}")
VENV=$STATE/venv
WORK=$STATE/ros2-cli
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # the import check below must not leave the machine
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}

die() { echo "ros2-cli: error: $*" >&2; exit 2; }
t0=$SECONDS

src=${1:-${EVSE_CAN_ROS_ROS2_CLI:-$REPO/../shared/third_party/ros2-cli}}
if [ ! -d "$src" ]; then
  echo "ros2-cli: no upstream ros2 CLI sources at $src (set EVSE_CAN_ROS_ROS2_CLI or pass a folder)"
  exit 3
fi
src=$(realpath "$src")
tarballs=()
for name in launch launch_ros ros2cli rosidl_runtime_py composition_interfaces; do
  found=("$src/$name"-[0-9]*.tar.gz)
  [ -f "${found[0]}" ] || die "$src has no $name-<version>.tar.gz"
  tarballs+=("${found[0]}")
done
[ -f "$STATE/env.sh" ] && [ -x "$VENV/bin/uv" ] || die "run scripts/setup.sh first (no $STATE/env.sh)"

stamp=$WORK/.installed.sha256
want=$(cat "${tarballs[@]}" "${BASH_SOURCE[0]}" "$REPO/requirements/ros2-cli.txt" \
         "$REPO/requirements/lock.txt" "$REPO/cmake/python_only_interfaces.cmake" \
         "$REPO/cmake/idl_parse_cache.py" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ] && [ -x "$VENV/bin/ros2" ] &&
   [ -f "$WORK/install/setup.bash" ]; then
  echo "ros2-cli: up to date ($src)"
  exit 0
fi

set +u; . "$STATE/env.sh"; set -u
rm -rf "$WORK" && mkdir -p "$WORK/src"
for t in "${tarballs[@]}"; do tar xzf "$t" -C "$WORK/src"; done
cd "$WORK/src"

# The Python packages (setuptools, built by uv without isolation: the lock has setuptools) and the
# composition_interfaces messages that launch_ros imports (colcon, Ninja, C/Python code only) are
# independent: build them side by side.
packages=(launch-*/launch launch-*/launch_xml launch-*/launch_yaml launch_ros-*/launch_ros
          launch_ros-*/ros2launch rosidl_runtime_py-* ros2cli-*/ros2cli ros2cli-*/ros2pkg
          ros2cli-*/ros2node ros2cli-*/ros2topic ros2cli-*/ros2service ros2cli-*/ros2action
          ros2cli-*/ros2param ros2cli-*/ros2interface ros2cli-*/ros2lifecycle ros2cli-*/ros2run)
(
  uv pip install --quiet --compile-bytecode --python "$VENV/bin/python" -r "$REPO/requirements/ros2-cli.txt" &&
  uv pip install --quiet --compile-bytecode --python "$VENV/bin/python" --no-deps --no-build-isolation \
    "${packages[@]/#/./}"
) > "$WORK/pip.log" 2>&1 &
pip_pid=$!

mkdir -p "$WORK/ws/src"
cp -r rcl_interfaces-*/composition_interfaces "$WORK/ws/src/"
ncpu=$(nproc 2>/dev/null || echo 2)
(cd "$WORK/ws" && export MAKEFLAGS="-j$ncpu" CMAKE_BUILD_PARALLEL_LEVEL=$ncpu \
   EVSE_CAN_ROS_IDL_CACHE="$WORK/ws/build/idl-parse-cache" &&  # cmake/idl_parse_cache.py
 colcon --log-base "$WORK/ws/log" build --base-paths src --build-base "$WORK/ws/build" \
   --install-base "$WORK/install" --event-handlers console_direct- status- summary- \
   --cmake-args -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -Wno-dev \
   "-DCMAKE_PROJECT_INCLUDE=$REPO/cmake/python_only_interfaces.cmake") > "$WORK/build.log" 2>&1 ||
  { wait "$pip_pid" || true; tail -n 30 "$WORK/build.log" >&2;
    die "composition_interfaces build failed (log: $WORK/build.log)"; }
wait "$pip_pid" || { tail -n 30 "$WORK/pip.log" >&2; die "installing the Python packages failed"; }

set +u; . "$WORK/install/setup.bash"; set -u
(cd "$WORK" && python - <<'PY') || die "the tools were installed but do not import (see above)"
import composition_interfaces.srv  # noqa: F401  (launch_ros needs it)
import launch_ros.actions  # noqa: F401
import ros2cli  # noqa: F401
from launch.frontend.parse_substitution import parse_substitution

parse_substitution("$(env HOME)")  # launch's grammar on the lock's lark
PY
echo "$want" > "$stamp"
echo "ros2-cli: installed from $src in $((SECONDS - t0)) s"
