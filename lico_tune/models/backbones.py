"""Image backbones: body -> feature map F (B, C, H, W) -> GAP -> dropout -> linear classifier.

F, the output of the last block, is what Grad-CAM explains (`cam_layer`) and what LICO's OT loss
aligns with the text. Every backbone takes 1- or 3-channel images.

  wrn28_2, wrn28_8   WideResNet-28-k as in FixMatch and the LICO released code: conv 3x3 (16),
                     3 groups of 4 pre-activation blocks (BN-LeakyReLU(0.1)-conv), widths 16k/32k/64k,
                     strides 1/2/2, then BN + LeakyReLU(0.1). 32 px -> F 8x8.
  resnet18_cifar     ResNet-18 with a 3x3 stride-1 stem and no max-pool. 32 px -> F 4x4.
  resnet50           torchvision resnet50(weights=None) (ImageNet stem). 224 px -> F 7x7.
  tiny_cnn           3 conv blocks (32, 64, 64 channels, two stride 2): fast, for tests and the
                     CPU quick start. 28 px -> F 7x7, 32 px -> 8x8, 8 px -> 2x2.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models import resnet50 as tv_resnet50

from ..spec import ModelConfig


class ImageClassifier(nn.Module):
    """`body` maps x to F; the head is GAP + dropout + linear. `cam_layer` is the body's last module."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, cam_layer: str,
                 dropout: float = 0.0):
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim  # C of F
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.zeros_(self.fc.bias)
        # A name, not a module attribute: registering the module twice would duplicate state_dict keys.
        self._cam_layer = cam_layer

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is F (the Grad-CAM target layer)."""
        return self.get_submodule(self._cam_layer)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, C, H, W)

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """logits (B, K), F (B, C, H, W), e = GAP(F) (B, C), in one pass."""
        fmap = self.body(x)  # (B, C, H, W)
        emb = fmap.mean(dim=(2, 3))  # (B, C)
        return self.fc(self.dropout(emb)), fmap, emb

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x)[0]

    @torch.no_grad()
    def feature_shape(self, in_channels: int, image_size: int) -> tuple[int, int, int]:
        """(C, H, W) of F for an input of this size (a dummy forward in eval mode)."""
        was_training = self.training
        self.eval()
        try:
            p = next(self.parameters())
            fmap = self.body(torch.zeros(1, in_channels, image_size, image_size, device=p.device, dtype=p.dtype))
        finally:
            self.train(was_training)
        return tuple(fmap.shape[1:])


# ----------------------------------------------------------------------------- WideResNet-28-k


class _WideBlock(nn.Module):
    """Pre-activation block of FixMatch's WRN: BN-LReLU-conv3x3-BN-LReLU-conv3x3 (+ shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool = False):
        super().__init__()
        self.equal = c_in == c_out
        self.activate_before_residual = activate_before_residual
        if self.equal or activate_before_residual:  # else the port computes bn1 but never uses it
            self.bn1 = nn.BatchNorm2d(c_in, momentum=0.001)
            self.relu1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.001)
        self.relu2 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # As in the PyTorch FixMatch port (kekmodel, TorchSSL) that LICO's code builds on: where the
        # width changes, conv1 and the shortcut see x itself, activated only if activate_before_residual.
        if not self.equal and self.activate_before_residual:
            x = self.relu1(self.bn1(x))
            out = x
        elif self.equal:
            out = self.relu1(self.bn1(x))
        else:
            out = x
        out = self.relu2(self.bn2(self.conv1(out)))
        out = self.conv2(out)
        return out + (x if self.equal else self.shortcut(x))


def _wide_group(n: int, c_in: int, c_out: int, stride: int, activate_before_residual: bool) -> nn.Sequential:
    return nn.Sequential(*[
        _WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, activate_before_residual)
        for i in range(n)])


def _wrn28(k: int, in_channels: int) -> tuple[nn.Module, int]:
    depth, widths = 28, [16, 16 * k, 32 * k, 64 * k]
    n = (depth - 4) // 6  # 4 blocks per group
    body = nn.Sequential()
    body.add_module("conv1", nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False))
    body.add_module("block1", _wide_group(n, widths[0], widths[1], 1, activate_before_residual=True))
    body.add_module("block2", _wide_group(n, widths[1], widths[2], 2, False))
    body.add_module("block3", _wide_group(n, widths[2], widths[3], 2, False))
    body.add_module("final", nn.Sequential(nn.BatchNorm2d(widths[3], momentum=0.001),
                                           nn.LeakyReLU(0.1, inplace=True)))
    for m in body.modules():  # FixMatch init
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return body, widths[3]


# ----------------------------------------------------------------------------- ResNets


def _resnet_body(net: resnet.ResNet) -> nn.Sequential:
    return nn.Sequential(*[getattr(net, n) for n in
                           ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")])


def _resnet18_cifar(in_channels: int) -> tuple[nn.Module, int]:
    net = resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2])  # torchvision init: kaiming fan_out, BN 1/0
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    return _resnet_body(net), 512


def _resnet50(in_channels: int) -> tuple[nn.Module, int]:
    net = tv_resnet50(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return _resnet_body(net), 2048


# ----------------------------------------------------------------------------- tiny CNN


def _tiny_cnn(in_channels: int) -> tuple[nn.Module, int]:
    def block(c_in, c_out, stride):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True))
    body = nn.Sequential()
    body.add_module("block1", block(in_channels, 32, 2))
    body.add_module("block2", block(32, 64, 2))
    body.add_module("block3", block(64, 64, 1))
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return body, 64


# name -> (builder(in_channels) -> (body, C), name of the CAM layer inside the classifier)
_BACKBONES = {
    "wrn28_2": (lambda c: _wrn28(2, c), "body.final"),
    "wrn28_8": (lambda c: _wrn28(8, c), "body.final"),
    "resnet18_cifar": (_resnet18_cifar, "body.7"),  # layer4
    "resnet50": (_resnet50, "body.7"),  # layer4
    "tiny_cnn": (_tiny_cnn, "body.block3"),
}


def build_classifier(cfg: ModelConfig, num_classes: int, in_channels: int) -> ImageClassifier:
    """The backbone named by cfg.backbone with a GAP + dropout + linear head for num_classes."""
    if cfg.backbone not in _BACKBONES:
        raise ValueError(f"model.backbone: unknown backbone '{cfg.backbone}'; choose one of {sorted(_BACKBONES)}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    make, cam_layer = _BACKBONES[cfg.backbone]
    body, dim = make(in_channels)
    model = ImageClassifier(body, dim, num_classes, cam_layer, dropout=cfg.dropout)
    if cfg.backbone.startswith("wrn"):
        nn.init.xavier_normal_(model.fc.weight)  # FixMatch's WRN head init
    return model


__all__ = ["ImageClassifier", "build_classifier"]
