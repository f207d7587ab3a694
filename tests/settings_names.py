"""The environment variables the code reads, found by parsing it (no import): every
``env.<type>("NAME")`` and ``env("NAME")`` of django-environ (and ``env.get`` of a mapping
named env), ``os.environ.get``,
``os.environ[...]``, ``os.getenv``, ``.pop`` and ``.setdefault``, and the Slurm targets'
``setting(settings, key, "NAME")``. A name given through a module constant, a loop over a
constant tuple or an f-string over such a loop is followed; what cannot be followed is
returned apart, so a test can refuse it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ENV_METHODS = {"get", "str", "bool", "int", "float", "list", "tuple", "dict", "path", "db", "url",
               "json", "cache", "email", "search_url"}
ENVIRON_METHODS = {"get", "pop", "setdefault"}


def _constants(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level NAME = "TEXT" or NAME = ("A", "B", ...) (also frozenset/set of them)."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and (texts := _texts(value)) is not None:
            found[target.id] = texts
    return found


def _texts(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 \
            and node.func.id in ("frozenset", "set", "tuple"):
        node = node.args[0]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_texts(item) for item in node.elts]
        if all(item is not None and len(item) == 1 for item in items):
            return [item[0] for item in items if item]
    return None


class _Reader(ast.NodeVisitor):
    def __init__(self, constants: dict[str, list[str]], modules: dict[str, dict[str, list[str]]]):
        self.constants = constants
        self.modules = modules  # other modules' constants, for module.NAME
        self.loops: list[tuple[str, list[str]]] = []  # (loop variable, its values), innermost last
        self.names: set[str] = set()
        self.unresolved: list[tuple[int, str]] = []

    # Loops and comprehensions over constant tuples bind their variable to those values.
    def _loop(self, target: ast.AST, iterable: ast.AST) -> bool:
        values = _texts(iterable)
        if values is None and isinstance(iterable, ast.Name):
            values = self.constants.get(iterable.id)
        if isinstance(target, ast.Name) and values is not None:
            self.loops.append((target.id, values))
            return True
        return False

    def visit_For(self, node: ast.For) -> None:
        pushed = self._loop(node.target, node.iter)
        self.generic_visit(node)
        if pushed:
            self.loops.pop()

    def _visit_comprehension(self, node) -> None:
        pushed = sum(self._loop(gen.target, gen.iter) for gen in node.generators)
        self.generic_visit(node)
        for _ in range(pushed):
            self.loops.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def _values(self, node: ast.AST) -> list[str] | None:
        if (texts := _texts(node)) is not None:
            return texts
        if isinstance(node, ast.Name):
            for variable, values in reversed(self.loops):
                if variable == node.id:
                    return values
            return self.constants.get(node.id)
        if isinstance(node, ast.JoinedStr):
            return self._fstring(node)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.modules.get(node.value.id, {}).get(node.attr)
        return None

    def _fstring(self, node: ast.JoinedStr) -> list[str] | None:
        """f"PREFIX_{var}" or f"PREFIX_{var.upper()}" over a loop variable."""
        parts: list[list[str]] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append([str(part.value)])
                continue
            value, upper = part.value, False  # type: ignore[attr-defined]
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                    and value.func.attr == "upper" and not value.args:
                value, upper = value.func.value, True
            values = self._values(value) if isinstance(value, ast.Name) else None
            if values is None:
                return None
            parts.append([v.upper() if upper else v for v in values])
        results = [""]
        for options in parts:
            results = [done + option for done in results for option in options]
        return results

    def _take(self, node: ast.AST, arg: ast.AST) -> None:
        values = self._values(arg)
        if values is None:
            self.unresolved.append((node.lineno, ast.unparse(node)))
        else:
            self.names.update(values)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if node.args and (_is_env(func) or (isinstance(func, ast.Attribute) and (
                (func.attr in ENV_METHODS and _is_env(func.value))
                or (func.attr in ENVIRON_METHODS and _is_environ(func.value))
                or (func.attr == "getenv" and _is_name(func.value, "os"))))):
            self._take(node, node.args[0])  # env("NAME"), env.str("NAME"), os.environ.get...
        elif _is_name(func, "setting"):  # setting(settings, key, "ENV", default)
            env = node.args[2] if len(node.args) > 2 else next(
                (kw.value for kw in node.keywords if kw.arg == "env"), None)
            if env is not None and not (isinstance(env, ast.Constant) and env.value is None):
                self._take(node, env)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_environ(node.value):
            self._take(node, node.slice)
        self.generic_visit(node)


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _is_env(node: ast.AST) -> bool:
    return _is_name(node, "env")


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def python_files(root: Path, places: list[str]) -> Iterator[Path]:
    for place in places:
        path = root / place
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def env_names(files: list[Path]) -> tuple[dict[str, set[Path]], list[str]]:
    """Each name read (with the files that read it), and what could not be followed
    (``file:line: code``)."""
    names: dict[str, set[Path]] = {}
    unresolved: list[str] = []
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
    modules = {path.stem: _constants(tree) for path, tree in trees.items()}
    for path, tree in trees.items():
        reader = _Reader(modules[path.stem], modules)
        reader.visit(tree)
        for name in reader.names:
            names.setdefault(name, set()).add(path)
        unresolved += [f"{path}:{line}: {code}" for line, code in reader.unresolved]
    return names, unresolved
