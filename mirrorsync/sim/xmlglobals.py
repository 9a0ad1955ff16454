"""``$SYSTEM.OBJ.Export`` / ``Load`` of globals in the IRIS XML format (facts §1-3, §8)."""

from __future__ import annotations

import base64
import fnmatch
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from mirrorsync.sim.errors import MError, Unsupported, make_status, status_text

if TYPE_CHECKING:
    from mirrorsync.sim.interpreter import Interpreter, Ref


@dataclass
class Qualifiers:
    """The qualifiers that matter here, parsed from a qspec string."""

    display_log: bool = True
    display_error: bool = True
    diffexport: bool = False
    mergeglobal: bool = False


def parse_qspec(qspec: str) -> Qualifiers:
    """Parse flags then ``/qualifiers`` (facts §2): ``-d``, ``/nodisplay``, ``/displaylog=0`` ..."""
    result = Qualifiers()
    flags, _, rest = qspec.partition("/")
    enabled = True
    for char in flags.strip():
        if char == "-":
            enabled = False
        elif char == "+":
            enabled = True
        elif char.lower() == "d":
            # CONFIRMED (facts §2): flag d is "display", the alias of /displaylog + /displayerror.
            result.display_log = enabled
            result.display_error = enabled
    for raw in rest.split("/") if rest else []:
        item = raw.strip().lower()
        if not item:
            continue
        name, equals, value = item.partition("=")
        on = not (equals and value.strip() in ("0", ""))
        if name.startswith("no") and not equals:
            name, on = name[2:], False
        if name == "display":
            result.display_log = result.display_error = on
        elif name == "displaylog":
            result.display_log = on
        elif name == "displayerror":
            result.display_error = on
        elif name == "diffexport":
            result.diffexport = on
        elif name == "mergeglobal":
            result.mergeglobal = on
    return result


def _xml_text(value: str) -> str:
    """Escape text content; CR as a character reference so parsers keep it.

    ASSUMPTION (facts §1.1 shows no such value): IRIS's exact escaping of CR is unknown; a raw CR
    would be normalised to LF by any XML parser, so the simulator writes ``&#13;``.
    """
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _needs_base64(value: str) -> bool:
    """Values XML 1.0 cannot carry (every ``$LIST`` has such characters)."""
    return _XML_ILLEGAL.search(value) is not None


def _base64_lines(value: str) -> str:
    """Standard Base64 of the UTF-8 bytes, wrapped at 76 characters."""
    encoded = base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")
    return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def _element(tag: str, value: str) -> str:
    """``<Data>v</Data>`` or the Base64 form (facts §1.2, checklist 6).

    ASSUMPTION (facts §1.2, UNKNOWN): values with control characters are written as
    ``<DataBase64>`` (subscripts as ``<SubBase64>``), by analogy with ``<RoutineBase64>``: the
    Base64 text starts right after the tag, is wrapped at 76 characters, and the closing tag is on
    a line of its own.
    """
    if _needs_base64(value):
        return f"<{tag}Base64>{_base64_lines(value)}\n</{tag}Base64>"
    return f"<{tag}>{_xml_text(value)}</{tag}>"


def zv_attribute(zv: str) -> str:
    """``$ZV`` cut after the ``(Build ...)`` part (facts §8)."""
    match = re.match(r"^(.*?\(Build [^)]*\))", zv)
    return match.group(1) if match else zv


