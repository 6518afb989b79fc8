"""The low-power settings on a Raspberry Pi look-alike: the model declared, a real config.txt.

The target is the same booted Debian 13 as in test_role.py, with the model declared by
``pichat_pi_model`` (there is no device tree to read) and a ``/boot/firmware/config.txt``
holding a user's own lines, ending in a conditional section.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import record_timing
from tests.ansible.target import PlaybookRun, Target, provision_target
from tests.system import free_port

pytestmark = pytest.mark.system

CONFIG_TXT = "/boot/firmware/config.txt"
MODEL = "Raspberry Pi 4 Model B Rev 1.4"
BEGIN = "# BEGIN pichat low-power settings (managed by Ansible, edit the role's variables)"
END = "# END pichat low-power settings (managed by Ansible, edit the role's variables)"

# A Raspberry Pi OS config.txt with the user's own lines; it ends in a [pi4] section,
# which must not capture the role's block.
USER_CONFIG = """\
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
arm_64bit=1

[cm4]
otg_mode=1

[all]
# my own lines: keep them
enable_uart=1
dtparam=i2c_arm=on

[pi4]
gpu_mem=16
"""

# What the overlay README documents for a Pi 4 (see ansible/README.md).
PI4_LINES = [
    "[all]",
    "dtoverlay=disable-bt",
    "dtparam=act_led_trigger=none",
    "dtparam=act_led_activelow=off",
    "dtparam=pwr_led_trigger=none",
    "dtparam=pwr_led_activelow=off",
    "dtparam=eth_led0=4",
    "dtparam=eth_led1=4",
    "dtparam=audio=off",
]


class Pi:
    """The look-alike after its first run, and the variables it used."""

    def __init__(self, target: Target, variables: dict[str, Any], first: PlaybookRun) -> None:
        self.target = target
        self.variables = variables
        self.first = first

    def block(self) -> list[str]:
        """The lines config.txt has after the user's, with the markers checked."""
        text = self.target.container.read(CONFIG_TXT)
        assert text.startswith(USER_CONFIG), text
        rest = text[len(USER_CONFIG) :].splitlines()
        assert rest[0] == BEGIN and rest[-1] == END, text
        return rest[1:-1]


@pytest.fixture(scope="module")
def pi(deb: Path) -> Iterator[Pi]:
    """A Pi look-alike provisioned once by ansible/site.yml."""
    with provision_target(deb, files={CONFIG_TXT: USER_CONFIG}) as target:
        variables: dict[str, Any] = {
            "pichat_host": "127.0.0.1",
            "pichat_port": free_port(),
            "pichat_pi_model": MODEL,
        }
        first = target.playbook(variables).check()
        record_timing("first provisioning run (Pi look-alike)", first.seconds)
        yield Pi(target, variables, first)


def test_marked_block_follows_the_untouched_user_lines(pi: Pi) -> None:
    """config.txt keeps the user's lines byte for byte and gains one block of Pi 4 lines."""
    assert pi.block() == PI4_LINES


def test_reboot_is_flagged_the_debian_way_not_done(pi: Pi) -> None:
    """The config.txt change sets /run/reboot-required (naming pichat) and does not reboot."""
    container = pi.target.container
    assert container.read("/run/reboot-required") == "*** System restart required ***\n"
    assert "pichat" in container.read("/run/reboot-required.pkgs").split()
    assert "Reboot for the low-power settings" not in pi.first.changed_tasks()


def test_unneeded_services_are_stopped_and_disabled(pi: Pi) -> None:
    """triggerhappy (socket and service) is stopped and disabled; absent units are skipped."""
    container = pi.target.container
    for unit in ("triggerhappy.socket", "triggerhappy.service"):
        assert container.show(unit, "ActiveState") == "inactive", unit
        assert container.show(unit, "UnitFileState") == "disabled", unit


def test_cpu_governor_is_set_for_every_boot(pi: Pi) -> None:
    """The governor's tmpfiles line and the unit that re-applies it after raspi-config exist."""
    container = pi.target.container
    assert "scaling_governor - - - - powersave" in container.read(
        "/etc/tmpfiles.d/pichat-cpufreq.conf"
    )
    assert container.show("pichat-cpufreq.service", "UnitFileState") == "enabled"


def test_pichat_runs_on_the_pi(pi: Pi) -> None:
    """pichat itself is provisioned on the Pi as on any host."""
    assert pi.target.container.show("pichat.service", "ActiveState") == "active"


def test_second_run_changes_nothing(pi: Pi) -> None:
    """A second run on the converged Pi reports changed=0 and leaves config.txt alone."""
    before = pi.target.container.read(CONFIG_TXT)
    run = pi.target.playbook(pi.variables).check()
    assert run.recap()["changed"] == 0, run.changed_tasks()
    assert pi.target.container.read(CONFIG_TXT) == before


def test_check_diff_on_converged_pi_reports_no_change(pi: Pi) -> None:
    """--check --diff of the power settings on the converged Pi predicts no change."""
    # The tag keeps this run to the tasks test_role.py does not already check-run.
    run = pi.target.playbook(pi.variables, "--check", "--diff", "--tags", "pichat_power")
    assert "Write the low-power lines in one marked block of config.txt." in run.check().output
    assert run.recap()["changed"] == 0, run.output


def test_wifi_off_on_request_rewrites_the_block_in_place(pi: Pi) -> None:
    """pichat_power_wifi_off adds disable-wifi inside the same block; user lines stay."""
    variables = {**pi.variables, "pichat_power_wifi_off": True, "pichat_power_leds_off": False}
    run = pi.target.playbook(variables, "--tags", "pichat_power").check()
    assert "Write the low-power lines in one marked block of config.txt." in run.changed_tasks()
    assert pi.block() == [
        "[all]",
        "dtoverlay=disable-bt",
        "dtoverlay=disable-wifi",
        "dtparam=audio=off",
    ]
    pi.variables = variables
