"""The method registry: one file per method, each a `Method` subclass named by its `name`."""

from __future__ import annotations

from tkds.errors import TkdsError
from tkds.models.methods.av_simclr import AVSimCLR
from tkds.models.methods.base import Method
from tkds.models.methods.moco import MoCo
from tkds.models.methods.random import RandomInit
from tkds.models.methods.simclr import SimCLR
from tkds.models.methods.supervised import Supervised
from tkds.models.methods.vicreg import VICReg
from tkds.models.presets import Preset

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (RandomInit, SimCLR, AVSimCLR, MoCo, VICReg, Supervised)
}


def method_class(name: str) -> type[Method]:
    """The Method subclass registered as `name`."""
    if name not in METHODS:
        raise TkdsError(f"unknown method {name!r}; use one of: {', '.join(METHODS)}")
    return METHODS[name]


def build_method(name: str, preset: Preset, **config: object) -> Method:
    """A fresh `name` method for `preset`; `config` holds extra arguments such as num_classes."""
    return method_class(name)(preset, **config)


__all__ = ["METHODS", "Method", "build_method", "method_class"]
