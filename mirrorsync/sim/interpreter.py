"""An ObjectScript evaluator over the tree-sitter-objectscript CST.

Only a subset of the language is implemented; every construct outside it raises
:class:`~mirrorsync.sim.errors.Unsupported` (``<SYNTAX>`` on the terminal plus a note on stderr),
never a silent no-op. Binary operators are evaluated strictly left to right: the grammar nests
operands arbitrarily, so expressions are flattened (outside explicit parentheses) and re-associated.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, cast

import tree_sitter
import tree_sitter_objectscript

from mirrorsync import listcodec
from mirrorsync.sim import functions
from mirrorsync.sim.collation import (
    Num,
    Tree,
    boolean,
    canonical,
    collates_after,
    is_canonical_number,
    to_decimal,
    to_num,
    truth,
)
from mirrorsync.sim.errors import (
    ExceptionObject,
    MError,
    MObject,
    ORef,
    Unsupported,
    error_from_exception_oref,
)

if TYPE_CHECKING:
    from mirrorsync.sim.host import SimHost

Node = tree_sitter.Node

_LANGUAGE = tree_sitter.Language(tree_sitter_objectscript.language_objectscript())
_PARSER = tree_sitter.Parser(_LANGUAGE)


def parse_line(line: str) -> tree_sitter.Tree:
    """Parse one terminal line; a leading space keeps column 0 from being read as a label."""
    return _PARSER.parse((" " + line).encode("utf-8"))


def text(node: Node) -> str:
    """Source text of a node."""
    raw = node.text
    return raw.decode("utf-8") if raw is not None else ""


class QuitLoop(Exception):
    """``QUIT``: leaves the innermost loop, or the command line."""


class ContinueLoop(Exception):
    """``CONTINUE``: next iteration of the innermost loop."""


class HaltSession(Exception):
    """``HALT`` or ``Terminate``: end the process with ``code``."""

    def __init__(self, code: int = 0) -> None:
        """Exit status of the process."""
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Ref:
    """A variable reference: local, global (``^``) or structured system variable (``^$``)."""

    kind: str  # "local" | "global" | "ssvn"
    name: str
    subs: tuple[str, ...] = ()
    env: str | None = None  # extended reference environment, e.g. "^^:ds:IRISSECURITY"

    def with_subs(self, extra: tuple[str, ...]) -> Ref:
        """The same reference with more subscripts."""
        return Ref(self.kind, self.name, self.subs + extra, self.env)


def format_subscript(value: str) -> str:
    """Subscript as ``$NAME``/``$QUERY`` write it: numbers raw, strings quoted, ``$c()`` runs."""
    if is_canonical_number(value):
        return value
    return quote_string(value)


def quote_string(value: str) -> str:
    """A string literal; control characters become ``"a"_$c(1)_"b"`` pieces."""
    pieces: list[str] = []
    run: list[str] = []
    codes: list[int] = []
    for char in value:
        code = ord(char)
        if code < 32 or code == 127:
            if run:
                pieces.append('"' + "".join(run).replace('"', '""') + '"')
                run = []
            codes.append(code)
        else:
            if codes:
                pieces.append("$c(" + ",".join(str(c) for c in codes) + ")")
                codes = []
            run.append(char)
    if run:
        pieces.append('"' + "".join(run).replace('"', '""') + '"')
    if codes:
        pieces.append("$c(" + ",".join(str(c) for c in codes) + ")")
    return "_".join(pieces) if pieces else '""'


def format_ref(ref: Ref) -> str:
    """``$NAME`` text of a reference."""
    prefix = {"local": "", "global": "^", "ssvn": "^$"}[ref.kind]
    env = f'|"{ref.env}"|' if ref.env is not None else ""
    head = f"{prefix}{env}{ref.name}"
    if not ref.subs:
        return head
    return head + "(" + ",".join(format_subscript(s) for s in ref.subs) + ")"


@dataclass
class Output:
    """The principal device: collects text and tracks ``$X``."""

    write_raw: Callable[[str], None]
    x: int = 0
    y: int = 0

    def write(self, value: str) -> None:
        """Write text, updating ``$X``/``$Y``."""
        if not value:
            return
        self.write_raw(value)
        newline = value.rfind("\n")
        if newline >= 0:
            self.y += value.count("\n")
            self.x = len(value) - newline - 1
        else:
            self.x += len(value)

    def newline(self) -> None:
        """``WRITE !``."""
        # ASSUMPTION (facts §4.2 shows no CR): a new line on the piped terminal is a bare LF.
        self.write("\n")
        self.x = 0

    def form_feed(self) -> None:
        """``WRITE #``."""
        self.write_raw("\f")
        self.x = 0
        self.y = 0

    def tab(self, column: int) -> None:
        """``WRITE ?n``."""
        if column > self.x:
            self.write(" " * (column - self.x))


def _args(node: Node | None) -> list[Node | None]:
    """Argument nodes of ``method_args`` / a function node, ``None`` for omitted ones."""
    if node is None:
        return []
    result: list[Node | None] = []
    pending: Node | None = None
    seen_any = False
    for child in node.children:
        kind = child.type
        if kind == ",":
            result.append(pending)
            pending = None
            seen_any = True
        elif kind in ("(", ")"):
            continue
        else:
            pending = child
            seen_any = True
    if seen_any:
        result.append(pending)
    return result


def _arg_expr(node: Node | None) -> Node | None:
    """Unwrap ``method_arg`` to its expression (or ``byref_arg``)."""
    if node is None:
        return None
    if node.type == "method_arg":
        return node.named_children[0] if node.named_children else None
    return node


def _child(node: Node, kind: str) -> Node | None:
    """First child of a type."""
    for child in node.children:
        if child.type == kind:
            return child
    return None


