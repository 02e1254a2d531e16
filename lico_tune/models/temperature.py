"""The MM temperature tau in its three forms (lico.mm.temperature_form), and the fixed target tau.

  exp      tau = exp(log_tau), log_tau learnable; clamped to [temperature_min, temperature_max]
           (the clamp acts on log_tau, so at a bound the gradient is 0 and tau stays there)
  divisor  tau = the parameter itself (released code: init 2.659, used as is, not exponentiated);
           the same optional bounds
  clip     tau = exp(-logit_scale): the released code's 2.659 read as CLIP's log logit scale
           (init 2.659 -> tau 0.07, a multiplier of 14.3); the bounds act on tau
  fixed    tau = a constant buffer

The parameter keeps the name `log_tau` for 'exp' and 'fixed' (older checkpoints load) and is
`tau` for 'divisor' and `logit_scale` for 'clip'.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..spec import MMConfig


class Temperature(nn.Module):
    def __init__(self, cfg: MMConfig):
        super().__init__()
        self.form = cfg.temperature_form
        self.lo, self.hi = cfg.temperature_min, cfg.temperature_max
        self.initial = cfg.initial_tau
        if self.form == "divisor":
            self.tau = nn.Parameter(torch.tensor(float(cfg.temperature)))
        elif self.form == "clip":
            self.logit_scale = nn.Parameter(torch.tensor(float(cfg.temperature)))
        elif self.form == "exp":
            self.log_tau = nn.Parameter(torch.tensor(math.log(cfg.temperature)))
        else:
            self.register_buffer("log_tau", torch.tensor(math.log(cfg.temperature)))
        target = cfg.target_temperature
        self.register_buffer("target", torch.tensor(float(target)) if target is not None else None)

    @property
    def learnable(self) -> bool:
        return self.form != "fixed"

    def parameter(self) -> Optional[nn.Parameter]:
        """The learnable scalar (for its own optimizer group), or None when tau is fixed."""
        return {"fixed": None, "divisor": getattr(self, "tau", None), "clip": getattr(self, "logit_scale", None),
                "exp": getattr(self, "log_tau", None)}[self.form]

    def forward(self) -> Tensor:
        """tau of the student A^F (and of A^G unless a target tau is set): a 0-dim tensor."""
        if self.form == "divisor":
            return self.tau.clamp(self.lo, self.hi) if (self.lo or self.hi) else self.tau
        if self.form == "clip":  # tau in [lo, hi] <=> logit_scale in [-log hi, -log lo]
            scale = self.logit_scale
            if self.lo or self.hi:
                scale = scale.clamp(-math.log(self.hi) if self.hi else None, -math.log(self.lo) if self.lo else None)
            return (-scale).exp()
        log_tau = self.log_tau
        if self.lo or self.hi:
            log_tau = log_tau.clamp(math.log(self.lo) if self.lo else None, math.log(self.hi) if self.hi else None)
        return log_tau.exp()

    def target_tau(self) -> Optional[Tensor]:
        """tau of the target A^G when it is separate (fixed), else None (shared with the student)."""
        return self.target
