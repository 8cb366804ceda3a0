"""Video and audio backbones: small CNNs for CPU presets, torchvision ResNets for GPU presets.

Every encoder maps one clip to a feature vector of size `.dim`: video (N, 3, T, H, W) and audio log-mel
(N, 1, n_mels, L). Backbones start untrained (`weights=None`): every method learns from scratch.
A preset may also name a plug-in backbone (tkds.plugins): `package.module:Attr` or a `tkds.encoders` entry
point, where Attr is an nn.Module class or a function returning one, built with no arguments, that has
`.dim` and honours the same input and output shapes. It is used as it is (not wrapped in Encoder).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tkds.errors import TkdsError
from tkds.plugins import Registry, first_line


class Encoder(nn.Module):
    """A backbone `net` with its output size `.dim`, for inputs with `ndim` dims (5 video, 4 audio)."""

    def __init__(self, net: nn.Module, dim: int, ndim: int) -> None:
        super().__init__()
        self.net = net
        self.dim = dim
        self.channels_last = torch.channels_last_3d if ndim == 5 else torch.channels_last
        self.memory_format = torch.contiguous_format

    def use_channels_last(self) -> None:
        """Channels-last weights and inputs: the fast layout for cuDNN convolutions in bf16."""
        self.memory_format = self.channels_last
        self.net.to(memory_format=self.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))


def _conv_stack(
    conv: type[nn.Module], norm: type[nn.Module], widths: list[int], strides: list
) -> nn.Sequential:
    """conv-BN-ReLU blocks, kernel 3, then a global average pool and flatten."""
    layers: list[nn.Module] = []
    for c_in, c_out, stride in zip(widths[:-1], widths[1:], strides, strict=True):
        layers += [
            conv(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            norm(c_out),
            nn.ReLU(inplace=True),
        ]
    pool = nn.AdaptiveAvgPool3d(1) if conv is nn.Conv3d else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(*layers, pool, nn.Flatten())


def small_video_cnn(width: int) -> Encoder:
    """Four conv3d blocks (width, 2w, 4w, 8w); space is halved at every block, time from the second."""
    widths = [3, width, 2 * width, 4 * width, 8 * width]
    strides = [(1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)]
    return Encoder(_conv_stack(nn.Conv3d, nn.BatchNorm3d, widths, strides), 8 * width, ndim=5)


def small_audio_cnn(width: int) -> Encoder:
    """Four conv2d blocks (width, 2w, 4w, 8w) on the log-mel image, each halving both axes."""
    widths = [1, width, 2 * width, 4 * width, 8 * width]
    return Encoder(_conv_stack(nn.Conv2d, nn.BatchNorm2d, widths, [2, 2, 2, 2]), 8 * width, ndim=4)


def torchvision_video(name: str) -> Encoder:
    """torchvision's r2plus1d_18 or r3d_18, untrained, with the classifier removed (512-d)."""
    from torchvision.models import video

    net = getattr(video, name)(weights=None)
    net.fc = nn.Identity()
    return Encoder(net, 512, ndim=5)


def resnet18_audio() -> Encoder:
    """torchvision's ResNet-18 on a one-channel log-mel image, untrained, classifier removed (512-d)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return Encoder(net, 512, ndim=4)


VIDEO_BACKBONES: dict[str, Callable[[], Encoder]] = {
    "cnn3d-tiny": lambda: small_video_cnn(16),
    "cnn3d-small": lambda: small_video_cnn(32),
    "r2plus1d_18": lambda: torchvision_video("r2plus1d_18"),
    "r3d_18": lambda: torchvision_video("r3d_18"),
}
AUDIO_BACKBONES: dict[str, Callable[[], Encoder]] = {
    "cnn2d-tiny": lambda: small_audio_cnn(16),
    "cnn2d-small": lambda: small_audio_cnn(32),
    "resnet18": resnet18_audio,
}


def _not_a_backbone(obj: object) -> str | None:
    if isinstance(obj, nn.Module):
        return "is a module instance; name its class, or a function that builds a fresh one"
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        return "is a class that is not a torch.nn.Module"
    return None if callable(obj) else "is not an nn.Module class or a function that returns one"


VIDEO_REGISTRY = Registry(
    "video backbone", "tkds.encoders", lambda: VIDEO_BACKBONES, _not_a_backbone, "mypkg.nets:MyVideoNet"
)
AUDIO_REGISTRY = Registry(
    "audio backbone", "tkds.encoders", lambda: AUDIO_BACKBONES, _not_a_backbone, "mypkg.nets:MyAudioNet"
)


def _build(registry: Registry, name: str) -> nn.Module:
    factory = registry.resolve(name)
    if name in registry.builtins():
        return factory()
    try:
        net = factory()
    except Exception as error:  # the plug-in's own code: one line, not a traceback
        raise TkdsError(f"{registry.kind} {name}: building it failed ({first_line(error)}); fix it") from None
    dim = getattr(net, "dim", None)
    if not isinstance(net, nn.Module) or isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise TkdsError(
            f"{registry.kind} {name}: gives {type(net).__name__}, not an nn.Module with a whole-number "
            "attribute dim (its output width); see docs/plugins.md"
        )
    return net  # as it is: its layout is its own (channels-last is for the built-in encoders)


def video_encoder(name: str) -> nn.Module:
    """The video backbone called `name`: an Encoder of VIDEO_BACKBONES, or a plug-in (module docstring)."""
    return _build(VIDEO_REGISTRY, name)


def audio_encoder(name: str) -> nn.Module:
    """The audio backbone called `name`: an Encoder of AUDIO_BACKBONES, or a plug-in (module docstring)."""
    return _build(AUDIO_REGISTRY, name)
