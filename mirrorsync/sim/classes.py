"""System classes: ``##class(%SYSTEM.X).Y()`` and ``$SYSTEM.X.Y()``."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mirrorsync import listcodec
from mirrorsync.sim import xmlglobals
from mirrorsync.sim.collation import Num, boolean, to_decimal
from mirrorsync.sim.errors import (
    ExceptionObject,
    MError,
    MObject,
    ORef,
    Unsupported,
    make_status,
    status_errors,
    status_text,
)
from mirrorsync.sim.host import MIRROR_STATUS_DISPLAY

if TYPE_CHECKING:
    import tree_sitter

    from mirrorsync.sim.interpreter import Interpreter

    Node = tree_sitter.Node

Args = Sequence[str | None]
Method = Callable[["Interpreter", Args], str]


def _arg(args: Args, index: int, default: str = "") -> str:
    """Positional argument or default (omitted arguments are None)."""
    if index < len(args):
        value = args[index]
        if value is not None:
            return value
    return default


# -- %SYSTEM.OBJ ----------------------------------------------------------------------------------


def obj_export(interp: Interpreter, args: Args) -> str:
    """``Export(items, filename, qspec, .errorlog, charset)``."""
    return xmlglobals.export(interp, _arg(args, 0), _arg(args, 1), _arg(args, 2))


def obj_load(interp: Interpreter, args: Args) -> str:
    """``Load(file, qspec, .errorlog, .loadedlist, listonly, ...)`` and ``Import``."""
    if _arg(args, 4) not in ("", "0"):
        raise Unsupported("$SYSTEM.OBJ.Load with listonly")
    return xmlglobals.load(interp, _arg(args, 0), _arg(args, 1))


# -- %SYSTEM.Mirror (facts §5) --------------------------------------------------------------------


def mirror_is_member(interp: Interpreter, args: Args) -> str:
    """0 none, 1 failover, 2 async (configuration, not state)."""
    return Num(str(interp.host.settings.mirror_is_member))


def mirror_is_primary(interp: Interpreter, args: Args) -> str:
    """1 iff the status is PRIMARY."""
    settings = interp.host.settings
    return boolean(settings.mirror_is_member != 0 and settings.mirror_status == "PRIMARY")


def mirror_is_backup(interp: Interpreter, args: Args) -> str:
    """1 iff a failover member with status BACKUP (TRANSITION gives 0 for both flags)."""
    settings = interp.host.settings
    return boolean(settings.mirror_is_member == 1 and settings.mirror_status == "BACKUP")


def mirror_is_async(interp: Interpreter, args: Args) -> str:
    """1 iff an async member with a data channel (status CONNECTED)."""
    settings = interp.host.settings
    return boolean(settings.mirror_is_member == 2 and settings.mirror_status == "CONNECTED")


def mirror_member_type(interp: Interpreter, args: Args) -> str:
    """``Failover``, ``Async``, ``Disaster Recovery``, ``Not Member`` ..."""
    return interp.host.settings.mirror_member_type


def mirror_status(interp: Interpreter, args: Args) -> str:
    """``PRIMARY``, ``BACKUP``, ``CONNECTED``, ``TRANSITION``, ``NOTINIT`` ..."""
    settings = interp.host.settings
    return settings.mirror_status if settings.mirror_is_member else "NOTINIT"


def mirror_member_status(interp: Interpreter, args: Args) -> str:
    """A ``$LIST`` whose first element is the display form of the status."""
    status = mirror_status(interp, args)
    display = MIRROR_STATUS_DISPLAY.get(status, status.title())
    return listcodec.encode([display])


def mirror_name(interp: Interpreter, args: Args) -> str:
    """The mirror name on a failover member; ``""`` on an async (CONFIRMED, facts §5)."""
    settings = interp.host.settings
    return settings.mirror_name if settings.mirror_is_member == 1 else ""


def mirror_names(interp: Interpreter, args: Args) -> str:
    """``$LIST`` of configured mirror names or ``""``."""
    settings = interp.host.settings
    if settings.mirror_is_member and settings.mirror_name:
        return listcodec.encode([settings.mirror_name])
    return ""


# -- %SYSTEM.Version (facts §6.2) -----------------------------------------------------------------


def version_number(interp: Interpreter, args: Args) -> str:
    """``$p($p($zv,") ",2)," ",1)``, e.g. ``2025.1``."""
    zv = interp.host.settings.zv
    after = zv.split(") ", 1)[1] if ") " in zv else ""
    return after.split(" ", 1)[0]


def _version_piece(index: int) -> Method:
    def method(interp: Interpreter, args: Args) -> str:
        pieces = version_number(interp, args).split(".")
        return pieces[index] if index < len(pieces) else ""

    return method


def version_build(interp: Interpreter, args: Args) -> str:
    """The text after ``(Build`` up to ``)``."""
    zv = interp.host.settings.zv
    marker = "(Build "
    if marker not in zv:
        return ""
    return zv.split(marker, 1)[1].split(")", 1)[0]


# -- %SYSTEM.Status -------------------------------------------------------------------------------


def status_is_ok(interp: Interpreter, args: Args) -> str:
    """``$$$ISOK``: anything not starting with ``0``."""
    return boolean(not _arg(args, 0).startswith("0"))


def status_is_error(interp: Interpreter, args: Args) -> str:
    """``$$$ISERR``."""
    return boolean(_arg(args, 0).startswith("0"))


def status_get_error_text(interp: Interpreter, args: Args) -> str:
    """``ERROR #5012: File '/x' does not exist``; ``""`` for OK."""
    return status_text(_arg(args, 0))