@dataclass
class SessionState:
    """Per-process state that survives from one command line to the next."""

    namespace: str
    roles: tuple[str, ...]
    username: str
    locals: dict[str, Tree] = field(default_factory=dict)
    tlevel: int = 0
    undo: list[tuple[str, tuple[str, ...], str | None]] = field(default_factory=list)
    test: bool = False
    zerror: str = ""
    dirty: bool = False


class Interpreter:
    """Runs parsed command lines against a :class:`SimHost`."""

    def __init__(
        self,
        host: SimHost,
        state: SessionState,
        output: Output,
        warn: Callable[[str], None],
    ) -> None:
        """Bind the host store, the session state, the output device and the stderr warner."""
        self.host = host
        self.state = state
        self.out = output
        self.warn = warn
        self._ref_cache: dict[str, tuple[tree_sitter.Tree, Node]] = {}
        # Derived facts about CST nodes (flattened operands, argument lists), keyed by node id.
        # Only valid while the trees are alive: cleared whenever a tree may have been freed.
        self.memo: dict[tuple[str, int], object] = {}
        from mirrorsync.sim import classes  # local import: classes imports this module

        self.classes = classes

    # -- running lines ------------------------------------------------------------------------

    def run_line(self, line: str) -> None:
        """Parse and execute one terminal line (errors propagate to the caller)."""
        if not line.strip():
            return
        tree = parse_line(line)
        self.memo.clear()
        root = tree.root_node
        if root.has_error:
            functions.check_unknown_functions(line)
            raise MError("SYNTAX")
        if "$$$" in line and self._has_macro(root):
            # INFERRED (facts appendix): the terminal does not run the macro preprocessor.
            raise MError("SYNTAX")
        self.exec_block(root.children)

    def _has_macro(self, node: Node) -> bool:
        """Whether the CST holds a ``$$$macro``."""
        if node.type in ("macro", "macro_constant", "macro_function"):
            return True
        return any(self._has_macro(child) for child in node.children)

    def exec_block(self, statements: list[Node]) -> None:
        """Execute a sequence of ``statement`` nodes (other children are skipped)."""
        for statement in statements:
            if statement.type != "statement":
                if statement.type in ("{", "}", "comment", "line_comment", "block_comment"):
                    continue
                if statement.is_named and statement.type.startswith("command_"):
                    self.exec_command(statement)
                continue
            for command in statement.named_children:
                self.exec_command(command)

    def _postcond_ok(self, command: Node) -> bool:
        """Evaluate a postconditional (``:cond``) if present."""
        post = _child(command, "post_conditional")
        if post is None:
            return True
        expression = post.named_children[-1]
        return truth(self.eval(expression))

    def exec_command(self, command: Node) -> None:
        """Dispatch one command node."""
        kind = command.type
        handler = _COMMANDS.get(kind)
        if handler is None:
            if kind in ("comment", "line_comment", "block_comment", "doc_comment"):
                return
            raise Unsupported(f"command {kind.removeprefix('command_')}: {text(command)[:60]}")
        if not self._postcond_ok(command):
            return
        handler(self, command)

    def statements_of(self, node: Node) -> list[Node]:
        """The ``statement`` children of a command (its block or the rest of the line)."""
        return [child for child in node.children if child.type == "statement"]

    # -- commands -----------------------------------------------------------------------------

    def cmd_set(self, command: Node) -> None:
        """``SET target=value,...`` (also ``SET (a,b)=v``)."""
        for argument in command.children:
            if argument.type != "set_argument":
                continue
            targets = [c for c in argument.children if c.type == "set_target"]
            value_node = argument.named_children[-1]
            # IRIS evaluates the right-hand side before the left-hand subscripts.
            value = self.eval(value_node)
            for target in targets:
                self.assign(target, value)

    def assign(self, target: Node, value: str) -> None:
        """Store ``value`` through a ``set_target`` (or a bare reference node)."""
        inner = target.named_children[0] if target.type == "set_target" else target
        kind = inner.type
        if kind in ("lvn", "gvn", "indirection", "ssvn"):
            self.store(self.eval_ref(inner), value)
            return
        if kind == "system_defined_variable":
            name = text(inner).lower()
            if name in ("$namespace", "$znspace"):
                self.change_namespace(value)
                return
            if name in ("$x",):
                self.out.x = int(to_decimal(value))
                return
            if name in ("$y",):
                self.out.y = int(to_decimal(value))
                return
            raise Unsupported(f"SET {name}")
        if kind == "system_defined_function":
            functions.set_function(self, inner, value)
            return
        raise Unsupported(f"SET target {kind}")

    def cmd_kill(self, command: Node) -> None:
        """``KILL`` (argumentless kills all locals)."""
        targets = [c for c in command.children if c.type == "kill_target"]
        if not targets:
            self.state.locals.clear()
            return
        for target in targets:
            inner = target.named_children[0]
            if inner.type not in ("lvn", "gvn", "indirection"):
                raise Unsupported(f"KILL {text(inner)}")
            self.kill_ref(self.eval_ref(inner))

    def cmd_write(self, command: Node) -> None:
        """``WRITE`` with ``!``, ``#``, ``?n`` and expressions."""
        for argument in command.children:
            if argument.type != "write_argument":
                continue
            inner = argument.named_children[0]
            if inner.type == "write_device_control":
                control = inner.named_children[0]
                if control.type == "write_device_fflf":
                    for char in text(control):
                        if char == "!":
                            self.out.newline()
                        elif char == "#":
                            self.out.form_feed()
                elif control.type == "write_device_tab":
                    self.out.tab(int(to_decimal(self.eval(control.named_children[-1]))))
                else:
                    raise Unsupported(f"WRITE {text(inner)}")
                continue
            if inner.type == "expression":
                self.out.write(self.eval(inner))
                continue
            raise Unsupported(f"WRITE {text(inner)}")

    def cmd_if(self, command: Node) -> None:
        """Block ``IF {} ELSEIF {} ELSE {}`` and old-style ``IF cond cmds``."""
        old_style = _child(command, "keyword_old_if") is not None
        conditions = [c for c in command.children if c.type == "expression"]
        if old_style and not conditions:
            # Argumentless IF: run the rest of the line if $TEST is true.
            if self.state.test:
                self.exec_block(self.statements_of(command))
            return
        result = all(truth(self.eval(c)) for c in conditions)
        if old_style:
            self.state.test = result
            if result:
                self.exec_block(self.statements_of(command))
            return
        if result:
            self.exec_block(self.statements_of(command))
            return
        for block in command.children:
            if block.type == "elseif_block":
                conds = [c for c in block.children if c.type == "expression"]
                if all(truth(self.eval(c)) for c in conds):
                    self.exec_block(self.statements_of(block))
                    return
            elif block.type == "else_block":
                self.exec_block(self.statements_of(block))
                return

    def cmd_else(self, command: Node) -> None:
        """Old-style ``ELSE``: runs the rest of the line when ``$TEST`` is 0."""
        if not self.state.test:
            self.exec_block(self.statements_of(command))

    def _loop_body(self, body: list[Node]) -> bool:
        """Run a loop body once; return False when QUIT ended the loop."""
        try:
            self.exec_block(body)
        except QuitLoop:
            return False
        except ContinueLoop:
            return True
        return True

    def cmd_for(self, command: Node) -> None:
        """``FOR``: argumentless, ``v=a:b:c``, ``v=a:b``, ``v=x,y,z`` (block or line form)."""
        body = self.statements_of(command)
        parameters = [c for c in command.children if c.type == "for_parameter"]
        if not parameters:
            while self._loop_body(body):
                pass
            return
        for parameter in parameters:
            variable = self.eval_ref(parameter.named_children[0])
            for arg in parameter.children:
                if arg.type != "for_parameter_arg":
                    continue
                exprs = [c for c in arg.children if c.type == "expression"]
                if len(exprs) == 1:
                    self.store(variable, self.eval(exprs[0]))
                    if not self._loop_body(body):
                        return
                    continue
                start = to_num(self.eval(exprs[0]))
                step = to_decimal(self.eval(exprs[1]))
                end = to_decimal(self.eval(exprs[2])) if len(exprs) > 2 else None
                current: str = start
                while True:
                    number = to_decimal(current)
                    if end is not None and (number > end if step >= 0 else number < end):
                        break
                    self.store(variable, current)
                    if not self._loop_body(body):
                        return
                    current = canonical(to_decimal(self.fetch(variable)) + step)

    def cmd_while(self, command: Node) -> None:
        """``WHILE cond {}``."""
        conditions = [c for c in command.children if c.type == "expression"]
        body = self.statements_of(command)
        while all(truth(self.eval(c)) for c in conditions):
            if not self._loop_body(body):
                return

    def cmd_dowhile(self, command: Node) -> None:
        """``DO {} WHILE cond``."""
        conditions = [c for c in command.children if c.type == "expression"]
        body = self.statements_of(command)
        while True:
            if not self._loop_body(body):
                return
            if not all(truth(self.eval(c)) for c in conditions):
                return

    def cmd_quit(self, command: Node) -> None:
        """``QUIT`` leaves the innermost loop (or ends the line at the prompt)."""
        for child in command.children:
            if child.type == "expression":
                self.eval(child)
        raise QuitLoop

    def cmd_continue(self, command: Node) -> None:
        """``CONTINUE``."""
        raise ContinueLoop

    def cmd_do(self, command: Node) -> None:
        """``DO`` of class methods, ``$SYSTEM`` calls and instance methods."""
        parameters = [c for c in command.children if c.type == "do_parameter"]
        if not parameters:
            raise Unsupported("argumentless DO")
        for parameter in parameters:
            post = _child(parameter, "post_conditional")
            if post is not None and not truth(self.eval(post.named_children[-1])):
                continue
            inner = [c for c in parameter.named_children if c.type != "post_conditional"]
            first = inner[0]
            if first.type in ("class_method_call", "system_defined_function"):
                self.eval_primary(first)
            elif first.type == "lvn" and len(inner) > 1 and inner[1].type == "oref_method":
                obj = self.eval_primary(first)
                self.call_object_method(obj, inner[1])
            elif first.type == "oref_chain_expr":
                self.eval_primary(first)
            else:
                raise Unsupported(f"DO {text(parameter)[:60]}")

    def cmd_halt(self, command: Node) -> None:
        """``HALT``/``H`` ends the session; ``HANG n``/``H n`` sleeps."""
        expressions = [c for c in command.children if c.type == "expression"]
        keyword = command.children[0].type
        if keyword == "keyword_hang" or expressions:
            seconds = float(to_decimal(self.eval(expressions[0]))) if expressions else 0.0
            time.sleep(max(0.0, min(seconds, 60.0)))
            return
        raise HaltSession(0)

    def cmd_tstart(self, command: Node) -> None:
        """``TSTART``."""
        self.state.tlevel += 1

    def cmd_tcommit(self, command: Node) -> None:
        """``TCOMMIT``: an error without an open transaction."""
        if self.state.tlevel == 0:
            raise MError("COMMAND")
        self.state.tlevel -= 1
        if self.state.tlevel == 0:
            self.state.undo.clear()

    def cmd_trollback(self, command: Node) -> None:
        """``TROLLBACK``: undo every global change since the outermost ``TSTART``."""
        if any(c.type == "expression" for c in command.children):
            raise Unsupported("TROLLBACK with an argument")
        self.rollback()

    def rollback(self) -> None:
        """Undo the transaction log and close all transaction levels."""
        store = self.host.store
        for name, subs, old in reversed(self.state.undo):
            tree = store.tree(name, create=True)
            assert tree is not None
            # A kill logged every removed node, so restoring values node by node is exact.
            if old is None:
                tree.unset(subs)
            else:
                tree.set(subs, old)
        self.state.undo.clear()
        self.state.tlevel = 0
        self.state.dirty = True

    def cmd_zn(self, command: Node) -> None:
        """``ZN``/``ZNSPACE``."""
        expressions = [c for c in command.children if c.type == "expression"]
        self.change_namespace(self.eval(expressions[0]))

    def change_namespace(self, name: str) -> None:
        """Switch namespace; unknown -> ``<NAMESPACE>``."""
        for known in self.host.settings.namespaces:
            if known.upper() == name.upper():
                self.state.namespace = known
                return
        raise MError("NAMESPACE", name)

    def cmd_new(self, command: Node) -> None:
        """``NEW``: ``NEW $NAMESPACE`` is accepted; ``NEW x`` kills ``x``."""
        for item in _walk_type(command, "command_new_item"):
            inner = item.named_children[0]
            if inner.type == "system_defined_variable" and text(inner).lower() == "$namespace":
                # ASSUMPTION: at the prompt there is no frame to pop, so the namespace simply
                # stays whatever later commands set; scripts use it inside one line only.
                continue
            if inner.type == "lvn":
                # ASSUMPTION: at the prompt NEW behaves like KILL (no stack frame is pushed).
                self.state.locals.pop(text(inner.named_children[0]), None)
                continue
            raise Unsupported(f"NEW {text(inner)}")

    def cmd_try(self, command: Node) -> None:
        """``TRY {} CATCH ex {}``."""
        body = self.statements_of(command)
        catch = _child(command, "catch_block")
        try:
            self.exec_block(body)
        except MError as error:
            if isinstance(error, Unsupported):
                self.warn(f"unsupported: {error.what}")
            if catch is None:
                return
            exception = error.exception
            if exception.class_name == "%Exception.SystemException":
                self.state.zerror = exception.ze()
            variable = _child(catch, "lvn")
            if variable is not None:
                self.store(self.eval_ref(variable), ORef(exception))
            self.exec_block(self.statements_of(catch))

    def cmd_throw(self, command: Node) -> None:
        """``THROW oref``."""
        expressions = [c for c in command.children if c.type == "expression"]
        if not expressions:
            raise Unsupported("argumentless THROW")
        raise error_from_exception_oref(self.eval(expressions[0]))

    def cmd_merge(self, command: Node) -> None:
        """``MERGE target=source``: copy a subtree."""
        for argument in command.children:
            if argument.type != "merge_argument":
                continue
            target = self.eval_ref(argument.named_children[0].named_children[0])
            source_node = argument.named_children[-1]
            source = self.eval_ref(_unwrap_expression(source_node))
            nodes = list(self.iter_nodes(source))
            for subs, value in nodes:
                self.store(target.with_subs(subs[len(source.subs) :]), value)

    def cmd_xecute(self, command: Node) -> None:
        """``XECUTE code`` (postconditional arguments ``code:cond`` are not supported)."""
        for argument in command.children:
            if argument.type != "xecute_argument":
                continue
            expressions = [c for c in argument.children if c.type == "expression"]
            if len(expressions) != 1:
                raise Unsupported("XECUTE with an argument postconditional")
            self.run_line(self.eval(expressions[0]))

    def cmd_lock(self, command: Node) -> None:
        """``LOCK``: accepted and ignored.

        ASSUMPTION: scripts lock only to serialise against other IRIS processes; every simulator
        line already runs under the host's exclusive file lock.
        """

    def cmd_zwrite(self, command: Node) -> None:
        """``ZWRITE ref``: one ``name(subs)=value`` line per node."""
        expressions = [c for c in command.children if c.type == "expression"]
        if not expressions:
            for name in sorted(self.state.locals):
                self._zwrite_ref(Ref("local", name))
            return
        for expression in expressions:
            self._zwrite_ref(self.eval_ref(_unwrap_expression(expression)))

    def _zwrite_ref(self, ref: Ref) -> None:
        """Write the nodes of one reference in ZWRITE format."""
        for subs, value in self.iter_nodes(ref):
            line = format_ref(Ref(ref.kind, ref.name, subs, ref.env)) + "=" + zwrite_value(value)
            if self.out.x:
                self.out.newline()
            self.out.write(line)
            self.out.newline()

    # -- references -----------------------------------------------------------------------------

    def eval_ref(self, node: Node) -> Ref:
        """Resolve a reference node (lvn, gvn, ssvn, indirection, expression wrapping one)."""
        kind = node.type
        if kind == "expression":
            return self.eval_ref(_unwrap_expression(node))
        if kind == "lvn":
            name = text(node.named_children[0])
            return Ref("local", name, self.eval_subscripts(_child(node, "method_args")))
        if kind == "gvn":
            identifier = _child(node, "identifier")
            if identifier is None:
                raise Unsupported(f"naked or odd global reference {text(node)}")
            env: str | None = None
            env_node = _child(node, "expression")
            if env_node is not None:
                env = self.eval(env_node)
            subs = self.eval_subscripts(_child(node, "method_args"))
            return Ref("global", text(identifier), subs, env)
        if kind == "ssvn":
            name = text(node.named_children[0]).upper()
            return Ref("ssvn", name, self.eval_subscripts(_child(node, "method_args")))
        if kind == "indirection":
            parts = [c for c in node.children if c.type == "expression"]
            base = self.ref_from_string(self.eval(parts[0]))
            extra = _child(node, "method_args")
            if extra is not None:
                return base.with_subs(self.eval_subscripts(extra))
            return base
        raise MError("SYNTAX")

    def eval_subscripts(self, node: Node | None) -> tuple[str, ...]:
        """Evaluate subscript expressions."""
        if node is None:
            return ()
        subs: list[str] = []
        for arg in self.arg_nodes(node):
            expression = _arg_expr(arg)
            if expression is None:
                raise MError("SYNTAX")
            subs.append(str(self.eval(expression)))
        return tuple(subs)

    def arg_nodes(self, node: Node) -> list[Node | None]:
        """Memoised :func:`_args`."""
        key = ("args", node.id)
        cached = self.memo.get(key)
        if cached is None:
            self.memo[key] = cached = _args(node)
        return cast("list[Node | None]", cached)

    def ref_from_string(self, value: str) -> Ref:
        """Name indirection: parse a string such as ``^G("a",1)`` into a reference."""
        cached = self._ref_cache.get(value)
        if cached is None:
            tree = _PARSER.parse((" set %=" + value).encode("utf-8"))
            if tree.root_node.has_error:
                raise MError("SYNTAX")
            nodes = list(_walk_type(tree.root_node, "set_argument"))
            if len(nodes) != 1:
                raise MError("SYNTAX")
            expression = nodes[0].named_children[-1]
            inner = _unwrap_expression(expression)
            if inner.type not in ("lvn", "gvn", "ssvn", "indirection"):
                raise MError("SYNTAX")
            cached = (tree, inner)
            if len(self._ref_cache) > 4096:
                self._ref_cache.clear()
                self.memo.clear()
            self._ref_cache[value] = cached
        return self.eval_ref(cached[1])

    def _check_subs(self, ref: Ref, allow_last_empty: bool = False) -> None:
        """``""`` is not a valid subscript (``<SUBSCRIPT>``)."""
        subs = ref.subs[:-1] if allow_last_empty else ref.subs
        if "" in subs:
            raise MError("SUBSCRIPT", format_ref(ref))

    def _check_access(self, ref: Ref) -> None:
        """Direct access to ``^SECURITY`` needs ``%All`` (facts §6.2, checklist 15)."""
        if ref.kind == "global" and ref.name == "SECURITY" and "%All" not in self.state.roles:
            # INFERRED (facts §3): the refusal is a <PROTECT> error naming the global.
            raise MError("PROTECT", "^SECURITY,/usr/irissys/mgr/irissecurity/")

    def _tree(self, ref: Ref, create: bool = False) -> Tree | None:
        """The tree holding a reference's nodes."""
        if ref.kind == "local":
            found = self.state.locals.get(ref.name)
            if found is None and create:
                found = self.state.locals[ref.name] = Tree()
            return found
        if ref.kind == "global":
            self._check_access(ref)
            # ASSUMPTION: every namespace sees the same globals (the OAuth2 globals live in the
            # IRISSYS/IRISSECURITY databases, visible from %SYS); extended references select no
            # other database.
            return self.host.store.tree(ref.name, create)
        raise Unsupported(f"structured system variable ^${ref.name}")

    def fetch(self, ref: Ref) -> str:
        """Plain read; undefined -> ``<UNDEFINED>``."""
        value = self.get(ref)
        if value is None:
            raise MError("UNDEFINED", format_ref(ref))
        return value

    def get(self, ref: Ref) -> str | None:
        """Value or None."""
        self._check_subs(ref)
        if ref.kind == "ssvn":
            return self._ssvn_get(ref)
        tree = self._tree(ref)
        if tree is None:
            return None
        value = tree.get(ref.subs)
        if value is not None and ref.kind == "global" and is_canonical_number(value):
            return Num(value)
        return value

    def store(self, ref: Ref, value: str) -> None:
        """Set a node; global sets are logged for TROLLBACK."""
        self._check_subs(ref)
        if ref.kind == "ssvn":
            raise MError("SYNTAX")
        tree = self._tree(ref, create=True)
        assert tree is not None
        if ref.kind == "global":
            if isinstance(value, ORef):
                value = str.__str__(value)
            plain = str.__str__(value)
            if self.state.tlevel:
                self.state.undo.append((ref.name, ref.subs, tree.get(ref.subs)))
            tree.set(ref.subs, plain)
            self.state.dirty = True
            return
        tree.set(ref.subs, value)

    def kill_ref(self, ref: Ref) -> None:
        """Kill a node and its descendants."""
        self._check_subs(ref)
        tree = self._tree(ref)
        if tree is None:
            return
        removed = tree.kill(ref.subs)
        if ref.kind == "global" and removed:
            if self.state.tlevel:
                self.state.undo.extend((ref.name, subs, value) for subs, value in removed)
            self.state.dirty = True

    def data(self, ref: Ref) -> int:
        """``$DATA``."""
        self._check_subs(ref)
        if ref.kind == "ssvn":
            return self._ssvn_data(ref)
        tree = self._tree(ref)
        return 0 if tree is None else tree.data(ref.subs)

    def iter_nodes(self, ref: Ref) -> Iterator[tuple[tuple[str, ...], str]]:
        """Nodes at and under a reference."""
        tree = self._tree(ref)
        if tree is not None:
            yield from list(tree.items(ref.subs))

    def order(self, ref: Ref, forward: bool) -> str:
        """``$ORDER``."""
        if not ref.subs:
            raise MError("SYNTAX")
        self._check_subs(ref, allow_last_empty=True)
        if ref.kind == "ssvn":
            return self._ssvn_order(ref, forward)
        tree = self._tree(ref)
        if tree is None:
            return ""
        return tree.order(ref.subs, forward)

    def query(self, ref: Ref, forward: bool) -> str:
        """``$QUERY``: the next node's reference text, ``""`` at the end."""
        self._check_subs(ref, allow_last_empty=True)
        subs = ref.subs
        if subs and subs[-1] == "":
            subs = subs[:-1]
            if not forward:
                raise Unsupported("$QUERY backwards from an empty subscript")
        tree = self._tree(ref)
        if tree is None:
            return ""
        if ref.subs and ref.subs[-1] == "":
            # Next node after everything under the parent: start from the parent itself.
            found = tree.query(subs, forward)
        else:
            found = tree.query(subs, forward)
        if found is None or (not forward and found == ()):
            return ""
        return format_ref(Ref(ref.kind, ref.name, found, ref.env))

    # ^$GLOBAL: subscripts are global names with the caret.
    def _ssvn_names(self, ref: Ref) -> list[str]:
        """Existing global names for ``^$GLOBAL``."""
        if ref.name not in ("GLOBAL", "G"):
            raise Unsupported(f"^${ref.name}")
        self.host.store.drop_empty()
        return sorted("^" + name for name in self.host.store.trees)

    def _ssvn_order(self, ref: Ref, forward: bool) -> str:
        """``$ORDER(^$GLOBAL(name))``."""
        if len(ref.subs) != 1:
            raise Unsupported("^$GLOBAL with several subscripts")
        names = self._ssvn_names(ref)
        current = ref.subs[0]
        if current and not current.startswith("^"):
            current = "^" + current
        candidates = (
            [n for n in names if current == "" or n > current]
            if forward
            else [n for n in names if current == "" or n < current]
        )
        if not candidates:
            return ""
        return candidates[0] if forward else candidates[-1]

    def _ssvn_data(self, ref: Ref) -> int:
        """``$DATA(^$GLOBAL(name))``: 10 when the global exists."""
        if not ref.subs:
            return 10
        name = ref.subs[0].removeprefix("^")
        tree = self.host.store.tree(name)
        return 10 if tree is not None and len(tree) else 0

    def _ssvn_get(self, ref: Ref) -> str | None:
        """``^$GLOBAL`` nodes have no value."""
        self._ssvn_names(ref)
        return None

    # -- expressions ------------------------------------------------------------------------------

    def eval(self, node: Node) -> str:
        """Evaluate an expression node strictly left to right."""
        if node.type != "expression":
            return self.eval_primary(node)
        key = ("flat", node.id)
        cached = self.memo.get(key)
        if cached is None:
            flat: list[tuple[str, Node, tuple[str, ...]]] = []
            _flatten(node, flat, ())
            self.memo[key] = cached = flat
        items = cast("list[tuple[str, Node, tuple[str, ...]]]", cached)
        value = self._operand(items[0])
        index = 1
        count = len(items)
        while index < count:
            kind, op_node, _ = items[index]
            if kind == "pattern":
                value = functions.pattern_match(self, value, op_node)
                index += 1
                continue
            operator = text(op_node).strip()
            right_item = items[index + 1]
            if operator == "&&":
                value = boolean(truth(value) and truth(self._operand(right_item)))
            elif operator == "||":
                value = boolean(truth(value) or truth(self._operand(right_item)))
            else:
                value = binary(operator, value, self._operand(right_item))
            index += 2
        return value

    def _operand(self, item: tuple[str, Node, tuple[str, ...]]) -> str:
        """Evaluate one flattened operand and apply its unary prefixes (innermost first)."""
        kind, node, prefixes = item
        value = self.eval(node) if kind == "group" else self.eval_primary(node)
        for operator in reversed(prefixes):
            if operator == "-":
                value = canonical(-to_decimal(value))
            elif operator == "+":
                value = to_num(value)
            elif operator == "'":
                value = boolean(not truth(value))
            else:
                raise Unsupported(f"unary operator {operator}")
        return value

    def eval_primary(self, node: Node) -> str:  # noqa: PLR0911 - one return per case reads like the IRIS reference table
        """Evaluate an atom."""
        kind = node.type
        if kind == "string_literal":
            raw = text(node)
            return raw[1:-1].replace('""', '"')
        if kind == "numeric_literal":
            return to_num(text(node))
        if kind in ("lvn", "gvn", "ssvn", "indirection"):
            return self.fetch(self.eval_ref(node))
        if kind == "expression":
            return self.eval(node)
        if kind == "system_defined_variable":
            return self.special_variable(text(node))
        if kind == "system_defined_function":
            if _child(node, "class_name") is not None:
                return self.classes.call_system(self, node)
            return functions.call_function(self, node)
        if kind == "class_method_call":
            return self.classes.call_class_method(self, node)
        if kind == "oref_chain_expr":
            return self.eval_oref_chain(node)
        if kind in ("macro", "macro_constant", "macro_function"):
            raise MError("SYNTAX")
        if kind == "extrinsic_function":
            raise Unsupported(f"extrinsic function {text(node)[:40]}")
        raise Unsupported(f"expression {kind}: {text(node)[:40]}")

    def eval_oref_chain(self, node: Node) -> str:
        """``obj.Prop``, ``obj.Method(args)``, chained."""
        children = node.named_children
        value = self.eval_primary(children[0])
        for segment in children[1:]:
            if segment.type != "oref_chain_segment":
                raise Unsupported(f"object syntax {text(node)[:40]}")
            member = segment.named_children[0]
            if member.type == "oref_property":
                value = self.object_of(value).get_property(text(member.named_children[0]))
            elif member.type == "oref_method":
                value = self.call_object_method(value, member)
            else:
                raise Unsupported(f"object syntax {text(node)[:40]}")
        return value

    def object_of(self, value: str) -> MObject:
        """The object behind an oref; anything else -> ``<INVALID OREF>``."""
        if isinstance(value, ORef):
            return value.obj
        raise MError("INVALID OREF")

    def call_object_method(self, value: str, method: Node) -> str:
        """Call ``method`` (an ``oref_method`` node) on the object ``value``."""
        name = text(method.named_children[0])
        args = self.eval_args(_child(method, "method_args"))
        return self.object_of(value).call(name, args)

    def eval_args(self, node: Node | None) -> list[str | None]:
        """Evaluate call arguments; omitted ones are None; by-reference ones pass their value."""
        values: list[str | None] = []
        for arg in _args(node):
            expression = _arg_expr(arg)
            if expression is None:
                values.append(None)
            elif expression.type == "byref_arg":
                ref = self.eval_ref(expression.named_children[-1])
                values.append(ByRef(ref))
            else:
                values.append(self.eval(expression))
        return values

    def special_variable(self, name: str) -> str:
        """``$ZV``, ``$H``, ``$NAMESPACE`` ..."""
        key = name.lower()
        handler = _SPECIAL.get(key)
        if handler is None:
            if key in _KNOWN_SPECIAL:
                raise Unsupported(f"special variable {name}")
            raise MError("SYNTAX")
        return handler(self)


