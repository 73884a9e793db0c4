"""A depot across two hosts, for real: the charger on one, a fleet manager on the other.

Two network namespaces joined by a veth pair stand for two machines (addresses from TEST-NET-1,
192.0.2.0/24, exist only inside them; nothing is routed to this machine's own network). Three
one-process chargers run on host A, each with another DDS discovery set-up:

* ``/subnet``: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` (multicast on the depot network);
* ``/peers``: ``LOCALHOST`` plus ``ROS_STATIC_PEERS`` naming host B (unicast only);
* ``/default``: nothing set, so the package's default (LOCALHOST) applies.

The fleet manager on host B is the upstream CLI: ``ros2 action send_goal`` and ``ros2 topic
echo`` of ``charger_availability`` / ``safe_to_unplug``. Needs root, iproute2 and network
namespaces (skipped with the reason where they are missing) and the upstream ros2 CLI. Every
namespace and every process in it is removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ros2_tools import Proc, Ros2, require_tools, tool_env, wait_until

require_tools()

CHARGE = "evse_can_ros/action/Charge"
HOST_A, HOST_B = "192.0.2.1", "192.0.2.2"
SIM = {  # the simulated vehicle reaches Charging within ~2 s; 1 % SoC in ~1 s
    "/**/converter_driver": {"ros__parameters": {"simulated.wake_time": 0.1}},
    "/**/controller_simulator": {
        "ros__parameters": {
            "use_sequence_flags": True,
            "boot_time": 0.2,
            "insulation_pass_iterations": 3,
            "vehicle.soc_time_scale": 30.0,
            "vehicle.negotiation_time": 0.3,
            "vehicle.current_request_delay": 0.2,
            "vehicle.welding_detection_time": 0.2,
            "scenario.plug_in_delay": 0.2,
        }
    },
}
CHARGERS = {  # namespace -> discovery set-up on host A (None: remove the variable)
    "subnet": {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
    "peers": {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": HOST_B},
    "default": {"ROS_AUTOMATIC_DISCOVERY_RANGE": None},
}


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def netns_missing() -> str | None:
    """Why two network namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"evseprobe{os.getpid()}"
    made = ip("netns", "add", probe)
    ip("netns", "del", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    return None


class Depot:
    """Hosts A and B: two network namespaces and a veth pair between them."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.a, self.b = f"evse{tag}a", f"evse{tag}b"
        self._created: list[str] = []
        links = (f"ev{tag}a", f"ev{tag}b")
        for ns in (self.a, self.b):
            self._run("netns", "add", ns)
            self._created.append(ns)
        self._run("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for ns, link, address in ((self.a, links[0], HOST_A), (self.b, links[1], HOST_B)):
            self._run("link", "set", link, "netns", ns)
            self._run("-n", ns, "addr", "add", f"{address}/24", "dev", link)
            self._run("-n", ns, "link", "set", "lo", "up")
            self._run("-n", ns, "link", "set", link, "up")
            self._run("-n", ns, "route", "add", "224.0.0.0/4", "dev", link)  # DDS multicast

    @staticmethod
    def _run(*args: str) -> None:
        result = ip(*args)
        assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"

    def on(self, host: str) -> tuple[str, ...]:
        """Command prefix that runs a program on host A or B."""
        return ("ip", "netns", "exec", self.a if host == "A" else self.b)

    def remove(self) -> None:
        """Kill every process left in the namespaces, then delete them (and the veth pair)."""
        for ns in self._created:
            pids = ip("netns", "pids", ns).stdout.split()
            if pids:
                subprocess.run(["kill", "-KILL", *pids], check=False, capture_output=True)
            ip("netns", "del", ns)
        left = ip("netns", "list").stdout
        assert not any(ns in left for ns in self._created), left


@pytest.fixture(scope="module")
def depot() -> Iterator[Depot]:
    reason = netns_missing()
    if reason is not None:
        pytest.skip(reason)
    depot = Depot()
    try:
        yield depot
    finally:
        depot.remove()


def cli(depot: Depot, host: str, workdir: Path, **env: str | None) -> Ros2:
    """The ros2 CLI on one host with a discovery set-up (local DDS unless told otherwise)."""
    return Ros2(tool_env(workdir / "ros_log", **env), workdir, prefix=depot.on(host))


@pytest.fixture(scope="module")
def chargers(depot: Depot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    """The three one-process chargers on host A; Ctrl-C at the end, and a clean exit."""
    workdir = tmp_path_factory.mktemp("depot")
    params = workdir / "sim.yaml"
    params.write_text(yaml.safe_dump(SIM))
    started: dict[str, Proc] = {}
    try:
        for ns, env in CHARGERS.items():
            host_a = cli(depot, "A", workdir, **env)
            argv = (
                "evse-can-ros", "run", "--sim", "--namespace", ns, "--params-file", str(params),
                "--can-interface", "virtual", "--can-channel", ns,
            )  # fmt: skip
            started[ns] = Proc([*depot.on("A"), *argv], workdir / f"{ns}.log", host_a.env, workdir)
        for proc in started.values():
            proc.wait_for(r"^DDS domain", 60)
        yield started
        for proc in started.values():
            proc.interrupt()
        for proc in started.values():
            assert proc.wait(20) == 0, proc.tail()
            assert "Traceback" not in proc.output()
    finally:
        for proc in started.values():
            proc.kill()


def test_each_charger_says_which_discovery_it_uses(chargers: dict[str, Proc]) -> None:
    domain = os.environ["ROS_DOMAIN_ID"]
    lines = {ns: proc.wait_for(r"^DDS domain .*$", 5).group(0) for ns, proc in chargers.items()}
    assert lines["subnet"].startswith(f"DDS domain {domain}; discovery range SUBNET")
    assert "static peers 192.0.2.2" in lines["peers"]
    assert "discovery range LOCALHOST (this machine only)" in lines["default"]
    assert "package default for ROS_AUTOMATIC_DISCOVERY_RANGE" in lines["default"]


@dataclass
class Fleet:
    """The fleet manager on host B: its background clients and its CLI on the depot network."""

    clients: dict[str, Proc]
    subnet: Ros2


@pytest.fixture(scope="module")
def fleet_manager(
    depot: Depot, chargers: dict[str, Proc], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """Host B's clients, all started at once (most of their time is DDS discovery)."""
    workdir = tmp_path_factory.mktemp("fleet")
    subnet = cli(depot, "B", workdir, ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
    peers = cli(depot, "B", workdir, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                ROS_STATIC_PEERS=HOST_A)  # fmt: skip
    latched = ("--qos-durability", "transient_local", "--qos-reliability", "reliable", "--once")
    echo = ("topic", "echo", "--no-daemon", *latched)
    goal = ("action", "send_goal")
    clients = {
        "availability": subnet.start(
            *echo, "/subnet/pistol1/charger_availability", "evse_can_ros/msg/ChargerAvailability"
        ),
        "subnet": subnet.start(*goal, "/subnet/pistol1/charge", CHARGE, "{target_soc: 21.0}"),
        "peers": peers.start(*goal, "/peers/pistol1/charge", CHARGE, "{target_soc: 21.0}"),
        # host B on the depot network; the spin time is longer than discovery takes here
        "nodes": subnet.start("node", "list", "--no-daemon", "--spin-time", "6"),
    }
    try:
        yield Fleet(clients, subnet)
    finally:
        for client in clients.values():
            client.kill()


def test_fleet_manager_on_the_subnet_charges_a_car(fleet_manager: Fleet) -> None:
    goal = fleet_manager.clients["subnet"]
    assert goal.wait(90) == 0
    assert "Goal finished with status: SUCCEEDED" in goal.output(), goal.tail()
    assert "unexpected goal response" not in goal.output()
    fleet_manager.clients["availability"].wait_for(r"availability_name: \w+", 30)
    latched = ("--qos-durability", "transient_local", "--qos-reliability", "reliable", "--once")
    unplug = fleet_manager.subnet.run(
        "topic", "echo", "--no-daemon", *latched, "/subnet/pistol1/safe_to_unplug",
        "evse_can_ros/msg/SafeToUnplug",
    )  # fmt: skip
    assert "safe: true" in unplug.stdout, unplug.stdout


def test_static_peers_reach_the_charger_without_multicast(fleet_manager: Fleet) -> None:
    goal = fleet_manager.clients["peers"]
    assert goal.wait(90) == 0
    assert "Goal finished with status: SUCCEEDED" in goal.output(), goal.tail()


def test_package_default_keeps_the_charger_on_its_host(
    depot: Depot, chargers: dict[str, Proc], fleet_manager: Fleet, tmp_path: Path
) -> None:
    # host B, on the depot network, sees the other chargers but not the one with the default
    listing = fleet_manager.clients["nodes"]
    assert listing.wait(30) == 0
    nodes = listing.output().split()
    assert "/subnet/pistol1/charge_server" in nodes and "/peers/pistol1/charge_server" in nodes
    assert not [n for n in nodes if re.match(r"/default/", n)], nodes
    # while on host A it is there
    host_a = cli(depot, "A", tmp_path)
    wait_until(
        lambda: (
            "/default/pistol1/charge_server"
            in host_a.run("node", "list", "--no-daemon", "--spin-time", "2").stdout
        ),
        30,
        "the /default charger on host A",
    )
