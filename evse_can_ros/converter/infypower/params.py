"""Parameters of the InfyPower backend (ROS parameters ``infypower.<name>``).

Validated in one place (:meth:`InfyPowerParams.__post_init__`): a configuration that cannot be
safe is refused with one line (:class:`~evse_can_ros.config.ConfigError`), e.g. an offline
timeout that does not exceed the modules' own 10 s cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.converter.infypower.protocol import (
    BITRATE,
    CONTROLLER_ADDRESS,
    MODULE_ADDRESSES,
    MODULE_CUTOFF,
)

ADDRESSING = ("fixed", "group")
SHARING = ("equal", "rated")
INSULATION_MONITORS = ("none", "external_pass_fail")
POLLS_PER_MODULE = 3
"""Read frames per module and poll round in steady state (0x04, 0x03, 0x0C)."""


def parse_addresses(text: str) -> tuple[int, ...]:
    """Parse ``"0,1,2,3"``, ``"0-3"`` or ``"0x00-0x03"`` (ConfigError if malformed)."""
    out: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x, 0) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError(part)
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part, 0))
    except ValueError:
        raise ConfigError(
            f"InfyPowerParams.module_addresses must look like 0,1,2,3 or 0-3, got {text!r}"
        ) from None
    return tuple(out)


@dataclass(frozen=True)
class InfyPowerParams:
    """Parameters of the InfyPower REG/CEG module backend (see the README, Converter backends)."""

    can_interface: str = param(
        "socketcan",
        "python-can interface of the modules' own CAN bus (socketcan, pcan, kvaser, virtual ...)",
    )
    can_channel: str = param(
        "can1", "channel of the modules' bus (not the controller's bus), e.g. can1"
    )
    can_bitrate: int = param(
        BITRATE,
        "bit/s (the modules use 125000); 0 = leave the interface's setting",
        unit="bit/s",
        min=0,
        max=1_000_000,
    )
    controller_address: int = param(
        CONTROLLER_ADDRESS,
        "our address on the module bus (240 = 0xF0; 0xF8 is the modules' internal one)",
        min=0xF0,
        max=0xF7,
    )
    addressing: str = param(
        "fixed",
        "fixed: the modules at module_addresses; group: ask group_address for its module "
        "count and use the addresses 0..count-1",
        choices=ADDRESSING,
    )
    module_addresses: str = param(
        "0,1,2,3", "fixed addressing: module addresses, e.g. 0,1,2,3 or 0-3 (0..62)"
    )
    group_address: int = param(0, "group addressing: the group number (dial)", min=0, max=60)
    module_count: int = param(
        0,
        "group addressing: expected number of modules (0 = whatever the group reports)",
        min=0,
        max=60,
    )
    min_modules: int = param(
        1,
        "fewer modules online than this: not ready; mid-session: converter fault, output off",
        min=1,
        max=63,
    )
    current_sharing: str = param(
        "equal",
        "equal: total current / N per module; rated: in proportion to each module's rating",
        choices=SHARING,
    )
    min_current: float = param(
        1.0,
        "lowest total current limit commanded while regulating (modules misbehave at 0 A)",
        unit="A",
        min=0.1,
        max=10.0,
    )
    poll_period: float = param(
        1.0, "period of the status/measurement reads of every module", unit="s", min=0.05, max=2.0
    )
    frame_spacing: float = param(
        0.05,
        "least time between two paced frames (reads); setpoint bursts are not paced",
        unit="s",
        min=0.0,
        max=0.2,
    )
    setpoint_period: float = param(
        0.1,
        "least time between setpoint updates that raise the output (decreases and off: at once)",
        unit="s",
        min=0.0,
        max=1.0,
    )
    reply_timeout: float = param(
        3.0,
        "a module that leaves status reads unanswered this long is commanded off and no longer "
        "switched on (its share is not given to the others yet)",
        unit="s",
        min=0.1,
        max=9.0,
    )
    offline_timeout: float = param(
        15.0,
        "a module silent this long is taken out and the current re-split; must exceed the "
        "modules' 10 s cut-off plus reply_timeout",
        unit="s",
        min=10.5,
        max=120.0,
    )
    off_confirm_timeout: float = param(
        2.0,
        "every answering module must report its output off (status B6.0 and current) this long "
        "after an off command, else converter fault",
        unit="s",
        min=0.1,
        max=10.0,
    )
    address_zero_is_broadcast: bool = param(
        False,
        "treat module address 0 as a broadcast address (one source says so): refuse it",
    )
    insulation_monitor: str = param(
        "none",
        "none: the modules measure no insulation, report 0 Ohm (every insulation test fails); "
        "external_pass_fail: an external monitor in the safety chain, report +inf (good)",
        choices=INSULATION_MONITORS,
    )

    def __post_init__(self) -> None:
        check(self)
        name = type(self).__name__
        if self.offline_timeout <= MODULE_CUTOFF + self.reply_timeout:
            raise ConfigError(
                f"{name}: offline_timeout {self.offline_timeout:g} s must exceed the modules' "
                f"{MODULE_CUTOFF:g} s cut-off plus reply_timeout {self.reply_timeout:g} s "
                "(a silent module must be off before its current goes to the others)"
            )
        if self.reply_timeout < 2 * self.poll_period:
            raise ConfigError(
                f"{name}: reply_timeout {self.reply_timeout:g} s must be at least two "
                f"poll periods ({2 * self.poll_period:g} s)"
            )
        if self.off_confirm_timeout < self.poll_period:
            raise ConfigError(
                f"{name}: off_confirm_timeout {self.off_confirm_timeout:g} s must be at least "
                f"one poll period ({self.poll_period:g} s)"
            )
        expected = self.expected_count()
        if expected and self.min_modules > expected:
            raise ConfigError(
                f"{name}: min_modules {self.min_modules} exceeds the {expected} expected modules"
            )
        if expected:
            round_time = expected * (POLLS_PER_MODULE + 1) * self.frame_spacing
            if round_time > self.poll_period + 1e-9:
                raise ConfigError(
                    f"{name}: a poll round of {expected} modules takes {round_time:g} s at "
                    f"frame_spacing {self.frame_spacing:g} s: more than poll_period "
                    f"{self.poll_period:g} s"
                )

    def addresses(self) -> tuple[int, ...]:
        """Return the fixed module addresses (validated); () in group addressing."""
        if self.addressing != "fixed":
            return ()
        addresses = parse_addresses(self.module_addresses)
        where = f"{type(self).__name__}.module_addresses"
        if not addresses:
            raise ConfigError(f"{where}: fixed addressing needs at least one address")
        if len(set(addresses)) != len(addresses):
            raise ConfigError(f"{where}: addresses repeat: {self.module_addresses!r}")
        for a in addresses:
            if a not in MODULE_ADDRESSES:
                raise ConfigError(
                    f"{where}: address {a} outside 0..62 (63 = 0x3F is the broadcast address)"
                )
            if a == 0 and self.address_zero_is_broadcast:
                raise ConfigError(
                    f"{where}: address 0 is refused while address_zero_is_broadcast is true"
                )
        return addresses

    def expected_count(self) -> int:
        """Return the number of modules expected (0 = unknown until the group answers)."""
        if self.addressing == "fixed":
            return len(self.addresses())
        if self.address_zero_is_broadcast:
            raise ConfigError(
                f"{type(self).__name__}: group addressing uses the addresses 0..count-1, which "
                "includes 0: not with address_zero_is_broadcast"
            )
        return self.module_count