class ByRef(str):
    """An argument passed as ``.var``: the callee may store results through ``ref``."""

    __slots__ = ("ref",)
    ref: Ref

    def __new__(cls, ref: Ref) -> ByRef:
        """Empty string value carrying the reference."""
        self = super().__new__(cls, "")
        self.ref = ref
        return self


def _walk_type(node: Node, kind: str) -> Iterator[Node]:
    """All descendants of a type (pre-order)."""
    if node.type == kind:
        yield node
    for child in node.children:
        yield from _walk_type(child, kind)


def _unwrap_expression(node: Node) -> Node:
    """Strip ``expression`` wrappers that hold a single atom."""
    while node.type == "expression" and len(node.named_children) == 1 and node.child_count == 1:
        node = node.named_children[0]
    return node


def _flatten(
    node: Node, items: list[tuple[str, Node, tuple[str, ...]]], prefix: tuple[str, ...]
) -> None:
    """Flatten an expression into operands and operators outside explicit parentheses.

    ``prefix`` holds unary operators that apply to the first operand only (ObjectScript unary
    operators bind to the operand right after them).
    """
    children = node.children
    index = 0
    first = True
    count = len(children)
    while index < count:
        child = children[index]
        kind = child.type
        pending = prefix if first else ()
        if kind == "(":
            items.append(("group", children[index + 1], pending))
            index += 3
            first = False
            continue
        if kind == "expression":
            _flatten(child, items, pending)
        elif kind == "binary_operator":
            items.append(("op", child, ()))
        elif kind == "pattern_operator":
            items.append(("pattern", child, ()))
        elif kind == "unary_expression":
            operator = text(child.children[0])
            _flatten(child.children[1], items, (*pending, operator))
        else:
            items.append(("atom", child, pending))
        if kind not in ("binary_operator", "pattern_operator"):
            first = False
        index += 1