def status_get_error_codes(interp: Interpreter, args: Args) -> str:
    """Comma-separated codes."""
    return ",".join(str(code) for code, _ in status_errors(_arg(args, 0)))


def status_display_error(interp: Interpreter, args: Args) -> str:
    """Write the error text on its own line."""
    text = status_text(_arg(args, 0))
    if text:
        interp.out.newline()
        interp.out.write(text)
    return "1"


def status_ok(interp: Interpreter, args: Args) -> str:
    """``$$$OK``."""
    return Num("1")


def status_error(interp: Interpreter, args: Args) -> str:
    """``Error(code, p1, p2, ...)``."""
    code = int(to_decimal(_arg(args, 0)))
    return make_status(code, *[value or "" for value in args[1:]])


# -- %SYSTEM.Encryption ---------------------------------------------------------------------------


def _bytes_of(value: str) -> bytes:
    """A string of chars 0-255 as bytes; wider chars -> ``<ILLEGAL VALUE>``."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise MError("ILLEGAL VALUE") from exc


def base64_encode(interp: Interpreter, args: Args) -> str:
    """``Base64Encode(text[,flags])``.

    ASSUMPTION (brief; not in the facts): without flags IRIS inserts CR LF after every 76 output
    characters; ``flags=1`` gives one unbroken line.
    """
    encoded = base64.b64encode(_bytes_of(_arg(args, 0))).decode("ascii")
    flags = int(to_decimal(_arg(args, 1, "0")))
    if flags & 1:
        return encoded
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def base64_decode(interp: Interpreter, args: Args) -> str:
    """``Base64Decode(text)``; whitespace is ignored."""
    try:
        raw = base64.b64decode("".join(_arg(args, 0).split()), validate=True)
    except ValueError as exc:
        raise MError("ILLEGAL VALUE") from exc
    return raw.decode("latin-1")


def sha_hash(interp: Interpreter, args: Args) -> str:
    """``SHAHash(bitlength, text)``: raw digest bytes as a string."""
    bits = int(to_decimal(_arg(args, 0)))
    algorithms = {160: "sha1", 224: "sha224", 256: "sha256", 384: "sha384", 512: "sha512"}
    if bits not in algorithms:
        raise MError("ILLEGAL VALUE")
    return hashlib.new(algorithms[bits], _bytes_of(_arg(args, 1))).digest().decode("latin-1")


def sha1_hash(interp: Interpreter, args: Args) -> str:
    """``SHA1Hash(text)``."""
    return hashlib.sha1(_bytes_of(_arg(args, 0))).digest().decode("latin-1")  # noqa: S324


def md5_hash(interp: Interpreter, args: Args) -> str:
    """``MD5Hash(text)``."""
    return hashlib.md5(_bytes_of(_arg(args, 0))).digest().decode("latin-1")  # noqa: S324


# -- %SYSTEM.Process ------------------------------------------------------------------------------


def process_terminate(interp: Interpreter, args: Args) -> str:
    """``Terminate(pid, status)``: end this process with exit status ``status``."""
    from mirrorsync.sim.interpreter import HaltSession

    pid = _arg(args, 0)
    if pid not in ("", str(os.getpid())):
        raise Unsupported("Terminate of another process")
    raise HaltSession(int(to_decimal(_arg(args, 1, "0"))))


def process_current_directory(interp: Interpreter, args: Args) -> str:
    """``CurrentDirectory([dir])``: returns (and optionally changes) the working directory."""
    previous = os.getcwd() + "/"
    new = _arg(args, 0)
    if new:
        try:
            os.chdir(new)
        except OSError as exc:
            raise MError("DIRECTORY", new) from exc
    return previous


# -- %SYS.Namespace, exceptions -------------------------------------------------------------------


def namespace_exists(interp: Interpreter, args: Args) -> str:
    """``##class(%SYS.Namespace).Exists(ns)``."""
    wanted = _arg(args, 0).upper()
    return boolean(any(ns.upper() == wanted for ns in interp.host.settings.namespaces))


