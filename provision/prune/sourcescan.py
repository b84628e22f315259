"""What one Python source imports, found with :mod:`ast` or read from its text — never by running it.

Covered: ``import a.b`` and ``from a import b`` anywhere (module level, inside functions, in
``try/except ImportError`` blocks, under ``if TYPE_CHECKING:``), ``importlib.import_module("x")``,
``__import__("x")``, ``pydoc.locate("x.Y")``, availability probes (``importlib.util.find_spec("x")``,
``importlib.metadata.version("dist")``), package data read by module name (``importlib.resources.files("x")``
and the rest of that API, ``pkgutil.get_data("x", ...)``, ``pkg_resources.resource_*("x", ...)``). An
import whose name is computed at run time is recorded as dynamic; one built from a literal prefix
(``import_module(f"plugins.{name}")``) counts as a use of that prefix. String literals that look like
names are kept with where they first appear (commands run, dotted module paths a framework imports).

A file with no import call, metadata or resource call — most of a project — has only import
statements to find: :mod:`~provision.prune.lexscan` reads them from the
text, with the same result as the tree and a fifth of the cost, and hands back any file it cannot read
exactly. Everything else is parsed. A file that does not parse (syntax error, bytes that are not text,
null bytes, too deep to parse) is reported and scanned line by line for ``import`` statements
instead, so a dependency it names is never taken for unused; a file the text reading answers is not
checked against the rest of the grammar (a Python 2 file's imports are read, it is not listed).
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Iterator

from provision.prune.lexscan import lex_imports, line_imports
from provision.prune.scanresult import DistributionReference, ImportUse, ScanResult

#: files larger than this are not given to the parser; the line scan still reads them
MAX_PARSE_BYTES = 16 * 1024 * 1024


_IMPORT_CALLS = frozenset({"import_module", "__import__", "find_spec", "find_loader", "get_loader", "locate"})


_METADATA_CALLS = (b"version", b"distribution", b"metadata", b"requires", b"files")


#: calls whose first argument names a package whose data files they read: owner module → call names
_RESOURCE_CALLS = {
    "resources": frozenset({"files", "as_file", "open_text", "open_binary", "read_text", "read_binary", "path",
                            "contents", "is_resource"}),
    "pkgutil": frozenset({"get_data"}),
    "pkg_resources": frozenset({"resource_filename", "resource_string", "resource_stream", "resource_exists",
                                "resource_listdir", "resource_isdir"}),
}  # fmt: skip


#: substrings that make a file worth a full expression walk (import, metadata and resource calls)
_CALL_TRIGGERS = (b"import_module", b"__import__", b"find_spec", b"find_loader", b"get_loader", b"metadata",
                  b"resource", b"pkgutil", b"pydoc")  # fmt: skip


_TRIGGER = re.compile(b"|".join(re.escape(t) for t in _CALL_TRIGGERS))


#: fields that hold nested statements (functions, classes, if/for/while/with/try, except, match)
_BODY_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


_QUOTED_WORD = re.compile(rb"""["']([A-Za-z_][\w.+-]{0,60})(?=["'\s])""")


def _literal(node: ast.AST) -> tuple[str | None, str | None]:
    """(full literal, literal prefix) of an import-name argument."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, None
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return None, head.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        full, prefix = _literal(node.left)
        return None, full if full is not None else prefix
    return None, None


def _strings(node: ast.AST | None) -> list[str] | None:
    """The strings of a literal ``"x"`` / ``("a", "b")`` / ``["a"]`` / ``{"a"}``; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        out = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return out if len(out) == len(node.elts) else None
    return None


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def scope_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope (module or function): nested function bodies are their own scopes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _FUNCTIONS):
            stack.extend(ast.iter_child_nodes(node))


