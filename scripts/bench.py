#!/usr/bin/env python3
"""Benchmark: wall time and peak memory of `mirrorsync drift` and `sync` on lab mirrors.

Usage: python3 scripts/bench.py [--clients 12,200,1000] [--members 3] [--repeat 3]

For each size it starts a lab (real sshd per member, simulated IRIS), then runs the real CLI:
drift on the drifted lab, sync, and drift again on the synced lab, each as a child process
whose peak RSS is read with wait4(). Times are the median of --repeat runs (a fresh lab per
repeat, since a sync changes the lab). The simulator's own time is included: it stands in for
IRIS, so absolute figures say more about the simulator than about a real mirror; what the
benchmark tracks is how mirrorsync scales with the number of clients.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mirrorsync.lab.lab import lab_down, lab_up


def run(args: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS in MiB, exit code) of one CLI run."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mirrorsync", "--log-level", "error", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    return elapsed, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="12,200,1000")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    header = ["clients", "nodes/member", "drift (s)", "sync (s)", "drift after sync (s)"]
    print("| " + " | ".join([*header, "peak RSS (MiB)"]) + " |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for clients in (int(c) for c in options.clients.split(",")):
        times: dict[str, list[float]] = {"drift": [], "sync": [], "again": []}
        rss = 0
        nodes = 0
        for _ in range(options.repeat):
            with tempfile.TemporaryDirectory(prefix="mirrorsync-bench-") as directory:
                lab = lab_up(Path(directory), members=options.members, clients=clients)
                try:
                    from mirrorsync.sim.host import SimHost

                    primary = SimHost(Path(lab.members[0].iris_home))
                    nodes = sum(len(primary.nodes(g)) for g in primary.global_names())
                    config = str(lab.config)
                    for key, args, expected in (
                        ("drift", ["drift", "-c", config], 2),
                        ("sync", ["sync", "-c", config], 0),
                        ("again", ["drift", "-c", config], 0),
                    ):
                        seconds, peak, code = run(args)
                        if code != expected:
                            raise SystemExit(f"{key} exited {code}, expected {expected}")
                        times[key].append(seconds)
                        rss = max(rss, peak)
                finally:
                    lab_down(Path(directory))
        median = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"| {clients} | {nodes} | {median['drift']:.2f} | {median['sync']:.2f} "
            f"| {median['again']:.2f} | {rss} |"
        )


if __name__ == "__main__":
    main()
