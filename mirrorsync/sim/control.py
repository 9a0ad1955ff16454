"""``iris qlist`` / ``iris list`` output for one simulated instance (facts §4.5, checklist 11)."""

from __future__ import annotations

from mirrorsync.sim.host import MIRROR_STATUS_DISPLAY, HostSettings


def version_id(settings: HostSettings) -> str:
    """``2025.1.0.230.2``-style id built from ``$ZV`` (INFERRED from the `iris list` samples)."""
    zv = settings.zv
    number = zv.split(") ", 1)[1].split(" ", 1)[0] if ") " in zv else ""
    pieces = number.split(".")
    while len(pieces) < 3:
        pieces.append("0")
    build = zv.split("(Build ", 1)[1].split(")", 1)[0] if "(Build " in zv else "0"
    build = build.rstrip("UuLl").replace("_", ".")
    return ".".join([*pieces[:3], build])


def _mirror(settings: HostSettings) -> tuple[str, str]:
    """Mirror member type and status words (blank when not a member)."""
    if not settings.mirror_is_member:
        return "", ""
    status = MIRROR_STATUS_DISPLAY.get(settings.mirror_status, settings.mirror_status.title())
    return settings.mirror_member_type, status


def qlist_line(settings: HostSettings) -> str:
    """One ``^``-separated line with the 14 fields of facts §4.5 (fewer when down)."""
    directory = settings.install_dir.rstrip("/") + "/"
    common = [settings.instance.upper(), directory, version_id(settings)]
    if not settings.running:
        # CONFIRMED shape ([ISCLIB]): a down instance stops after the ports.
        return "^".join(
            [
                *common,
                f"down, last used {settings.started}",
                "iris.cpf",
                str(settings.superserver_port),
                str(settings.webserver_port),
                "62972",
            ]
        )
    member_type, status = _mirror(settings)
    return "^".join(
        [
            *common,
            f"running, since {settings.started}",
            "iris.cpf",
            str(settings.superserver_port),
            str(settings.webserver_port),
            "62972",
            "ok",
            "IRIS",
            member_type,
            status,
            directory + "mgr/",
            str(settings.superserver_port),
        ]
    )


def list_block(settings: HostSettings) -> str:
    """The ``iris list`` block (facts §4.5)."""
    lines = [
        f"Configuration '{settings.instance.upper()}'   (default)",
        f"\tdirectory:    {settings.install_dir}",
        f"\tversionid:    {version_id(settings)}",
        f"\tdatadir:      {settings.install_dir}",
        f"\tconf file:    iris.cpf  (SuperServer port = {settings.superserver_port}, "
        f"WebServer = {settings.webserver_port})",
    ]
    if settings.running:
        lines.append(f"\tstatus:       running, since {settings.started}")
        member_type, status = _mirror(settings)
        if member_type:
            lines.append(f"\tmirroring: Member Type = {member_type}; Status = {status}")
        lines.append("\tstate:        ok")
    else:
        lines.append(f"\tstatus:       down, last used {settings.started}")
    lines.append("\tproduct:      InterSystems IRIS")
    return "\n".join(lines) + "\n"