def literal_bindings(scope: ast.AST, outer: dict[str, list[str] | None] | None = None) -> dict[str, list[str] | None]:
    """Names of one scope bound only to literal strings: ``MODS = ("a", "b")`` then ``for m in MODS``.
    A name bound in that scope to anything else (a parameter, a call result) maps to None; names
    not bound here come from ``outer`` (the module's bindings)."""
    bindings: dict[str, list[str] | None] = {}
    if isinstance(scope, _FUNCTIONS):
        a = scope.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *([a.vararg] if a.vararg else []),
                    *([a.kwarg] if a.kwarg else [])]:  # fmt: skip
            bindings[arg.arg] = None

    def bind(name: str, values: list[str] | None) -> None:
        if name in bindings and (bindings[name] is None or values is None):
            bindings[name] = None
        else:
            bindings[name] = [*(bindings.get(name) or []), *values] if values is not None else None

    loops: list[tuple[str, ast.AST]] = []
    direct: set[int] = set()  # Name nodes that are the whole target of an assignment or loop
    nodes = list(scope_nodes(scope))
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    direct.add(id(target))
                    bind(target.id, _strings(node.value))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            direct.add(id(node.target))
            bind(node.target.id, _strings(node.value) if node.value is not None else [])
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension) and isinstance(node.target, ast.Name):
            direct.add(id(node.target))
            loops.append((node.target.id, node.iter))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and node.func.attr in ("append", "extend", "insert", "add", "update"):
                bind(owner.id, None)  # mutated at run time: no longer a known literal
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and id(node) not in direct:
            bind(node.id, None)  # unpacking, with ... as, except ... as, walrus, augmented assignment
    for name, it in loops:
        values = _strings(it)
        if values is None and isinstance(it, ast.Name):
            values = bindings.get(it.id) if it.id in bindings else (outer or {}).get(it.id)
        bind(name, values)
    return {**(outer or {}), **bindings}


def _call_name(func: ast.AST) -> tuple[str, str]:
    """(called name, dotted owner) of ``importlib.util.find_spec`` → ("find_spec", "importlib.util")."""
    if isinstance(func, ast.Name):
        return func.id, ""
    if isinstance(func, ast.Attribute):
        parts: list[str] = []
        node: ast.AST = func.value
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
        return func.attr, ".".join(reversed(parts))
    return "", ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
    return name == "TYPE_CHECKING"


def scan_source(data: bytes, rel: str, result: ScanResult) -> None:
    """Add what one file imports to ``result``, in line order (a file's first use comes first)."""
    start_imports, start_refs = len(result.imports), len(result.dist_references)
    _scan_source(data, rel, result)
    result.imports[start_imports:] = sorted(result.imports[start_imports:], key=lambda u: u.line)
    result.dist_references[start_refs:] = sorted(result.dist_references[start_refs:], key=lambda r: r.line)


def _scan_source(data: bytes, rel: str, result: ScanResult) -> None:
    if len(data) <= MAX_PARSE_BYTES and not needs_tree(data):
        # no import, metadata or resource call: the import statements are all there is to find,
        # and reading them from the text gives what the tree would (provision.prune.lexscan)
        found = lex_imports(data)
        if found is not None:
            result.imports += [ImportUse(module, rel, line, kind) for module, line, kind in found]
            _scan_strings(data, rel, result)
            return
    scan_parsed(data, rel, result, _trigger_lines(data))


