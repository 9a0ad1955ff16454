"""ObjectScript errors, exception objects, object references and ``%Status`` values."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mirrorsync import listcodec
from mirrorsync.sim.collation import Num

# ASSUMPTION (facts §4.4, codes not in the facts): numeric codes of system errors as reported by
# ``ex.Code``; only the names are confirmed, the numbers are plausible placeholders.
ERROR_CODES: dict[str, int] = {
    "SYNTAX": 8,
    "UNDEFINED": 9,
    "SUBSCRIPT": 10,
    "FUNCTION": 2,
    "DIVIDE": 18,
    "ILLEGAL VALUE": 26,
    "CLASS DOES NOT EXIST": 122,
    "METHOD DOES NOT EXIST": 123,
    "PROPERTY DOES NOT EXIST": 124,
    "INVALID OREF": 117,
    "PROTECT": 11,
    "FILEFULL": 25,
    "NAMESPACE": 50,
    "COMMAND": 7,
    "LIST": 77,
    "MAXNUMBER": 21,
    "NOLINE": 13,
    "THROW": 173,
    "PARAMETER": 170,
    "WRONG TYPE": 174,
    "OBJECT DISPATCH": 107,
}

_oref_ids = itertools.count(1)


class MObject:
    """Base of simulated objects; ``class_name`` is the IRIS class name."""

    class_name = "%Library.RegisteredObject"

    def __init__(self) -> None:
        """Give the object an id for its ``n@Class`` string form."""
        self.oref_id = next(_oref_ids)

    def get_property(self, name: str) -> str:
        """Read a property; unknown -> ``<PROPERTY DOES NOT EXIST>``."""
        raise MError("PROPERTY DOES NOT EXIST", f"{name},{self.class_name}")

    def call(self, name: str, args: Sequence[str | None]) -> str:
        """Call an instance method; unknown -> ``<METHOD DOES NOT EXIST>``."""
        raise MError("METHOD DOES NOT EXIST", f"{name},{self.class_name}")


class ORef(str):
    """An object reference: the string ``n@Class`` carrying the object itself."""

    __slots__ = ("obj",)
    obj: MObject

    def __new__(cls, obj: MObject) -> ORef:
        """Wrap ``obj``."""
        self = super().__new__(cls, f"{obj.oref_id}@{obj.class_name}")
        self.obj = obj
        return self


def make_status(code: int, *params: str) -> str:
    """An error ``%Status``: ``"0 "_$LB($LB(code,params...))`` as IRIS builds it."""
    inner = listcodec.encode([code, *params])
    return "0 " + listcodec.encode([inner])


# ASSUMPTION (facts §3: only 5001/5002/5012 texts are known): message templates of the codes used.
STATUS_TEMPLATES: dict[int, str] = {
    5001: "%1",
    5002: "ObjectScript error: %1",
    5012: "File '%1' does not exist",
    5005: "Cannot open file '%1'",
    5840: "Unable to import file '%1' as this is not a supported type.",
    6301: "SAX XML Parser Error: %1",
    5035: "General exception Name '%1' Code '%2' Data '%3'",
    6083: "Unable to find global '%1'",
    940: "Insufficient privilege for operation",
}


def status_errors(status: str) -> list[tuple[int, list[str]]]:
    """Decompose an error status into (code, params) pairs; ``[]`` for an OK status."""
    if not status.startswith("0"):
        return []
    body = status[2:] if status.startswith("0 ") else status[1:]
    errors: list[tuple[int, list[str]]] = []
    try:
        for outer in listcodec.decode(body):
            if not isinstance(outer, str):
                continue
            items = listcodec.decode(outer)
            code = items[0] if items else 0
            params = ["" if item is None else str(item) for item in items[1:]]
            errors.append(
                (int(code) if isinstance(code, int | str) and str(code).isdigit() else 0, params)
            )
    except (listcodec.ListFormatError, ValueError):
        errors.append((5001, [body]))
    return errors


def status_text(status: str) -> str:
    """``GetErrorText``: ``ERROR #5012: File 'x' does not exist`` (several joined by ``, ``)."""
    texts = []
    for code, params in status_errors(status):
        template = STATUS_TEMPLATES.get(code, "%1")
        text = template
        for index, param in enumerate(params, start=1):
            text = text.replace(f"%{index}", param)
        for index in range(len(params) + 1, 10):
            text = text.replace(f"%{index}", "")
        texts.append(f"ERROR #{code}: {text}")
    return ", ".join(texts)