def binary(operator: str, left: str, right: str) -> str:  # noqa: PLR0911, PLR0912 - one return per case reads like the IRIS reference table
    """Apply a binary operator to two values."""
    if operator == "_":
        return str.__str__(left) + str.__str__(right)
    if operator == "=":
        return boolean(str.__str__(left) == str.__str__(right))
    if operator == "'=":
        return boolean(str.__str__(left) != str.__str__(right))
    if operator in ("+", "-", "*", "/", "\\", "#", "**"):
        return arithmetic(operator, to_decimal(left), to_decimal(right))
    if operator == "<":
        return boolean(to_decimal(left) < to_decimal(right))
    if operator == ">":
        return boolean(to_decimal(left) > to_decimal(right))
    if operator in ("'<", ">="):
        return boolean(to_decimal(left) >= to_decimal(right))
    if operator in ("'>", "<="):
        return boolean(to_decimal(left) <= to_decimal(right))
    if operator in ("&",):
        return boolean(truth(left) and truth(right))
    if operator in ("!",):
        return boolean(truth(left) or truth(right))
    if operator in ("'&",):
        return boolean(not (truth(left) and truth(right)))
    if operator in ("'!",):
        return boolean(not (truth(left) or truth(right)))
    if operator == "[":
        return boolean(right in left)
    if operator == "'[":
        return boolean(right not in left)
    if operator == "]":
        return boolean(left > right)
    if operator == "']":
        return boolean(not left > right)
    if operator == "]]":
        return boolean(collates_after(left, right))
    if operator == "']]":
        return boolean(not collates_after(left, right))
    raise Unsupported(f"operator {operator}")


