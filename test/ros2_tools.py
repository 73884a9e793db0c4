"""Helpers for tests that drive the charger with the upstream ROS 2 tools, as a user would.

``ros2 launch``, ``ros2 action send_goal``, ``ros2 lifecycle``, ``ros2 param`` and ``ros2 topic``
run as separate processes (the upstream launch, launch_ros and ros2cli; scripts/ros2-cli.sh
installs them where no ROS 2 distribution is). Every process gets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the test run's ``ROS_DOMAIN_ID``, runs in its own
process group (so that a test can send a terminal's Ctrl-C to the group and clean up all of it)
and writes its output to a file the test can wait on. No fixed sleeps: tests wait for output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "EVSE_CAN_ROS_REQUIRE_ROS2_CLI"
INSTALL_HINT = (
    "scripts/ros2-cli.sh installs them from ../shared/third_party/ros2-cli or "
    "$EVSE_CAN_ROS_ROS2_CLI"
)
MODULES = ("launch", "launch_ros", "ros2launch", "ros2action", "ros2lifecycle", "ros2param")


def missing_tools() -> str | None:
    """Why the upstream ros2 CLI / launch cannot run here, or None when they can."""
    if shutil.which("ros2") is None:
        return "the upstream `ros2` command is not installed"
    for module in MODULES:
        if importlib.util.find_spec(module) is None:
            return f"the upstream Python package {module} is not installed"
    return None


def require_tools() -> None:
    """Skip the calling test module where the tools are absent (fail where CI installed them)."""
    reason = missing_tools()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}, but {REQUIRE_ENV} is set ({INSTALL_HINT})", pytrace=False)
    pytest.skip(f"{reason} ({INSTALL_HINT})", allow_module_level=True)


def tool_env(log_dir: Path, **extra: str | None) -> dict[str, str]:
    """Environment for a tool process: local DDS, this run's domain, plain unbuffered logs.

    ``extra`` adds variables; a value of None removes one.
    """
    env = dict(os.environ)
    env.update(
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"],
        RCUTILS_COLORIZED_OUTPUT="0",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        PYTHONUNBUFFERED="1",
        ROS_LOG_DIR=str(log_dir),
    )
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for the loopback CAN bus)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A shell's background job starts with SIGINT ignored, and exec keeps that: the tools must see
# Ctrl-C, so they start through this (the pid stays the same; no preexec_fn, pytest has threads).
_DEFAULT_SIGINT = (
    sys.executable,
    "-S",
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])",
)


_OWN_PROCESS_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
)


class Proc:
    """A tool process with its output in a file; its own process group."""

    def __init__(
        self, args: list[str], log: Path, env: Mapping[str, str], cwd: Path | None = None
    ) -> None:
        self.args = args
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [*_DEFAULT_SIGINT, *args],
            stdin=subprocess.DEVNULL,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            # its own process group (killpg), but the test's session: Linux autogroup gives
            # every session an equal share of the CPU, so a tool in a session of its own would
            # weigh as much as the whole charger under test, and its nice value would not count
            **_OWN_PROCESS_GROUP,
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of the output (for assertion messages)."""
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the output after character ``start``."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output(), start)
            if match:
                return match
            if self.popen.poll() is not None:
                match = regex.search(self.output(), start)
                if match:
                    return match
                raise AssertionError(
                    f"{self.args[:3]} exited ({self.popen.returncode}) without printing "
                    f"{pattern!r}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not printed by {self.args[:3]} within {timeout:g} s:\n"
                    f"{self.tail()}"
                )
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.args[:3]} still running after {timeout:g} s:\n{self.tail()}"
            ) from None

    def interrupt(self) -> None:
        """Ctrl-C for this process only."""
        os.kill(self.pid, signal.SIGINT)

    def interrupt_group(self) -> None:
        """Ctrl-C as a terminal sends it: to every process of the group."""
        os.killpg(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """Safety net: SIGKILL the whole group (nothing may outlive a test)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._file.close()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    check: Proc | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout``
    (or as soon as the ``check`` process has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if check is not None and check.popen.poll() is not None:
            raise AssertionError(f"{check.args[:3]} exited waiting for {what}:\n{check.tail()}")
        if time.monotonic() > deadline:
            detail = f":\n{check.tail()}" if check is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


class Ros2:
    """Runs ``ros2 <verb> ...`` with one environment (and a prefix such as ``ip netns exec``)."""

    def __init__(self, env: Mapping[str, str], workdir: Path, prefix: tuple[str, ...] = ()):
        self.env = dict(env)
        self.workdir = workdir
        self.prefix = prefix
        self._count = 0

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        # The tools are clients of the charger under test: at a lower CPU priority, their
        # start-up (imports, DDS discovery) never starves the charger's processes on 2 cores.
        nice = () if args[:1] == ("launch",) else ("nice", "-n", "10")
        return [*self.prefix, *nice, "ros2", *args]

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run one command to completion (output captured, stderr included)."""
        return subprocess.run(
            self._argv(args),
            env=self.env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_until(
        self, *args: str, ok: Callable[[subprocess.CompletedProcess[str]], bool], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Repeat a query (e.g. a node lookup racing discovery) until ``ok``; the last result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.run(*args, timeout=max(timeout, 10.0))
            if ok(result) or time.monotonic() > deadline:
                return result

    def on_node(self, *args: str, timeout: float = 20.0) -> str:
        """A verb that looks a node up first (lifecycle, param): retried while discovery has
        not found the node yet ("Node not found"); the output, stripped."""
        result = self.run_until(
            *args, ok=lambda r: "Node not found" not in r.stdout, timeout=timeout
        )
        return result.stdout.strip()

    def start(self, *args: str, name: str | None = None) -> Proc:
        """Start a long-running command (launch, send_goal -f, topic echo) in the background."""
        self._count += 1
        label = name or f"{args[0]}-{self._count}"
        return Proc(self._argv(args), self.workdir / f"{label}.log", self.env, self.workdir)


def daemon_port(domain_id: int) -> int:
    """TCP port of the ros2 CLI daemon of a domain (ros2cli: 11511 + domain)."""
    return 11511 + domain_id


def daemon_running(domain_id: int) -> bool:
    """True if a ros2 CLI daemon of this domain listens on 127.0.0.1."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", daemon_port(domain_id))) == 0


@contextlib.contextmanager
def no_daemon_left(ros2: Ros2) -> Iterator[None]:
    """Fail if a verb started a ros2 daemon in the block (they must run with --no-daemon)."""
    domain = int(ros2.env["ROS_DOMAIN_ID"])
    before = daemon_running(domain)
    yield
    if not before and daemon_running(domain):
        ros2.run("daemon", "stop")
        raise AssertionError("a `ros2` verb started the ros2 daemon (use --no-daemon); stopped it")


def assert_domain_free(ros2: Ros2) -> None:
    """Fail early if other nodes share this DDS domain (a second charger would answer goals)."""
    result = ros2.run("node", "list", "--no-daemon", "--spin-time", "1")
    nodes = [n for n in result.stdout.split() if n.startswith("/")]
    if nodes:
        pytest.fail(
            f"ROS_DOMAIN_ID={ros2.env['ROS_DOMAIN_ID']} is in use by other nodes ({nodes[:4]}): "
            "a second charger there would receive these tests' goals; use a free domain",
            pytrace=False,
        )


def goal_id(output: str) -> str:
    """The 8-hex-digit goal id (as the charge server logs it) from send_goal's output."""
    match = re.search(r"Goal accepted with ID: ([0-9a-f]{32})", output)
    assert match, f"no goal id in:\n{output[-2000:]}"
    return match.group(1)[:8]
