"""Command line: ``python -m mirrorsync.sim [--home HOSTDIR] session INSTANCE [-U NS] [routine]``.

Arguments follow the real ``iris`` binary; ``MIRRORSYNC_SIM_HOME`` replaces ``--home``. Parsing is
done by hand to keep start-up fast (the simulator starts once per remote command).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = (
    "usage: python -m mirrorsync.sim [--home HOSTDIR] session INSTANCE [-U NAMESPACE] [routine]\n"
    "       python -m mirrorsync.sim [--home HOSTDIR] qlist|list [INSTANCE]"
)


def _control(home: Path, command: str, rest: list[str]) -> int:
    """``iris qlist [INSTANCE]`` / ``iris list [INSTANCE]``."""
    from mirrorsync.sim.control import list_block, qlist_line
    from mirrorsync.sim.host import SimHost

    settings = SimHost(home).settings
    if rest and rest[0].upper() != settings.instance.upper():
        # ASSUMPTION (facts §4.5): an unknown instance lists nothing and fails.
        sys.stderr.write(f"Instance '{rest[0]}' not found\n")
        return 1
    sys.stdout.write(qlist_line(settings) + "\n" if command == "qlist" else list_block(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    home = os.environ.get("MIRRORSYNC_SIM_HOME", "")
    if len(args) >= 2 and args[0] == "--home":
        home = args[1]
        args = args[2:]
    elif args and args[0].startswith("--home="):
        home = args[0].split("=", 1)[1]
        args = args[1:]
    if args and args[0] in ("qlist", "list") and home:
        return _control(Path(home), args[0], args[1:])
    if not args or args[0] not in ("session", "terminal"):
        sys.stderr.write(USAGE + "\n")
        return 2
    if not home:
        sys.stderr.write("mirrorsync.sim: no host directory (--home or MIRRORSYNC_SIM_HOME)\n")
        return 2
    rest = args[1:]
    if not rest:
        sys.stderr.write(USAGE + "\n")
        return 2
    instance = rest[0]
    namespace: str | None = None
    routine: str | None = None
    index = 1
    while index < len(rest):
        arg = rest[index]
        if arg == "-U" and index + 1 < len(rest):
            namespace = rest[index + 1]
            index += 2
            continue
        if arg in ("-B",):
            index += 1
            continue
        if arg == "-b" and index + 1 < len(rest):
            index += 2
            continue
        routine = arg
        index += 1

    from mirrorsync.sim.host import SimHost
    from mirrorsync.sim.session import Terminal, run_session

    try:
        host = SimHost(Path(home))
    except FileNotFoundError as exc:
        sys.stderr.write(f"mirrorsync.sim: {exc}\n")
        return 2
    terminal = Terminal(sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer)
    try:
        return run_session(host, instance, namespace, routine, terminal)
    finally:
        terminal.flush()


if __name__ == "__main__":
    sys.exit(main())