def arithmetic(operator: str, left: Decimal, right: Decimal) -> str:  # noqa: PLR0911 - one return per case reads like the IRIS reference table
    """Decimal arithmetic, ObjectScript rules: ``\\`` truncates, ``#`` has the divisor's sign."""
    try:
        if operator == "+":
            return canonical(left + right)
        if operator == "-":
            return canonical(left - right)
        if operator == "*":
            return canonical(left * right)
        if right == 0 and operator in ("/", "\\", "#"):
            raise MError("DIVIDE")
        if operator == "/":
            return canonical(left / right)
        if operator == "\\":
            return canonical((left / right).to_integral_value(rounding="ROUND_DOWN"))
        if operator == "#":
            remainder = left % right  # sign of the dividend in Python's Decimal
            if remainder != 0 and (remainder < 0) != (right < 0):
                remainder += right
            return canonical(remainder)
        if operator == "**":
            if right == right.to_integral_value():
                return canonical(left ** int(right))
            return canonical(Decimal(float(left) ** float(right)))
    except (InvalidOperation, OverflowError, ZeroDivisionError) as exc:
        if isinstance(exc, ZeroDivisionError):
            raise MError("DIVIDE") from exc
        raise MError("ILLEGAL VALUE") from exc
    raise Unsupported(f"operator {operator}")