class ExceptionObject(MObject):
    """``%Exception.SystemException`` / ``General`` / ``StatusException`` instances."""

    def __init__(self, class_name: str, name: str, code: str, location: str, data: str) -> None:
        """Fill the four public properties."""
        super().__init__()
        self.class_name = class_name
        self.name = name
        self.code = code
        self.location = location
        self.data = data
        self.status: str | None = None

    def get_property(self, name: str) -> str:
        """``Name``, ``Code``, ``Location``, ``Data``."""
        props = {"Name": self.name, "Code": self.code, "Location": self.location, "Data": self.data}
        if name in props:
            value = props[name]
            return Num(value) if name == "Code" and value.lstrip("-").isdigit() else value
        return super().get_property(name)

    def display_string(self) -> str:
        """``DisplayString()``."""
        if self.class_name == "%Exception.StatusException" and self.status is not None:
            return status_text(self.status)
        # ASSUMPTION (facts §4.4 only gives $ZE): DisplayString is Name_" "_Code_" "_Location_
        # " "_Data, as %Exception.AbstractException builds it, trimmed of empty parts.
        parts = [self.name, self.code, self.location, self.data]
        return " ".join(part for part in parts if part != "")

    def as_status(self) -> str:
        """``AsStatus()``: 5002 for system errors, the original status or 5001 otherwise."""
        if self.status is not None:
            return self.status
        if self.class_name == "%Exception.SystemException":
            return make_status(5002, self.ze())
        return make_status(5001, self.name)

    def ze(self) -> str:
        """The ``$ZERROR`` form: ``<NAME>location *data``."""
        detail = f" *{self.data}" if self.data != "" else ""
        return f"{self.name}{self.location}{detail}"

    def call(self, name: str, args: Sequence[str | None]) -> str:
        """``DisplayString``, ``AsStatus``, ``AsSystemError``, ``Log``."""
        if name == "DisplayString":
            return self.display_string()
        if name == "AsStatus":
            return self.as_status()
        if name == "AsSystemError":
            return self.ze()
        if name == "Log":
            return Num("1")
        return super().call(name, args)


class MError(Exception):
    """An ObjectScript error in flight (system error or a thrown exception object)."""

    def __init__(self, name: str, detail: str = "", obj: ExceptionObject | None = None) -> None:
        """``name`` without brackets, e.g. ``UNDEFINED``; ``detail`` the part after ``*``."""
        super().__init__(name)
        self.name = name
        self.detail = detail
        self._obj = obj

    @property
    def exception(self) -> ExceptionObject:
        """The exception object bound by ``catch ex``."""
        if self._obj is None:
            code = str(ERROR_CODES.get(self.name, 0))
            self._obj = ExceptionObject(
                "%Exception.SystemException", f"<{self.name}>", code, "", self.detail
            )
        return self._obj

    def display(self) -> str:
        """Terminal form of an uncaught error."""
        if self._obj is not None and self._obj.class_name != "%Exception.SystemException":
            # ASSUMPTION: an uncaught thrown object shows as <THROW> with its DisplayString.
            return f"<THROW> *{self._obj.display_string()}"
        detail = f" *{self.detail}" if self.detail != "" else ""
        return f"<{self.name}>{detail}"


class Unsupported(MError):
    """A valid construct the simulator does not implement: ``<SYNTAX>`` plus a stderr note."""

    def __init__(self, what: str) -> None:
        """Remember what is missing for the stderr line."""
        super().__init__("SYNTAX")
        self.what = what


def error_from_exception_oref(value: str) -> MError:
    """``THROW value``: the value must be an exception object."""
    if isinstance(value, ORef) and isinstance(value.obj, ExceptionObject):
        obj = value.obj
        if obj.class_name == "%Exception.SystemException":
            return MError(obj.name.strip("<>"), obj.data, obj)
        return MError("THROW", obj.display_string(), obj)
    raise MError("THROW")
