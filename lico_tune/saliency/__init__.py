"""Saliency: CAM methods (grad-cam package) and batched RISE behind one interface, and the metrics
a trial reports: insertion/deletion AUC, the grid pointing game (and on masks), the cascading
randomisation sanity check, and the salience equivariance score. Core: torch, numpy, scipy
(grad-cam imported lazily in cam.py, matplotlib lazily in gallery.py); never ray or streamlit.

    fn = make_saliency_fn(model, "gradcam")         # (images, targets) -> (B, H, W) in [0, 1]
    res = evaluate_saliency(model, images, labels, ["gradcam", "rise"])
    res.metrics  # {"saliency/gradcam/insertion": ..., ...}
"""
from ._util import SaliencyFn, normalise_maps, predict
from .cam import CAM_METHODS, saliency_maps
from .equivariance import salience_equivariance
from .evaluate import SaliencyEvaluation, evaluate_saliency
from .faithfulness import (auc, blur, default_pixels_per_step, insertion_deletion,
                           insertion_deletion_reference)
from .gallery import explain_figure, write_gallery
from .localisation import (boxes_to_masks, energy_masks, energy_pointing_game, grid_localisation,
                           make_grids, pointing_game, pointing_game_masks, tile_masks)
from .methods import METHODS, make_saliency_fn
from .rise import rise_maps, rise_masks
from .sanity import cascading_randomisation, randomisable_layers, spearman

__all__ = [
    "SaliencyFn", "normalise_maps", "predict", "CAM_METHODS", "saliency_maps", "salience_equivariance",
    "SaliencyEvaluation", "evaluate_saliency", "auc", "blur", "default_pixels_per_step",
    "insertion_deletion", "insertion_deletion_reference", "explain_figure", "write_gallery",
    "boxes_to_masks", "energy_masks", "energy_pointing_game", "grid_localisation", "make_grids",
    "pointing_game", "pointing_game_masks", "tile_masks", "METHODS", "make_saliency_fn", "rise_maps",
    "rise_masks", "cascading_randomisation", "randomisable_layers", "spearman",
]