def zwrite_value(value: str) -> str:
    """ZWRITE form of a value: numbers raw, ``$lb(...)`` for lists, else a quoted string."""
    if is_canonical_number(value):
        return value
    if value and any(ord(c) < 32 for c in value) and listcodec.is_valid(value):
        try:
            items = listcodec.decode(value)
        except listcodec.ListFormatError:
            return quote_string(value)
        parts = []
        for item in items:
            if item is None:
                parts.append("")
            elif isinstance(item, str):
                parts.append(
                    zwrite_value(item) if listcodec.is_valid(item) and item else quote_string(item)
                )
            else:
                parts.append(str(canonical(Decimal(str(item)))))
        return "$lb(" + ",".join(parts) + ")"
    return quote_string(value)


def _horolog(now: datetime) -> str:
    """``$HOROLOG`` of a local datetime: days since 1840-12-31, seconds since midnight."""
    days = (now.date() - datetime(1840, 12, 31).date()).days
    seconds = now.hour * 3600 + now.minute * 60 + now.second
    return f"{days},{seconds}"


def _ztimestamp(now: datetime) -> str:
    """``$ZTIMESTAMP``: UTC horolog with fractional seconds."""
    days = (now.date() - datetime(1840, 12, 31).date()).days
    seconds = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    return f"{days},{canonical(Decimal(f'{seconds:.3f}'))}"


