"""The method registry: one file per method, each a `Method` subclass named by its `name`.

Plug-in methods (tkds.plugins) are named `package.module:Class` or by a `tkds.methods` entry point.
"""

from __future__ import annotations

from tkds.models.methods.av_simclr import AVSimCLR
from tkds.models.methods.base import Method
from tkds.models.methods.moco import MoCo
from tkds.models.methods.random import RandomInit
from tkds.models.methods.simclr import SimCLR
from tkds.models.methods.supervised import Supervised
from tkds.models.methods.vicreg import VICReg
from tkds.models.presets import Preset
from tkds.plugins import Registry

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (RandomInit, SimCLR, AVSimCLR, MoCo, VICReg, Supervised)
}


def _not_a_method(obj: object) -> str | None:
    if obj is Method:
        return "is the base class itself; name your subclass of it"
    if not isinstance(obj, type) or not issubclass(obj, Method):
        return "is not a subclass of tkds.models.methods.Method"
    if not isinstance(getattr(obj, "name", None), str):
        return "sets no name; give the class a name = '...' attribute"
    return None


METHOD_REGISTRY = Registry(
    "method", "tkds.methods", lambda: METHODS, _not_a_method, "mypkg.mymethod:MyMethod"
)


def method_class(name: str) -> type[Method]:
    """The Method subclass called `name`: built-in, a `tkds.methods` entry point, or `module:Class`."""
    return METHOD_REGISTRY.resolve(name)


def build_method(name: str, preset: Preset, **config: object) -> Method:
    """A fresh `name` method for `preset`; `config` holds extra arguments such as num_classes."""
    return method_class(name)(preset, **config)


__all__ = ["METHODS", "METHOD_REGISTRY", "Method", "build_method", "method_class"]