def scan_parsed(data: bytes, rel: str, result: ScanResult, trigger_lines: list[int] | None) -> None:
    """The scan through the syntax tree (``trigger_lines``: :func:`_trigger_lines` of ``data``)."""
    try:
        if len(data) > MAX_PARSE_BYTES:
            raise ValueError(f"larger than {MAX_PARSE_BYTES // (1024 * 1024)} MiB")
        tree = ast.parse(data, filename=rel)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError, OverflowError) as exc:
        why = exc.msg if isinstance(exc, SyntaxError) and exc.msg else type(exc).__name__
        if isinstance(exc, ValueError) and str(exc):
            why = str(exc)
        line = getattr(exc, "lineno", None)
        result.unparsed.append((rel, f"{why} (line {line})" if line else why))
        result.imports += [ImportUse(module, rel, line, kind) for module, line, kind in line_imports(data)]
        return
    _scan_strings(data, rel, result)
    # one depth-first pass; each node carries its enclosing function (scope), whether it sits under
    # `if TYPE_CHECKING:`, and whether its expressions are walked. Import statements are statements,
    # so only statement bodies are walked (expressions are most of a tree), except in a statement
    # whose lines hold the name of an import/metadata/resource call (the trigger lines); a file that
    # binds such a function to a bare name (`from pydoc import locate`) has every expression walked.
    walk_all = trigger_lines is None
    import_calls: list[tuple[ast.Call, ast.AST]] = []
    stack: list[tuple[ast.AST, ast.AST, bool, bool]] = [(tree, tree, False, walk_all)]
    while stack:
        node, scope, typing_only, expressions = stack.pop()
        if trigger_lines and isinstance(node, ast.stmt):
            first = bisect.bisect_left(trigger_lines, node.lineno)
            expressions = first < len(trigger_lines) and trigger_lines[first] <= (node.end_lineno or node.lineno)
        if isinstance(node, ast.Import):
            kind = "type-checking" if typing_only else "import"
            for alias in node.names:
                result.imports.append(ImportUse(alias.name, rel, node.lineno, kind))
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                continue  # relative: the project's own code
            kind = "type-checking" if typing_only else "from"
            for alias in node.names:
                name = node.module if alias.name == "*" else f"{node.module}.{alias.name}"
                result.imports.append(ImportUse(name, rel, node.lineno, kind))
            continue
        if isinstance(node, ast.Call):
            if _is_import_call(node, data):
                import_calls.append((node, scope))
            elif not _scan_resource_call(node, rel, result, data):
                _scan_metadata_call(node, rel, result)
        elif isinstance(node, ast.Constant):
            continue
        elif isinstance(node, _FUNCTIONS):
            scope = node
        if isinstance(node, ast.If) and _is_type_checking(node):
            if expressions:
                stack.append((node.test, scope, typing_only, True))
            stack.extend((child, scope, True, expressions) for child in node.body)
            stack.extend((child, scope, typing_only, expressions) for child in node.orelse)
        elif expressions:
            stack.extend((child, scope, typing_only, True) for child in ast.iter_child_nodes(node))
        else:
            for fieldname in _BODY_FIELDS:
                children = getattr(node, fieldname, None)
                if children:
                    stack.extend((child, scope, typing_only, False) for child in children)
    if not import_calls:
        return
    bindings_of: dict[int, dict[str, list[str] | None]] = {}
    module_bindings: dict[str, list[str] | None] | None = None
    for call, scope in sorted(import_calls, key=lambda c: (c[0].lineno, c[0].col_offset)):
        bindings: dict[str, list[str] | None] = {}
        if call.args and isinstance(call.args[0], ast.Name):  # only a bare name needs the bindings
            if module_bindings is None:
                module_bindings = literal_bindings(tree)
            if scope is tree:
                bindings = module_bindings
            else:
                if id(scope) not in bindings_of:
                    bindings_of[id(scope)] = literal_bindings(scope, module_bindings)
                bindings = bindings_of[id(scope)]
        _scan_import_call(call, rel, result, bindings)


def _scan_strings(data: bytes, rel: str, result: ScanResult) -> None:
    """String literals that look like names (commands run, dotted module paths), with the file each
    first appears in: all of them in C (``findall``, ``dict.fromkeys``), no line counted here."""
    strings = result.strings
    for literal in dict.fromkeys(_QUOTED_WORD.findall(data)):
        strings.setdefault(literal.decode("ascii"), rel)


def literal_line(data: bytes, literal: str) -> int | None:
    """The line of the first string literal ``literal`` in ``data``, as :func:`_scan_strings` finds it."""
    wanted = literal.encode("ascii")
    for m in _QUOTED_WORD.finditer(data):
        if m.group(1) == wanted:
            return data.count(b"\n", 0, m.start()) + 1
    return None


#: names of the import calls (``locate`` counts only with ``pydoc`` in the file)
_IMPORT_CALL_WORDS = (b"import_module", b"__import__", b"find_spec", b"find_loader", b"get_loader", b"pydoc")
#: ``<...>metadata.version(`` and the other metadata calls: an attribute of something named ``metadata``
#: (white space, a backslash, a comment or a closing bracket may stand between the two)
_METADATA_CALL = re.compile(
    rb"metadata(?:[\s\\)]|\#[^\n]*)*\.(?:[\s\\]|\#[^\n]*)*(?:" + b"|".join(_METADATA_CALLS) + rb")\b"
)
#: the resource calls' names, as words
_RESOURCE_CALL_NAME = re.compile(
    rb"\b(?:" + b"|".join(sorted({n.encode() for c in _RESOURCE_CALLS.values() for n in c})) + rb")\b"
)