_SPECIAL: dict[str, Callable[[Interpreter], str]] = {}
for _names, _func in (
    (("$zv", "$zversion"), lambda i: i.host.settings.zv),
    (("$h", "$horolog"), lambda i: _horolog(datetime.now())),
    (("$zts", "$ztimestamp"), lambda i: _ztimestamp(datetime.now(UTC))),
    (("$namespace", "$znspace"), lambda i: i.state.namespace),
    (("$tlevel", "$tl"), lambda i: Num(str(i.state.tlevel))),
    (("$j", "$job"), lambda i: Num(str(os.getpid()))),
    (("$t", "$test"), lambda i: boolean(i.state.test)),
    (("$ze", "$zerror"), lambda i: i.state.zerror),
    (("$x",), lambda i: Num(str(i.out.x))),
    (("$y",), lambda i: Num(str(i.out.y))),
    (("$io", "$i", "$principal", "$p"), lambda i: "/dev/pts/0"),
    (("$username",), lambda i: i.state.username),
    (("$roles",), lambda i: ",".join(i.state.roles)),
    (("$zh", "$zhorolog"), lambda i: canonical(Decimal(f"{time.monotonic():.6f}"))),
    (("$ecode", "$ec"), lambda i: ""),
    (("$stack", "$st"), lambda i: Num("0")),
    (("$zname", "$zn"), lambda i: ""),
):
    for _name in _names:
        _SPECIAL[_name] = _func

