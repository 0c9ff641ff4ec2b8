"""Concurrent jobs each get their own GPU slot through lock files (real processes)."""

import subprocess
import sys

import pytest

from lfads_core.lfads.devices import claim_device, claim_slot

HOLD = """
import sys, time
from lfads_core.lfads.devices import claim_slot
with claim_slot(int(sys.argv[2]), sys.argv[1]) as slot:
    print(slot, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_concurrent_processes_get_distinct_slots_and_wait_when_all_are_taken(tmp_path):
    holders = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "2", "3"],
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    slots = sorted(int(p.stdout.readline()) for p in holders)
    assert slots == [0, 1]
    with pytest.raises(TimeoutError):  # both slots are busy
        with claim_slot(2, tmp_path, poll_s=0.05, timeout_s=0.3):
            pass
    for p in holders:
        p.wait()
    with claim_slot(2, tmp_path, timeout_s=1) as slot:  # a finished job frees its slot
        assert slot == 0


def test_cpu_and_explicit_devices_are_used_as_given(tmp_path):
    with claim_device("cpu", tmp_path) as device:
        assert device.type == "cpu"
    assert not list(tmp_path.iterdir())  # no lock needed