def _split_items(items: str) -> list[str]:
    """Split on commas outside quotes and parentheses."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for char in items:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _strip_type(item: str) -> tuple[str, str]:
    """Split ``name.TYPE`` on the last dot outside quotes/parentheses."""
    depth = 0
    quoted = False
    last_dot = -1
    for index, char in enumerate(item):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ".":
            last_dot = index
    if last_dot < 0:
        return item, ""
    return item[:last_dot], item[last_dot + 1 :]


def _write_global(lines: list[str], head: str, nodes: list[tuple[tuple[str, ...], str]]) -> None:
    """Append one ``<Global>`` element: nested ``<Node>``s, ``<Data>`` before children."""
    lines.append("<Global>")
    lines.append(f"<Node><Sub>{_xml_text(head)}</Sub>")
    open_path: tuple[str, ...] = ()
    for subs, value in nodes:
        common = 0
        while common < min(len(open_path), len(subs)) and open_path[common] == subs[common]:
            common += 1
        for _ in range(len(open_path) - common):
            lines.append("</Node>")
        for depth in range(common, len(subs)):
            sub = subs[depth]
            if _needs_base64(sub):
                lines.append(f"<Node>{_element('Sub', sub)}")
            else:
                lines.append(f"<Node><Sub>{_xml_text(sub)}</Sub>")
        open_path = subs
        lines.append(_element("Data", value))
    for _ in range(len(open_path)):
        lines.append("</Node>")
    lines.append("</Node>")
    lines.append("</Global>")


def export(interp: Interpreter, items: str, filename: str, qspec: str) -> str:  # noqa: PLR0912, PLR0915 - a flat dispatch mirrors the IRIS reference
    """Run ``$SYSTEM.OBJ.Export`` for global items; return a ``%Status``."""
    from mirrorsync.sim.interpreter import format_ref

    qualifiers = parse_qspec(qspec)
    now = datetime.now()
    out = interp.out
    if filename.lower().endswith((".gz", ".gzip")):
        # CONFIRMED (facts §2): IRIS gzips such files; the simulator does not, so it refuses.
        raise Unsupported("Export to a .gz file")
    if qualifiers.display_log:
        out.write("\n" if out.x == 0 else "\n\n")
        out.write(f"Exporting to XML started on {now:%m/%d/%Y %H:%M:%S}\n")
    errors: list[str] = []
    exports: list[tuple[str, list[tuple[tuple[str, ...], str]], str]] = []
    if not _split_items(items):
        # ASSUMPTION (facts §2): exporting nothing is an error, not an empty file.
        errors.append(make_status(5001, "No items to export"))
    for text in _split_items(items):
        name, kind = _strip_type(text)
        if kind.lower() != "gbl":
            errors.append(make_status(5001, f"Unsupported export item type '{kind}' in '{text}'"))
            continue
        reference = name if name.startswith("^") else "^" + name
        targets: list[Ref] = []
        if "*" in reference or "?" in reference:
            # INFERRED (facts §2): wildcards in global items; plain fnmatch on names.
            pattern = reference[1:]
            interp.host.store.drop_empty()
            for existing in sorted(interp.host.store.trees):
                if fnmatch.fnmatchcase(existing, pattern):
                    targets.append(interp.ref_from_string("^" + existing))
        else:
            try:
                targets.append(interp.ref_from_string(reference))
            except MError:
                errors.append(make_status(5001, f"Invalid global reference '{text}'"))
                continue
        if not targets:
            errors.append(make_status(5001, f"No globals match '{text}'"))
        for ref in targets:
            try:
                nodes = list(interp.iter_nodes(ref))
            except MError as error:
                errors.append(make_status(5002, error.exception.ze()))
                continue
            if not nodes:
                # ASSUMPTION (facts §2, UNKNOWN text): a missing global is an error status.
                errors.append(make_status(5001, f"Global {format_ref(ref)} does not exist"))
                continue
            stripped = [(subs[len(ref.subs) :], value) for subs, value in nodes]
            plain = type(ref)(ref.kind, ref.name, ref.subs, None)
            # ASSUMPTION (facts §1.3, UNKNOWN): a subscripted item keeps its whole reference in
            # the first <Sub> (e.g. ^SECURITY("OAuth2")); Load kills exactly that subtree.
            exports.append((format_ref(plain), stripped, format_ref(ref)))
            if qualifiers.display_log:
                out.write(f"Exporting global: {format_ref(ref)}\n")
    if not errors:
        header = '<Export generator="IRIS" version="26"'
        if not qualifiers.diffexport:
            zv = zv_attribute(interp.host.settings.zv).replace('"', "&quot;")
            header += f' zv="{zv}" ts="{now:%Y-%m-%d %H:%M:%S}"'
        lines = ['<?xml version="1.0" encoding="UTF-8"?>', header + ">"]
        for head, nodes, _ in exports:
            _write_global(lines, head, nodes)
        lines.append("</Export>")
        try:
            if filename == "":
                # CONFIRMED (facts §2): an empty file name exports to the current device.
                out.write("\n".join(lines) + "\n")
            else:
                # The file gets the process umask, like a file IRIS creates.
                # ASSUMPTION: a relative path is relative to the process's working directory
                # (IRIS would use the namespace's default directory).
                with open(filename, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write("\n".join(lines) + "\n")
        except OSError as exc:
            errors.append(make_status(5005, f"{filename} ({exc.strerror})"))
    if errors:
        if qualifiers.display_error:
            for status in errors:
                out.write(status_text(status) + "\n")
        if qualifiers.display_log:
            # ASSUMPTION (facts §2): the failure summary line.
            out.write("Export finished with error(s).\n")
        return _combine(errors)
    if qualifiers.display_log:
        out.write("Export finished successfully.\n")
    return "1"


def _combine(statuses: list[str]) -> str:
    """Join several error statuses into one (``$$$ADDSC``)."""
    from mirrorsync import listcodec

    inner: list[listcodec.ListItem] = []
    for status in statuses:
        inner.extend(listcodec.decode(status[2:]))
    return "0 " + listcodec.encode(inner)


@dataclass
class _LoadedGlobal:
    """One ``<Global>`` element: the exported reference and its nodes (relative subscripts)."""

    head: str
    nodes: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


class _BadFile(Exception):
    """The file is not a global export we can load."""


def _node_value(element: ET.Element, tag: str) -> str | None:
    """Text of ``<Tag>`` or decoded ``<TagBase64>`` child."""
    plain = element.find(tag)
    if plain is not None:
        return plain.text or ""
    encoded = element.find(tag + "Base64")
    if encoded is not None:
        try:
            raw = base64.b64decode("".join((encoded.text or "").split()), validate=True)
            return raw.decode("utf-8", "surrogatepass")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadFile(f"invalid {tag}Base64") from exc
    return None


def _walk(element: ET.Element, path: tuple[str, ...], into: _LoadedGlobal) -> None:
    """Collect values of a ``<Node>`` and its children."""
    value = _node_value(element, "Data")
    if value is not None:
        into.nodes.append((path, value))
    for child in element.findall("Node"):
        sub = _node_value(child, "Sub")
        if sub is None or sub == "":
            raise _BadFile("<Node> without <Sub>")
        _walk(child, (*path, sub), into)


def _parse_file(content: bytes) -> list[_LoadedGlobal]:
    """Parse a whole export file before anything is written."""
    try:
        root = ET.fromstring(content)  # noqa: S314 - local file written by an IRIS (simulator) export
    except ET.ParseError as exc:
        raise _BadFile(str(exc)) from exc
    if root.tag != "Export":
        raise _BadFile(f"root element <{root.tag}> is not <Export>")
    globals_found: list[_LoadedGlobal] = []
    for child in root:
        if child.tag != "Global":
            raise _BadFile(f"unsupported item <{child.tag}>")
        nodes = child.findall("Node")
        if len(nodes) != 1:
            raise _BadFile("<Global> must hold one top <Node>")
        head = _node_value(nodes[0], "Sub")
        if head is None or not head.startswith("^"):
            raise _BadFile("top <Sub> must name a global")
        loaded = _LoadedGlobal(head)
        _walk(nodes[0], (), loaded)
        globals_found.append(loaded)
    return globals_found


def _count_fault(interp: Interpreter) -> None:
    """An injected Load fault fires a set number of times, then clears itself."""
    left = interp.host.settings.fault_load_failures - 1
    if left > 0:
        interp.host.update_settings(fault_load_failures=left)
    else:
        interp.host.update_settings(fault_load_after_nodes=None, fault_load_failures=1)


def settings_transactional(interp: Interpreter) -> bool:
    """Whether this host's Load joins an open transaction (see HostSettings)."""
    return interp.host.settings.load_transactional