# -- Where globals live (issue 6, checklist 10): %SYS.Namespace.GetGlobalDest, SYS.Database -----

MIRRORED_DB_DIRECTORY = "/irisdata/oauth2mirror/"
"""The simulated mirrored database that ``HostSettings.mirrored_globals`` are mapped to."""
MIRRORED_DB_NAME = "OAUTH2MIRROR"


def _databases(interp: Interpreter) -> dict[str, tuple[bool, str]]:
    """Directory -> (mirrored, mirror database name) of the simulated local databases.

    ASSUMPTION (not in the facts): IRISSYS is ``<install>/mgr/``, USER ``<install>/mgr/user/``
    and IRISSECURITY ``<install>/mgr/irissecurity/``, the default directories of an install.
    """
    mgr = interp.host.settings.install_dir.rstrip("/") + "/mgr/"
    found = {mgr: (False, ""), mgr + "user/": (False, ""), mgr + "irissecurity/": (False, "")}
    if interp.host.settings.mirrored_globals:
        found[MIRRORED_DB_DIRECTORY] = (True, MIRRORED_DB_NAME)
    return found


def namespace_get_global_dest(interp: Interpreter, args: Args) -> str:
    """``GetGlobalDest(Namespace=$namespace, Global="^", Subscript="")``: ``system^directory``.

    CONFIRMED ([CACHESRC] ``%SYS/Namespace.cls`` and ``%SYS.GXLINF1`` getdest, Caché ~2016):
    the result is ``system^directory`` with an empty system for a local database (so
    ``^/path/``), a leading caret on the global is optional, and an unknown namespace gives "".
    ASSUMPTION: IRIS up to 2025.1 keeps this contract. Subscript-level mappings are not modelled.
    """
    namespace = _arg(args, 0) or interp.state.namespace
    if not any(ns.upper() == namespace.upper() for ns in interp.host.settings.namespaces):
        return ""
    name = _arg(args, 1, "^").removeprefix("^")
    mgr = interp.host.settings.install_dir.rstrip("/") + "/mgr/"
    if name in interp.host.settings.mirrored_globals:
        return "^" + MIRRORED_DB_DIRECTORY
    if name == "SECURITY":
        return "^" + mgr + "irissecurity/"
    if namespace.upper() == "%SYS" or name.startswith("%"):
        return "^" + mgr
    return "^" + mgr + "user/"


class DatabaseObject(MObject):
    """A ``SYS.Database`` opened by directory (read-only properties only)."""

    class_name = "SYS.Database"

    def __init__(self, directory: str, mirrored: bool, mirror_db_name: str) -> None:
        """Describe one local database."""
        super().__init__()
        self.directory = directory
        self.mirrored = mirrored
        self.mirror_db_name = mirror_db_name

    def get_property(self, name: str) -> str:
        """CONFIRMED ([CACHESRC] ``SYS/Database.cls``): ``Directory``, ``Mirrored`` (%Boolean,
        read-only, "Database is marked as mirrored"), ``MirrorDBName``, ``MirrorSetName``."""
        values = {
            "Directory": self.directory,
            "Mirrored": boolean(self.mirrored),
            "MirrorDBName": self.mirror_db_name,
            "MirrorSetName": self.mirror_db_name and "MIRRORSET",
            "Mounted": boolean(True),
            "ReadOnly": boolean(False),
        }
        if name in values:
            return values[name]
        return super().get_property(name)


def database_open_id(interp: Interpreter, args: Args) -> str:
    """``##class(SYS.Database).%OpenId(Directory)`` (the documented way to open a database).

    SYS classes are available in %SYS only (facts §5 for SYS.Mirror; ASSUMPTION for
    SYS.Database): elsewhere ``<CLASS DOES NOT EXIST>``. INFERRED (any %Persistent): an unknown
    id returns "" rather than raising.
    """
    if interp.state.namespace.upper() != "%SYS":
        raise MError("CLASS DOES NOT EXIST", "SYS.Database")
    wanted = _arg(args, 0)
    for directory, (mirrored, name) in _databases(interp).items():
        if directory.rstrip("/") == wanted.rstrip("/"):
            return ORef(DatabaseObject(directory, mirrored, name))
    return ""


def _exception_new(class_name: str) -> Method:
    def method(interp: Interpreter, args: Args) -> str:
        return ORef(
            ExceptionObject(class_name, _arg(args, 0), _arg(args, 1), _arg(args, 2), _arg(args, 3))
        )

    return method


