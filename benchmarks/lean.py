"""Plain-torch stand-ins for benchmarks/all.py, which must run where only torch is installed.

  wrn28(k, K)        lico-tune's WideResNet-28-k classifier, same module names (a lico-tune
                     state dict loads into it strictly; tests/project/test_benchmarks.py checks the outputs)
  resnet50(K)        torchvision's resnet50 when importable, else a plain-torch copy of it
  ClipTower          a CLIP text tower (token + positional embedding, open_clip-style residual
                     attention blocks with a causal mask, ln_final, text_projection), same names
                     as lico-tune's ClipTextTower; random weights
  PromptLearner      CoOp prompts "[SOS] X*M name . [EOS]" (class token at the end, one shared
                     context) with lico-tune's three feature variants, plain forward or the exact
                     shared-prefix forward of lico_tune/models/text/prefix.py (the real module)
  load_lean(name)    a lico_tune module that imports only torch, loaded without the heavy package
                     __init__ files (lico_tune.models and lico_tune.saliency import pydantic,
                     torchvision, open_clip, grad-cam)
"""
from __future__ import annotations

import importlib
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]


def load_lean(name: str):
    """import lico_tune.<name> (e.g. 'losses', 'models.text.prefix', 'saliency.faithfulness') with
    the sub-packages' __init__ files skipped (empty stand-in packages over the same folders)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for pkg in ("lico_tune.models", "lico_tune.models.text", "lico_tune.saliency"):
        if pkg not in sys.modules:
            stub = types.ModuleType(pkg)
            stub.__path__ = [str(ROOT / pkg.replace(".", "/"))]
            sys.modules[pkg] = stub
    return importlib.import_module(f"lico_tune.{name}")


# ----------------------------------------------------------------------------- image models


class _WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool):
        super().__init__()
        self.equal, self.abr = c_in == c_out, activate_before_residual
        if self.equal or activate_before_residual:
            self.bn1, self.relu1 = nn.BatchNorm2d(c_in, momentum=0.001), nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(c_out, momentum=0.001), nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.equal and self.abr:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x)) if self.equal else x
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + (x if self.equal else self.shortcut(x))


class Classifier(nn.Module):
    """body -> F (B, C, H, W) -> GAP -> fc, as lico-tune's ImageClassifier."""

    def __init__(self, body: nn.Module, dim: int, num_classes: int):
        super().__init__()
        self.body, self.dropout, self.fc = body, nn.Dropout(0.0), nn.Linear(dim, num_classes)

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fmap = self.body(x)
        emb = fmap.mean(dim=(2, 3))
        return self.fc(self.dropout(emb)), fmap, emb

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x)[0]


def wrn28(k: int, num_classes: int) -> Classifier:
    w = [16, 16 * k, 32 * k, 64 * k]

    def group(c_in, c_out, stride, abr):
        return nn.Sequential(*[_WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, abr)
                               for i in range(4)])
    body = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, w[0], 3, 1, 1, bias=False)), ("block1", group(w[0], w[1], 1, True)),
        ("block2", group(w[1], w[2], 2, False)), ("block3", group(w[2], w[3], 2, False)),
        ("final", nn.Sequential(nn.BatchNorm2d(w[3], momentum=0.001), nn.LeakyReLU(0.1, inplace=True)))]))
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
    return Classifier(body, w[3], num_classes)


class _Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * 4
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def resnet50(num_classes: int) -> tuple[nn.Module, str]:
    try:
        from torchvision.models import resnet50 as tv
        return tv(weights=None, num_classes=num_classes), "torchvision resnet50"
    except ImportError:
        pass
    layers, c_in, stages = [], 64, []
    for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        stages.append(nn.Sequential(*[_Bottleneck(c_in if i == 0 else width * 4, width, stride if i == 0 else 1)
                                      for i in range(n)]))
        c_in = width * 4
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1), *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes)]
    return nn.Sequential(*layers), "plain-torch resnet50 (torchvision not installed)"


# ----------------------------------------------------------------------------- CLIP text tower