def needs_tree(data: bytes) -> bool:
    """Whether the tree walk could find more in ``data`` than its import statements: it names an
    import call, a metadata call on something called ``metadata``, or a resource call's name where
    ``resources``, ``pkgutil`` or ``pkg_resources`` appears (a bare ``files(...)`` counts there). A
    superset of the files where it finds an import call, a resource read or a metadata reference
    (tests/unit/test_prune_lexscan.py compares both scans on the standard library)."""
    if any(word in data for word in _IMPORT_CALL_WORDS):
        return True
    if b"metadata" in data and _METADATA_CALL.search(data):
        return True
    return (b"resources" in data or b"pkgutil" in data) and _RESOURCE_CALL_NAME.search(data) is not None


#: a call function imported under its bare name: its calls do not name the trigger, so walk everything
_BARE_CALL_IMPORT = re.compile(
    rb"^[ \t]*from[ \t]+(?:importlib|importlib\.\w+|importlib_metadata|importlib_resources|pkgutil|pkg_resources|pydoc)"
    rb"[ \t]+import\b",
    re.M,
)


def _trigger_lines(data: bytes) -> list[int] | None:
    """Sorted line numbers holding an import/metadata/resource call name (empty: the file has none,
    walk statements only); None when every expression must be walked (a bare-name import of one)."""
    if not any(t in data for t in _CALL_TRIGGERS):  # most files: nine memchr-fast tests beat one alternation
        return []
    found = [m.start() for m in _TRIGGER.finditer(data)]
    if _BARE_CALL_IMPORT.search(data):
        return None
    lines, line, last = [], 1, 0
    for pos in found:
        line += data.count(b"\n", last, pos)
        last = pos
        lines.append(line)
    return lines


def _is_import_call(node: ast.Call, data: bytes) -> bool:
    name, owner = _call_name(node.func)
    if name == "locate":  # pydoc.locate("pkg.mod.Name") imports pkg.mod; another locate() does not
        return owner.endswith("pydoc") or (not owner and b"pydoc" in data)
    return name in _IMPORT_CALLS


def _scan_resource_call(node: ast.Call, rel: str, result: ScanResult, data: bytes) -> bool:
    """``importlib.resources.files("pkg")``, ``pkgutil.get_data("pkg", "x")``,
    ``pkg_resources.resource_filename("pkg", "x")``: reading a package's data uses that package.
    Only a literal name counts (``files(__name__)`` is the module itself). Returns whether it was one."""
    name, owner = _call_name(node.func)
    for module, calls in _RESOURCE_CALLS.items():
        if name in calls and (owner.endswith(module) or (not owner and module.encode() in data)):
            full, _ = _literal(node.args[0]) if node.args else (None, None)
            if full and not full.startswith(".") and re.fullmatch(r"[A-Za-z_][\w.]*", full):
                result.imports.append(ImportUse(full, rel, node.lineno, f"{module} data"))
            return True
    return False


def _scan_import_call(node: ast.Call, rel: str, result: ScanResult, bindings: dict[str, list[str] | None]) -> None:
    name, owner = _call_name(node.func)
    if not node.args:
        return
    if name != "get_loader" or owner.endswith("pkgutil"):
        if name == "locate":
            name = "pydoc.locate"
        full, prefix = _literal(node.args[0])
        arg = node.args[0]
        known = bindings.get(arg.id) if isinstance(arg, ast.Name) else None
        if full is None and prefix is None and known is not None:
            for value in known:
                if not value.startswith("."):
                    result.imports.append(ImportUse(value, rel, node.lineno, f"{name} (constant)"))
        elif full is not None:
            if not full.startswith("."):
                result.imports.append(ImportUse(full, rel, node.lineno, name))
        elif prefix and "." in prefix and not prefix.startswith("."):
            result.imports.append(ImportUse(prefix.rsplit(".", 1)[0], rel, node.lineno, "dynamic-prefix"))
        elif prefix and prefix.startswith("."):
            pass  # relative to the project's own package
        else:
            result.dynamic.append(f"{rel}:{node.lineno}")


def _scan_metadata_call(node: ast.Call, rel: str, result: ScanResult) -> None:
    name, owner = _call_name(node.func)
    if node.args and name.encode() in _METADATA_CALLS and (owner.endswith("metadata") or owner == "importlib_metadata"):
        full, _ = _literal(node.args[0])
        if full:
            result.dist_references.append(DistributionReference(full, rel, node.lineno))
