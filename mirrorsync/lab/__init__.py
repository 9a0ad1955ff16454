"""A local simulated IRIS mirror: a real sshd and a simulated IRIS per member."""

from __future__ import annotations

from mirrorsync.lab.lab import LabInfo, LabMember, lab_config_text, lab_down, lab_up, member_name
from mirrorsync.lab.sshd import LabError, SshdInstance, sshd_available, start_sshd, stop_sshd

__all__ = [
    "LabError",
    "LabInfo",
    "LabMember",
    "SshdInstance",
    "lab_config_text",
    "lab_down",
    "lab_up",
    "member_name",
    "sshd_available",
    "start_sshd",
    "stop_sshd",
]