class _Block(nn.Module):
    """open_clip's ResidualAttentionBlock (no layer scale): x + attn(ln_1 x), then x + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ls_1 = self.ls_2 = nn.Identity()
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.ls_1(self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0])
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([_Block(width, heads) for _ in range(layers)])

    def get_cast_dtype(self) -> torch.dtype:
        return self.resblocks[0].mlp.c_fc.weight.dtype


class ClipTower(nn.Module):
    """CLIP text tower; ViT-B/32's is width 512, 12 layers, 8 heads, output 512."""

    def __init__(self, width: int = 512, layers: int = 12, heads: int = 8, output_dim: int = 512,
                 vocab: int = 49408, context_length: int = 77):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, output_dim) * width ** -0.5)
        self.register_buffer("attn_mask", torch.full((context_length, context_length), float("-inf")).triu(1),
                             persistent=False)
        self.pool_type, self.dim = "argmax", output_dim

    def project(self, x: Tensor) -> Tensor:
        return x @ self.text_projection

    def forward(self, embeds: Tensor, eot_pos: Tensor, need_tokens: bool = False):
        """embeds (B, L, W) -> pooled (B, D), tokens (B, L, D) or None; as ClipTextTower."""
        B, L, _ = embeds.shape
        x = embeds + self.positional_embedding[:L]
        for blk in self.transformer.resblocks:
            x = blk(x, self.attn_mask[:L, :L])
        x = self.ln_final(x)
        pooled = self.project(x[torch.arange(B, device=x.device), eot_pos])
        return pooled, (self.project(x) if need_tokens else None)


class PromptLearner(nn.Module):
    """CoOp prompts through a frozen ClipTower: points (K, N, D) as lico-tune's learner."""

    def __init__(self, tower: ClipTower, names_ids: list[list[int]], n_ctx: int, features: str,
                 shared_prefix: bool, sos: int, period: int, eos: int):
        super().__init__()
        self.encoder, self.features, self.n_ctx, self.shared = tower.requires_grad_(False).eval(), features, n_ctx, shared_prefix
        seqs = [[sos] + [0] * n_ctx + list(n) + [period, eos] for n in names_ids]
        K, L = len(seqs), max(map(len, seqs))
        ids = torch.zeros(K, L, dtype=torch.long)
        name_weight = torch.zeros(K, L)
        for k, (s, n) in enumerate(zip(seqs, names_ids)):
            ids[k, :len(s)] = torch.tensor(s)
            name_weight[k, 1 + n_ctx:1 + n_ctx + len(n)] = 1.0 / len(n)
        self.register_buffer("ids", ids)
        self.register_buffer("eot_pos", torch.tensor([len(s) - 1 for s in seqs]))
        self.register_buffer("name_weight", name_weight)
        self.register_buffer("ctx_pos", torch.arange(1, n_ctx + 1).expand(K, n_ctx).contiguous())
        ar = torch.arange(n_ctx)
        self.register_buffer("roll_idx", (ar[None, :] - ar[:, None]) % n_ctx)
        with torch.no_grad():
            self.register_buffer("base_embeds", tower.token_embedding(ids.to(tower.positional_embedding.device)))
        self.ctx = nn.Parameter(torch.randn(n_ctx, tower.token_embedding.embedding_dim) * 0.02)
        self.text_prefix = load_lean("models.text.prefix")

    def forward(self) -> tuple[Tensor, Tensor]:
        """(points (K, N, D), pooled (K, D))."""
        base, enc, M = self.base_embeds, self.encoder, self.n_ctx
        K, L, W = base.shape
        rolled = self.features == "rolled"
        contexts = self.ctx[self.roll_idx] if rolled else self.ctx[None]  # (G, M, W)
        G = contexts.shape[0]
        if self.shared:
            p = M + 1
            prefix = torch.cat([base[:1, :1].expand(G, 1, W), contexts], 1)  # (G, p, W)
            pos = enc.positional_embedding[:L]
            xs = base[:, p:] + pos[p:]
            if G > 1:
                xs = xs[:, None].expand(K, G, L - p, W).reshape(K * G, L - p, W)
            group = torch.arange(K * G, device=xs.device) % G if G > 1 else None
            xp, xs = self.text_prefix.run_blocks(enc.transformer.resblocks, prefix + pos[:p], xs, group)
            xs = enc.ln_final(xs)
            eot = (self.eot_pos - p).repeat_interleave(G)
            if self.features == "per_token":
                at_ctx = enc.project(enc.ln_final(xp)[0, 1:]).expand(K, M, -1)
                name = torch.einsum("ks,ksd->kd", self.name_weight[:, p:], enc.project(xs))
                points = torch.cat([at_ctx, name[:, None]], 1)
            else:
                points = enc.project(xs[torch.arange(K * G, device=xs.device), eot]).view(K, G, -1)
        else:
            x = torch.cat([base[:, None, :1].expand(K, G, 1, W), contexts[None].expand(K, G, M, W),
                           base[:, None, M + 1:].expand(K, G, L - M - 1, W)], 2).reshape(K * G, L, W)
            pooled, tokens = enc(x, self.eot_pos.repeat_interleave(G), need_tokens=self.features == "per_token")
            if self.features == "per_token":
                name = torch.einsum("kl,kld->kd", self.name_weight, tokens)
                points = torch.cat([tokens[:, 1:M + 1], name[:, None]], 1)
            else:
                points = pooled.view(K, G, -1)
        return points, points.mean(1)