def load(interp: Interpreter, files: str, qspec: str) -> str:  # noqa: PLR0912, PLR0915 - a flat dispatch mirrors the IRIS reference
    """Run ``$SYSTEM.OBJ.Load``/``Import`` of global XML files; return a ``%Status``."""
    qualifiers = parse_qspec(qspec)
    out = interp.out
    now = datetime.now()
    if qualifiers.display_log:
        out.write("\n" if out.x == 0 else "\n\n")
        out.write(f"Load started on {now:%m/%d/%Y %H:%M:%S}\n")
    errors: list[str] = []
    parsed: list[tuple[str, list[_LoadedGlobal]]] = []
    for path in [p for p in files.split("*") if p] or [""]:
        if path.lower().endswith((".gz", ".gzip")):
            raise Unsupported("Load of a .gz file")
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            errors.append(make_status(5012, path))
            continue
        except OSError as exc:
            errors.append(make_status(5005, f"{path} ({exc.strerror})"))
            continue
        try:
            parsed.append((path, _parse_file(content)))
        except _BadFile as exc:
            errors.append(make_status(6301, f"{path}: {exc}"))
    malformed = any(status_text(e).startswith("ERROR #6301") for e in errors)
    undo_mark = len(interp.state.undo)
    if not malformed:
        settings = interp.host.settings
        kill_first = not qualifiers.mergeglobal and settings.load_kill == "kill"
        written = 0
        fault_at = settings.fault_load_after_nodes
        for path, loaded_globals in parsed:
            if qualifiers.display_log:
                out.write(f"Loading file {path} as xml\n")
            for loaded in loaded_globals:
                try:
                    base = interp.ref_from_string(loaded.head)
                    if kill_first:
                        # CONFIRMED (facts §3): Load kills the global before importing it;
                        # INFERRED: for a subscripted export only the exported subtree.
                        interp.kill_ref(base)
                        if settings.fault_load_pause and written == 0:
                            time.sleep(settings.fault_load_pause)
                    for subs, value in loaded.nodes:
                        if written == fault_at:
                            fault_at = None  # one failure per Load
                            _count_fault(interp)
                            raise MError("FILEFULL", "simulated: database full")
                        interp.store(base.with_subs(subs), value)
                        written += 1
                except MError as error:
                    errors.append(make_status(5002, error.exception.ze()))
                    continue
                if qualifiers.display_log:
                    # INFERRED (facts §3): wording by analogy with "Imported routine:".
                    out.write(f"Imported global: {loaded.head}\n")
    if not settings_transactional(interp):
        # Modelled non-transactional Load: its changes survive a TROLLBACK.
        del interp.state.undo[undo_mark:]
    if errors:
        if qualifiers.display_error:
            for status in errors:
                out.write(status_text(status) + "\n")
        if qualifiers.display_log:
            # INFERRED (facts §3): the failure summary.
            out.write(f"Detected {len(errors)} errors during load.\n")
        return _combine(errors)
    if qualifiers.display_log:
        out.write("Load finished successfully.\n")
    return "1"
