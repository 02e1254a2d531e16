"""Localisation: the 2x2 grid pointing game and its energy variant, and the same on real masks.

Grid game (works on any labelled dataset): tile four images of four different classes into one
(C, 2H, 2W) image, tiles in the order top-left, top-right, bottom-left, bottom-right. For each
tile's class as the target, the map of the whole grid is scored against that tile:
  pointing: 1 if the map's maximum lies inside the tile. Ties share the credit: the score is the
            fraction of the map's maximal positions inside the tile, so a constant map scores the
            tile's area share (0.25), never a free hit.
  energy:   sum of the map inside the tile / sum over the map (the energy-based pointing game of
            Score-CAM); an all-zero map counts as constant (the tile's area share).
Chance level on the grid is 0.25 for both. `pointing_game_masks` / `energy_masks` take maps and
boolean masks (N, H, W) of the same shape, for datasets with segmentation masks; `boxes_to_masks`
turns (x0, y0, x1, y1) pixel boxes into such masks.
"""
from __future__ import annotations

import torch
from torch import Tensor


def make_grids(images: Tensor, labels, n_grids: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(grid_images (G, C, 2H, 2W), grid_labels (G, 4)): 4 different classes per grid, each tile a
    random image of its class (seeded; images may repeat across grids). Needs >= 4 classes."""
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    classes = torch.unique(labels)
    if len(classes) < 4:
        raise ValueError(f"the grid pointing game needs images of >= 4 classes, got {len(classes)}")
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in classes]
    picks = torch.empty(n_grids, 4, dtype=torch.long)  # source image index per tile
    grid_labels = torch.empty(n_grids, 4, dtype=torch.long)
    for gi in range(n_grids):
        cls = torch.randperm(len(classes), generator=g)[:4]
        for t, ci in enumerate(cls.tolist()):
            pool = by_class[ci]
            picks[gi, t] = pool[torch.randint(len(pool), (1,), generator=g)]
            grid_labels[gi, t] = classes[ci]
    tiles = images[picks.flatten()].view(n_grids, 4, *images.shape[1:])  # (G, 4, C, H, W)
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=-1)  # (G, C, H, 2W)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2), grid_labels  # (G, C, 2H, 2W), (G, 4)


def tile_masks(height: int, width: int) -> Tensor:
    """(4, height, width) boolean masks of the 2x2 tiles (TL, TR, BL, BR) of a grid image."""
    m = torch.zeros(4, height, width, dtype=torch.bool)
    h2, w2 = height // 2, width // 2
    m[0, :h2, :w2] = True
    m[1, :h2, w2:] = True
    m[2, h2:, :w2] = True
    m[3, h2:, w2:] = True
    return m


def pointing_game_masks(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) share of each map's maximal positions that lie inside its mask (1.0 = a hit)."""
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    flat, inside = maps.flatten(1).float(), masks.flatten(1).bool()
    is_max = flat == flat.max(dim=1, keepdim=True).values  # (N, H*W)
    return (is_max & inside).sum(1).float() / is_max.sum(1).float()


def energy_masks(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) share of each map's energy (sum of its values, maps >= 0) inside its mask."""
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    flat, inside = maps.flatten(1).float().clamp_min(0), masks.flatten(1).bool()
    total = flat.sum(1)
    area = inside.float().mean(1)  # what a constant map gets
    share = (flat * inside).sum(1) / total.clamp_min(1e-12)
    return torch.where(total > 0, share, area)


def _grid_masks(maps: Tensor, tile_index) -> Tensor:
    tile_index = torch.as_tensor(tile_index, dtype=torch.long).cpu()
    return tile_masks(*maps.shape[-2:])[tile_index]  # (G, 2H, 2W)


def pointing_game(maps: Tensor, tile_index) -> Tensor:
    """Grid pointing game: maps (G, 2H, 2W) of grid images, tile_index (G,) in 0..3 -> hits (G,)."""
    return pointing_game_masks(maps, _grid_masks(maps, tile_index))


def energy_pointing_game(maps: Tensor, tile_index) -> Tensor:
    """Energy-based grid pointing game: share of each map's energy inside its tile (G,)."""
    return energy_masks(maps, _grid_masks(maps, tile_index))


def boxes_to_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """(N, 4) boxes (x0, y0, x1, y1) in pixels, x1/y1 exclusive -> (N, height, width) bool masks."""
    boxes = torch.as_tensor(boxes).float()
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def grid_localisation(saliency_fn, images: Tensor, labels, n_grids: int, seed: int = 0,
                      batch_size: int = 64) -> dict[str, Tensor]:
    """Run the grid game with a SaliencyFn: (images, targets) -> maps. Every grid is scored for
    each of its 4 tiles. Returns {"pointing": (G*4,), "energy": (G*4,)}; chance is 0.25."""
    grids, grid_labels = make_grids(images, labels, n_grids, seed)
    targets = grid_labels.flatten()  # (4G,): grid g with target tile t at index 4g + t
    tile = torch.arange(4).repeat(n_grids)  # (4G,)
    idx = torch.arange(4 * n_grids)
    maps = torch.cat([saliency_fn(grids[idx[i:i + batch_size] // 4], targets[i:i + batch_size])
                      for i in range(0, 4 * n_grids, batch_size)])  # (4G, 2H, 2W)
    return {"pointing": pointing_game(maps, tile), "energy": energy_pointing_game(maps, tile)}