_KNOWN_SPECIAL = {
    "$device",
    "$d",
    "$estack",
    "$es",
    "$etrap",
    "$et",
    "$key",
    "$k",
    "$quit",
    "$q",
    "$storage",
    "$s",
    "$system",
    "$sy",
    "$zchild",
    "$zc",
    "$zeof",
    "$zio",
    "$zjob",
    "$zj",
    "$zmode",
    "$zparent",
    "$zpi",
    "$zpos",
    "$zreference",
    "$zr",
    "$zstorage",
    "$zs",
    "$ztimezone",
    "$ztz",
    "$ztrap",
    "$zt",
    "$zhorolog",
    "$zpid",
    "$zb",
    "$za",
}

_COMMANDS: dict[str, Callable[[Interpreter, Node], None]] = {
    "command_set": Interpreter.cmd_set,
    "command_kill": Interpreter.cmd_kill,
    "command_write": Interpreter.cmd_write,
    "command_if": Interpreter.cmd_if,
    "command_else": Interpreter.cmd_else,
    "command_for": Interpreter.cmd_for,
    "command_while": Interpreter.cmd_while,
    "command_dowhile": Interpreter.cmd_dowhile,
    "command_quit": Interpreter.cmd_quit,
    "command_continue": Interpreter.cmd_continue,
    "command_do": Interpreter.cmd_do,
    "command_halt_or_hang": Interpreter.cmd_halt,
    "command_halt": Interpreter.cmd_halt,
    "command_hang": Interpreter.cmd_halt,
    "command_tstart": Interpreter.cmd_tstart,
    "command_tcommit": Interpreter.cmd_tcommit,
    "command_trollback": Interpreter.cmd_trollback,
    "command_zn": Interpreter.cmd_zn,
    "command_znspace": Interpreter.cmd_zn,
    "command_new": Interpreter.cmd_new,
    "command_trycatch": Interpreter.cmd_try,
    "command_throw": Interpreter.cmd_throw,
    "command_merge": Interpreter.cmd_merge,
    "command_xecute": Interpreter.cmd_xecute,
    "command_lock": Interpreter.cmd_lock,
    "command_zwrite": Interpreter.cmd_zwrite,
}

__all__ = [
    "ByRef",
    "ExceptionObject",
    "HaltSession",
    "Interpreter",
    "MError",
    "Output",
    "QuitLoop",
    "Ref",
    "SessionState",
    "Unsupported",
    "format_ref",
    "parse_line",
    "quote_string",
]
