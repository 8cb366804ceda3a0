"""Plug-ins: methods, encoders and tasks from outside the package, behind the built-in registries.

Wherever tkds takes the name of a method, an encoder backbone or a task, it takes three spellings, which
`Registry.resolve` tells apart in this order:
- a built-in name (`simclr`, `cnn3d-tiny`, `likes`): the registry's own entry;
- an installed entry point's name, in the group `tkds.methods`, `tkds.encoders` or `tkds.tasks`
  (`importlib.metadata`; a built-in name always wins over an entry point of the same name);
- `package.module:Attr`: the module imported from sys.path, then its attribute.
Whatever is found is checked against the registry's protocol (docs/plugins.md) before it is used.

Names become folder names (a bench cell is RUN/METHOD/seedK), so both spellings are strict ASCII, checked
before anything is imported: a plain name is a letter or digit, then letters, digits, `_` or `-`; a
plug-in is dotted Python identifiers, one colon, one identifier. Neither can hold `/`, `\\`, `..`,
spaces or a leading dot.

Safety: resolving a plug-in imports its module, which runs its code. tkds imports only modules that are
already on sys.path (it never adds a folder, and never imports from a file path), and none of the
standard library's, so a name can pick installed code but cannot bring any. A checkpoint records its
method's name, so `load_method` on a plug-in's checkpoint imports that module again: a checkpoint is
trusted like code, as torch's docs say of pickles. Checkpoints are still read with `weights_only=True`,
which refuses any pickled object.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from tkds.errors import TkdsError
from tkds.ids import preview

IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a built-in's or an entry point's name
PLUGIN = re.compile(rf"(?P<module>{IDENTIFIER}(?:\.{IDENTIFIER}){{0,15}}):(?P<attr>{IDENTIFIER})")
MAX_LENGTH = 200
DOCS = "docs/plugins.md"


def is_plugin_name(name: object) -> bool:
    """Whether `name` has the strict `package.module:Attr` spelling (nothing is imported)."""
    return isinstance(name, str) and len(name) <= MAX_LENGTH and PLUGIN.fullmatch(name) is not None


@dataclass(frozen=True)
class Registry:
    """One kind of plug-in: its built-ins, its entry point group, and the check of what a name gives.

    `builtins` is a function so that registries can be declared before their entries are importable;
    `problem(obj)` says why `obj` is not one of this kind (as "is not …"), or None when it is.
    """

    kind: str  # "method", "video encoder", "task": the word in messages
    group: str  # the entry point group
    builtins: Callable[[], Mapping[str, object]]
    problem: Callable[[object], str | None]
    example: str  # how a plug-in of this kind is spelled, for messages

    def names(self) -> list[str]:
        """The built-in names, then those of installed entry points (each once, built-ins first)."""
        builtins = self.builtins()
        installed = [ep.name for ep in self._entry_points() if ep.name not in builtins]
        return [*builtins, *dict.fromkeys(installed)]

    def resolve(self, name: object) -> object:
        """What `name` stands for, checked; anything else is a one-line TkdsError naming the fix."""
        builtins = self.builtins()
        if isinstance(name, str) and name in builtins:
            return builtins[name]
        if isinstance(name, str) and PLAIN.fullmatch(name):
            found = [ep for ep in self._entry_points() if ep.name == name]
            if not found:
                raise TkdsError(
                    f"unknown {self.kind} {name!r}; use one of: {', '.join(self.names())}, or a plug-in "
                    f"spelled like {self.example} ({DOCS})"
                )
            return self._checked(name, self._load_entry_point(name, found[0]), found[0].value)
        if not is_plugin_name(name):
            raise TkdsError(
                f"{self.kind} {preview(name)} is neither a known name nor a plug-in spelled like "
                f"{self.example} (ASCII letters, digits and _, dots between modules, one colon); "
                f"use one of: {', '.join(self.names())} ({DOCS})"
            )
        module_name, attr = name.split(":")
        if module_name.split(".")[0] in sys.stdlib_module_names:  # some run code on import (this)
            raise TkdsError(
                f"{self.kind} {name}: {module_name} is in Python's standard library, which holds no tkds "
                "plug-in; name a module of your own"
            )
        module = _import(self.kind, name, module_name)
        if not hasattr(module, attr):
            raise TkdsError(
                f"{self.kind} {name}: module {module_name} has no attribute {attr}; check the name after "
                "the colon"
            )
        return self._checked(name, getattr(module, attr), attr)

    def _entry_points(self) -> list[EntryPoint]:
        return [ep for ep in entry_points(group=self.group) if PLAIN.fullmatch(ep.name)]

    def _load_entry_point(self, name: str, entry: EntryPoint) -> object:
        try:
            return entry.load()
        except Exception as error:  # the package's own code: any failure is reported, never raised on
            raise TkdsError(
                f"{self.kind} {name}: entry point {self.group} {name} = {preview(entry.value, 80)} cannot be "
                f"loaded ({first_line(error)}); reinstall or fix the package that declares it"
            ) from None

    def _checked(self, name: str, obj: object, shown: str) -> object:
        problem = self.problem(obj)
        if problem:
            raise TkdsError(f"{self.kind} {name}: {shown} {problem}; see {DOCS}")
        return obj


def _import(kind: str, name: str, module_name: str) -> object:
    """`module_name` from sys.path; a missing module and a module that fails are told apart."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise TkdsError(
                f"{kind} {name}: no module {error.name} on the Python path; install its package or add "
                "the folder that holds it to PYTHONPATH"
            ) from None
        raise TkdsError(
            f"{kind} {name}: importing {module_name} failed ({first_line(error)}); fix that module"
        ) from None
    except Exception as error:  # the plug-in's own code: report it in one line
        raise TkdsError(
            f"{kind} {name}: importing {module_name} failed ({first_line(error)}); fix that module"
        ) from None


def first_line(error: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return type(error).__name__ + (f": {preview(lines[0], 120)[1:-1]}" if lines else "")