def status_exception_from_status(interp: Interpreter, args: Args) -> str:
    """``##class(%Exception.StatusException).CreateFromStatus(sc)``."""
    status = _arg(args, 0)
    errors = status_errors(status)
    code = str(errors[0][0]) if errors else ""
    obj = ExceptionObject("%Exception.StatusException", f"ERROR #{code}", code, "", "")
    obj.status = status
    return ORef(obj)


CLASSES: dict[str, dict[str, Method]] = {
    "%SYSTEM.OBJ": {"Export": obj_export, "Load": obj_load, "Import": obj_load},
    "%SYSTEM.Mirror": {
        "IsMember": mirror_is_member,
        "IsPrimary": mirror_is_primary,
        "IsBackup": mirror_is_backup,
        "IsAsyncMember": mirror_is_async,
        "GetMemberType": mirror_member_type,
        "GetStatus": mirror_status,
        "GetMemberStatus": mirror_member_status,
        "MirrorName": mirror_name,
        "GetMirrorNames": mirror_names,
    },
    "%SYSTEM.Version": {
        "GetNumber": version_number,
        "GetMajor": _version_piece(0),
        "GetMinor": _version_piece(1),
        "GetPoint": _version_piece(2),
        "GetBuildNumber": version_build,
        "GetVersion": lambda interp, args: interp.host.settings.zv,
    },
    "%SYSTEM.Status": {
        "IsOK": status_is_ok,
        "IsError": status_is_error,
        "GetErrorText": status_get_error_text,
        "GetErrorCodes": status_get_error_codes,
        "DisplayError": status_display_error,
        "OK": status_ok,
        "Error": status_error,
    },
    "%SYSTEM.Encryption": {
        "Base64Encode": base64_encode,
        "Base64Decode": base64_decode,
        "SHAHash": sha_hash,
        "SHA1Hash": sha1_hash,
        "MD5Hash": md5_hash,
    },
    "%SYSTEM.Process": {
        "Terminate": process_terminate,
        "CurrentDirectory": process_current_directory,
    },
    "%SYS.Namespace": {"Exists": namespace_exists, "GetGlobalDest": namespace_get_global_dest},
    "SYS.Database": {"%OpenId": database_open_id},
    "%Exception.General": {"%New": _exception_new("%Exception.General")},
    "%Exception.StatusException": {
        "%New": _exception_new("%Exception.StatusException"),
        "CreateFromStatus": status_exception_from_status,
    },
}

# Real classes whose other methods the simulator does not implement (-> <SYNTAX> + stderr note).
_REAL_CLASSES = {
    "%SYSTEM.SQL",
    "%SYSTEM.Security",
    "%SYSTEM.Util",
    "%SYSTEM.CSP",
    "%SYSTEM.License",
    "Security.Users",
    "Config.Mirrors",
    "SYS.Mirror",
    "%Library.Global",
    "%SYSTEM.Config",
}


def invoke(interp: Interpreter, class_name: str, method: str, args: Args) -> str:
    """Call a class method by name."""
    methods = CLASSES.get(class_name)
    if methods is None:
        if class_name in _REAL_CLASSES:
            raise Unsupported(f"class {class_name}")
        raise MError("CLASS DOES NOT EXIST", class_name)
    handler = methods.get(method)
    if handler is None:
        raise MError("METHOD DOES NOT EXIST", f"{method},{class_name}")
    return handler(interp, args)


def _node_text(node: Node) -> str:
    raw = node.text
    return raw.decode("utf-8") if raw is not None else ""


def call_system(interp: Interpreter, node: Node) -> str:
    """``$SYSTEM.Class.Method(args)``: ``$SYSTEM`` and the class part are case-insensitive."""
    class_node = next(c for c in node.children if c.type == "class_name")
    method_node = next(c for c in node.children if c.type == "method_name")
    written = _node_text(class_node)
    class_name = "%SYSTEM." + written
    for known in CLASSES:
        if known.upper() == class_name.upper():
            class_name = known
            break
    args = interp.eval_args(next((c for c in node.children if c.type == "method_args"), None))
    return invoke(interp, class_name, _node_text(method_node), args)


def call_class_method(interp: Interpreter, node: Node) -> str:
    """``##class(Name).Method(args)`` (class and method names are case-sensitive)."""
    class_ref = next(c for c in node.children if c.type == "class_ref")
    class_name_node = next(c for c in class_ref.children if c.type == "class_name")
    class_name = _node_text(class_name_node)
    if class_name.startswith("%") is False and "." not in class_name:
        # ##class(Foo) is shorthand for User.Foo.
        class_name = "User." + class_name
    elif class_name.startswith("%") and "." not in class_name:
        class_name = "%Library." + class_name[1:]
    method_node = next(c for c in node.children if c.type == "method_name")
    args = interp.eval_args(next((c for c in node.children if c.type == "method_args"), None))
    return invoke(interp, class_name, _node_text(method_node), args)
