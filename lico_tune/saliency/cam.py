"""CAM methods from the `grad-cam` package (pytorch_grad_cam 1.5.x) behind one function.

    saliency_maps(model, target_layer, images (B, C, H, W), targets (B,), method) -> (B, H, W) in [0, 1]

gradcam, gradcampp, layercam are the package's GradCAM, GradCAMPlusPlus, LayerCAM unchanged.
scorecam is the package's ScoreCAM with `get_cam_weights` batched across images and channels
(the package runs one image at a time, 16 channel-masked copies per forward, with a tqdm bar);
the weights are the same (tested against the package's own class).

The package min-max scales each map and resizes it to the input size with cv2 (bilinear); we
normalise again with a safe divide, so every map is exactly in [0, 1] and a constant map is zero.
The model runs in eval mode with frozen parameters (gradients flow to the input only); its mode,
flags and .grad are restored afterwards. The package is imported here only, lazily.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..names import CAM_METHODS
from ._util import as_targets, frozen_eval, model_device, normalise_maps



@functools.lru_cache(maxsize=None)
def _cam_class(method: str):
    import pytorch_grad_cam as pgc

    if method == "scorecam":
        return _batched_scorecam_class()
    classes = {"gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "layercam": pgc.LayerCAM}
    if method not in classes:
        raise ValueError(f"unknown CAM method '{method}'; choose one of {CAM_METHODS}")
    return classes[method]


def _batched_scorecam_class():
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    class BatchedScoreCAM(ScoreCAM):
        """ScoreCAM whose channel scores are computed in flat (image, channel) batches."""

        batch_size = 64

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            # Our forwards below must not be recorded by the package's activation hooks (they
            # would copy every batch's activations to the host); re-hook afterwards.
            self.activations_and_grads.release()
            try:
                with torch.no_grad():
                    act = torch.from_numpy(activations).to(self.device)  # (B, C, h, w)
                    b, c = act.shape[:2]
                    cls = torch.tensor([t.category for t in targets], device=self.device)  # (B,)
                    scores = torch.empty(b * c, device=self.device)
                    x = input_tensor.detach()
                    for start in range(0, b * c, self.batch_size):
                        idx = torch.arange(start, min(start + self.batch_size, b * c), device=self.device)
                        bi, ci = idx // c, idx % c
                        # upsample only this batch's channels: (n, 1, H, W), as UpsamplingBilinear2d
                        up = F.interpolate(act[bi, ci][:, None], size=x.shape[-2:], mode="bilinear",
                                           align_corners=True)
                        flat = up.flatten(1)
                        lo = flat.min(1).values[:, None, None, None]
                        hi = flat.max(1).values[:, None, None, None]
                        up = (up - lo) / (hi - lo + 1e-8)
                        masked = x[bi] * up  # (n, C_in, H, W)
                        scores[idx] = self.model(masked)[torch.arange(len(idx), device=self.device), cls[bi]].float()
                    return torch.softmax(scores.view(b, c), dim=-1).cpu().numpy()
            finally:
                self.activations_and_grads = ActivationsAndGradients(
                    self.model, self.target_layers, self.reshape_transform, self.detach)

    return BatchedScoreCAM


def saliency_maps(model: nn.Module, target_layer: nn.Module | None, images: Tensor, targets,
                  method: str = "gradcam", batch_size: int = 64) -> Tensor:
    """CAM maps (B, H, W) in [0, 1] on the CPU for images (B, C, H, W) and target classes (B,).

    target_layer None means model.cam_layer. At most batch_size images go through the model at
    once (for scorecam: batch_size images per hooked forward, then batch_size channel-masked
    images per forward).
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = _cam_class(method)
    layer = model.cam_layer if target_layer is None else target_layer
    n, (h, w) = len(images), images.shape[-2:]
    targets = as_targets(targets, n)
    if n == 0:
        return torch.zeros(0, h, w)
    device = model_device(model)
    out = []
    with frozen_eval(model):
        cam = cls(model=model, target_layers=[layer])
        if method == "scorecam":
            cam.batch_size = batch_size
        try:
            chunk = batch_size
            for i in range(0, n, chunk):
                x = images[i:i + chunk].to(device).float()
                if cam.uses_gradients:
                    x = x.detach().requires_grad_(True)  # parameters are frozen: grads via the input
                tg = [ClassifierOutputTarget(int(t)) for t in targets[i:i + chunk]]
                grayscale = cam(input_tensor=x, targets=tg)  # numpy (n, H, W)
                out.append(torch.from_numpy(grayscale).float())
                cam.outputs = None  # drop the graph held by the package
        finally:
            cam.activations_and_grads.release()
    maps = torch.cat(out)  # (B, H, W)
    if maps.shape[-2:] != (h, w):  # the package resizes already; keep the contract regardless
        maps = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return normalise_maps(maps)
