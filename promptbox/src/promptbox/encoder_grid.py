"""MobileSAM's image encoder on the frame's own shape, not on upstream's 1024x1024 square.

Upstream resizes a frame's longest side to 1024 and pads the rest with zeros: a 640x480 frame becomes 1024x768 of
image and 1024x256 of padding, a quarter of the encoder's work, of its activations, and of the image tokens every
point prompt attends to. TinyViT (MobileSAM's vit_t) has only convolutions and local attention windows, so the
image's own cells get (nearly) the same embedding without the padding: only cells within a window of the padded edge
change. The input is padded to whole cells, a multiple of 16 px (patches of 4 px, halved twice; TinyViT pads its
attention windows itself), and the embedding is a (H/16) x (W/16) grid with the square's geometry: cell (r, c)
covers the same 16 px as before, so prompts keep upstream's coordinates and the decoder takes the square's
positional encoding cut to the grid.
"""

from __future__ import annotations

import math

import torch
from mobile_sam.modeling.tiny_vit_sam import TinyViT

__all__ = ["CELL_PX", "FrameShapedEncoder", "dense_positional_encoding", "embedding_grid", "grid_of", "mbconv_in_bands"]

CELL_PX = 16  # input pixels per embedding cell
# Rows of the first stage's grid per band in mbconv_in_bands: 32 of a 4:3 frame's 192 keeps each expanded band near
# 9 MB.
MBCONV_BAND_ROWS = 32


def embedding_grid(encoder: torch.nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the embedding for a frame resized to `input_size` (H, W, longest side = encoder.img_size).
    Encoders other than TinyViT (SAM's ViT-B/L/H have absolute positional embeddings) keep the full square."""
    side = encoder.img_size // CELL_PX
    if not isinstance(encoder, TinyViT):
        return side, side
    return tuple(min(side, math.ceil(n / CELL_PX)) for n in input_size)  # type: ignore[return-value]


def grid_of(features: torch.Tensor) -> tuple[int, int]:
    """(rows, cols) of an embedding (..., C, rows, cols): the grid it was encoded on."""
    return int(features.shape[-2]), int(features.shape[-1])


class FrameShapedEncoder(torch.nn.Module):
    """TinyViT run on (1, 3, 16*rows, 16*cols) pixels, giving (1, 256, rows, cols) features.

    TinyViT's blocks read their grid size from `input_resolution` attributes fixed at construction; these are set to
    this grid for the call and put back afterwards, so upstream's square path (the `upstream` mode's generator) still
    works on the same module. Not thread-safe: callers serialise inference (the Locator holds a lock).
    """

    def __init__(self, encoder: TinyViT, grid: tuple[int, int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.grid = grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        square = _resolutions(encoder.patches_resolution)
        _set_resolutions(encoder, _resolutions((4 * self.grid[0], 4 * self.grid[1])))
        try:
            x = encoder.patch_embed(pixels)
            layers = list(encoder.layers)
            if x.device.type == "cpu":  # the first stage's MBConvs a band of rows at a time: peak memory
                first = layers.pop(0)
                for block in first.blocks:
                    x = mbconv_in_bands(block, x, MBCONV_BAND_ROWS)
                if first.downsample is not None:
                    x = first.downsample(x)
            for layer in layers:  # on a GPU, every stage whole: memory is not the limit, launches are
                x = layer(x)
            rows, cols = self.grid
            x = x.view(x.shape[0], rows, cols, x.shape[-1]).permute(0, 3, 1, 2)
            return encoder.neck(x)
        finally:
            _set_resolutions(encoder, square)


def mbconv_in_bands(block: torch.nn.Module, x: torch.Tensor, band: int) -> torch.Tensor:
    """TinyViT's MBConv block (1x1 expand x4, 3x3 depthwise, 1x1 project, residual) on `band` rows at a time.

    The first stage runs at a quarter of the input's resolution, where the expanded activations of a 640x480 frame
    are 50 MB each and the whole block peaks about 150 MB above the steady state: the largest transient of the
    pipeline. Every step is per pixel except the depthwise 3x3, which needs one row above and below: each band is
    computed with those rows and cropped, so the output is the block's own (tests/test_proposals.py)."""
    out = torch.empty_like(x)
    height = x.shape[2]
    for top in range(0, height, band):
        bottom = min(height, top + band)
        low, high = max(0, top - 1), min(height, bottom + 1)
        y = block.act2(block.conv2(block.act1(block.conv1(x[:, :, low:high]))))
        y = block.drop_path(block.conv3(y[:, :, top - low : bottom - low]))
        y += x[:, :, top:bottom]
        out[:, :, top:bottom] = block.act3(y)
    return out


def dense_positional_encoding(prompt_encoder: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """(1, C, rows, cols): the square's encoding cut to the grid, so a cell keeps the position it has in the square
    (prompt coordinates are normalised by the square's side too)."""
    return prompt_encoder.get_dense_pe()[:, :, : grid[0], : grid[1]]


def _resolutions(patches: tuple[int, int]) -> list[tuple[int, int]]:
    """Each stage's grid, as TinyViT.__init__ computes it: the patch grid, halved twice, then kept."""
    rows, cols = patches
    stages = [(rows, cols), (rows // 2, cols // 2), (rows // 4, cols // 4)]
    return [*stages, stages[-1]]


def _set_resolutions(encoder: TinyViT, resolutions: list[tuple[int, int]]) -> None:
    for layer, resolution in zip(encoder.layers, resolutions, strict=True):
        layer.input_resolution = resolution
        for block in layer.blocks:
            if hasattr(block, "input_resolution"):  # attention blocks; the first stage's MBConvs have none
                block.input_resolution = resolution
        if layer.downsample is not None:
            layer.downsample.input_resolution = resolution
