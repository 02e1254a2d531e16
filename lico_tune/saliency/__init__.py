"""Saliency: CAM methods (grad-cam package) and batched RISE behind one interface, and the metrics
a trial reports: insertion/deletion AUC (most or least relevant first), ROAD, the grid pointing
game (and on masks/boxes), the cascading, smooth and efficient randomisation checks, the salience
equivariance score, and the shortcut probe's metrics. Core: torch, numpy, scipy
(grad-cam imported lazily in cam.py, matplotlib lazily in gallery.py); never ray or streamlit.

    fn = make_saliency_fn(model, "gradcam")         # (images, targets) -> (B, H, W) in [0, 1]
    res = evaluate_saliency(model, images, labels, ["gradcam", "rise"], Protocol.of(cfg.eval))
    res.metrics  # {"saliency/gradcam/insertion": ..., ...}
"""
from ._util import SaliencyFn, normalise_maps, predict
from .cam import CAM_METHODS, saliency_maps
from .equivariance import salience_equivariance
from .evaluate import Protocol, SaliencyEvaluation, evaluate_saliency
from .faithfulness import (auc, blur, default_pixels_per_step, insertion_deletion,
                           insertion_deletion_reference)
from .gallery import explain_figure, write_gallery
from .localisation import (boxes_to_masks, energy_masks, energy_pointing_game, grid_localisation,
                           make_grids, pointing_game, pointing_game_masks, tile_masks)
from .methods import METHODS, make_saliency_fn
from .mprt import efficient_mprt, histogram_entropy, smooth_mprt
from .road import impute as road_impute
from .road import road as road_scores
from .rise import rise_maps, rise_masks
from .sanity import cascading_randomisation, randomisable_layers, spearman
from .shortcut import shortcut_metrics

__all__ = [
    "SaliencyFn", "normalise_maps", "predict", "CAM_METHODS", "saliency_maps", "salience_equivariance",
    "Protocol", "SaliencyEvaluation", "evaluate_saliency", "auc", "blur", "default_pixels_per_step",
    "insertion_deletion", "insertion_deletion_reference", "explain_figure", "write_gallery",
    "boxes_to_masks", "energy_masks", "energy_pointing_game", "grid_localisation", "make_grids",
    "pointing_game", "pointing_game_masks", "tile_masks", "METHODS", "make_saliency_fn", "rise_maps",
    "rise_masks", "cascading_randomisation", "randomisable_layers", "spearman", "efficient_mprt",
    "histogram_entropy", "smooth_mprt", "road_impute", "road_scores", "shortcut_metrics",
]
