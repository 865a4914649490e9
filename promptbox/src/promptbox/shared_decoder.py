"""MobileSAM's mask decoder with the image side shared by every point prompt of a frame.

Upstream's TwoWayTransformer attends each prompt against its own copy of the image embedding. Here what every prompt
shares (SharedImageSide) is computed once a frame and the per-prompt products are folded onto the few prompt tokens;
the modules, weights and order of layers are mobile_sam's own, so the outputs are the library's up to float rounding
(tests/test_proposals.py). proposals.py decodes with it; onnx_runtime.py exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mobile_sam.modeling import Sam
from mobile_sam.modeling.transformer import Attention

from promptbox.encoder_grid import dense_positional_encoding, grid_of


@dataclass
class SharedImageSide:
    """What every point prompt of one frame shares in the two-way transformer: computed once per frame."""

    src: torch.Tensor  # (N, C) image embedding + the no-mask dense embedding, token-major
    pe: torch.Tensor  # (N, C) dense positional encoding
    keys_token_to_image: torch.Tensor  # (heads, N, d) first layer's k_proj(src + pe)
    values_token_to_image: torch.Tensor  # (heads, N, d) first layer's v_proj(src)
    queries_image_to_token: torch.Tensor  # (heads, N, d) first layer's q_proj(src + pe)
    grid: tuple[int, int] = (0, 0)  # (rows, cols) of the N = rows * cols cells; the ONNX graph's copy needs none


def shared_image_side(sam: Sam, features: torch.Tensor) -> SharedImageSide:
    """The image side of one frame's (1, C, rows, cols) embedding that every prompt's decoding shares."""
    prompt_encoder = sam.prompt_encoder
    first = sam.mask_decoder.transformer.layers[0]
    src = features[0].flatten(1).T + prompt_encoder.no_mask_embed.weight  # (N, C): the same for every prompt
    grid = grid_of(features)
    pe = dense_positional_encoding(prompt_encoder, grid)[0].flatten(1).T.contiguous()
    token_to_image, image_to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
    return SharedImageSide(
        src=src.contiguous(),
        pe=pe,
        keys_token_to_image=_split_heads(token_to_image.k_proj(src + pe), token_to_image.num_heads),
        values_token_to_image=_split_heads(token_to_image.v_proj(src), token_to_image.num_heads),
        queries_image_to_token=_split_heads(image_to_token.q_proj(src + pe), image_to_token.num_heads),
        grid=grid,
    )


def two_way_transformer(sam: Sam, shared: SharedImageSide, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mobile_sam's TwoWayTransformer for B prompts against one image, without B copies of the image side.

    Same modules, same weights, same order of layers as TwoWayTransformer.forward. The first layer's image-side
    projections come from `shared`. Once the image side is per prompt (after the first image->token attention),
    the 128-d projections of its 4096 tokens are folded onto the 7 prompt tokens instead ((W^T q).k = q.(W k)),
    so each prompt costs products with 56 = 8 heads x 7 tokens columns, not four 256x128 projections; residual
    adds ride along in the products (baddbmm). Returns (queries (B, T, C), keys (B, N, C)) like the library's.
    """
    transformer = sam.mask_decoder.transformer
    query_pe = tokens
    queries = tokens
    keys = None  # (B, N, C) once the image side differs per prompt
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)

        keys_pe = None if keys is None else keys + shared.pe
        if keys is None:
            attn_out = _token_to_shared_image(layer.cross_attn_token_to_image, queries + query_pe, shared)
        else:
            attn_out = _token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys, keys_pe)
        queries = layer.norm2(queries + attn_out)
        queries = layer.norm3(queries + layer.mlp(queries))

        token_side = queries + query_pe
        attn = layer.cross_attn_image_to_token
        if keys is None:
            weights = _shared_image_to_token_weights(attn, token_side, shared)
            residual = shared.src
        else:
            weights = _image_to_token_weights(attn, keys_pe, token_side)
            residual = keys
        # keys + attn(q=image, k=tokens, v=tokens), out_proj folded into the values: one product per prompt.
        keys = layer.norm4(torch.baddbmm(residual, weights.transpose(1, 2), _values_through_out_proj(attn, queries)))

    final = transformer.final_attn_token_to_image
    attn_out = _token_to_image(final, queries + query_pe, keys, keys + shared.pe)
    queries = transformer.norm_final_attn(queries + attn_out)
    return queries, keys


def _token_to_shared_image(attn: Attention, q: torch.Tensor, shared: SharedImageSide) -> torch.Tensor:
    """Attention(q=tokens (B,T,C), k=v=the shared image side): one (heads, B*T, N) product, no per-prompt keys."""
    b, t, _ = q.shape
    queries = _split_heads(attn.q_proj(q).reshape(b * t, -1), attn.num_heads)  # (h, B*T, d)
    scale = 1.0 / math.sqrt(queries.shape[-1])
    weights = torch.softmax((queries @ shared.keys_token_to_image.transpose(1, 2)) * scale, dim=-1)
    out = weights @ shared.values_token_to_image  # (h, B*T, d)
    return attn.out_proj(out.transpose(0, 1).reshape(b, t, -1))


def _shared_image_to_token_weights(attn: Attention, k: torch.Tensor, shared: SharedImageSide) -> torch.Tensor:
    """(B, h*T, N) attention weights of q=the shared image side over k=each prompt's tokens (softmax over T)."""
    b, t, _ = k.shape
    heads = attn.num_heads
    keys = _split_heads(attn.k_proj(k).reshape(b * t, -1), heads)  # (h, B*T, d)
    scores = keys @ shared.queries_image_to_token.transpose(1, 2)  # (h, B*T, N): N contiguous, cheap softmax
    weights = torch.softmax(scores.view(heads, b, t, -1) / math.sqrt(keys.shape[-1]), dim=-2)
    return weights.transpose(0, 1).reshape(b, heads * t, -1)


def _image_to_token_weights(attn: Attention, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, h*T, N) attention weights of q=the image side (B,N,C) over k=tokens, q_proj folded onto the tokens."""
    b, t, _ = k.shape
    heads = attn.num_heads
    d = attn.internal_dim // heads
    keys = attn.k_proj(k).view(b, t, heads, d).transpose(1, 2) / math.sqrt(d)  # (B, h, T, d)
    folded = (keys @ attn.q_proj.weight.view(heads, d, -1)).reshape(b, heads * t, -1)  # (B, h*T, C)
    bias = (keys @ attn.q_proj.bias.view(heads, d, 1)).reshape(b, heads * t, 1)  # q_proj's bias, per token
    scores = torch.baddbmm(bias, folded, q.transpose(1, 2))  # (B, h*T, N)
    return torch.softmax(scores.view(b, heads, t, -1), dim=-2).view(b, heads * t, -1)


def _token_to_image(attn: Attention, q: torch.Tensor, keys: torch.Tensor, keys_pe: torch.Tensor) -> torch.Tensor:
    """Attention(q=tokens (B,T,C), k=keys_pe, v=keys (B,N,C)) with k_proj/v_proj folded onto the token side.

    scores = (W_k^T q_h).k (k_proj's bias adds the same to every image token: softmax ignores it);
    values: softmax rows sum to 1, so sum_n a_n (W_v x_n + b) = W_v (sum_n a_n x_n) + b.
    """
    b, t, _ = q.shape
    heads = attn.num_heads
    d = attn.internal_dim // heads
    queries = attn.q_proj(q).view(b, t, heads, d).transpose(1, 2) / math.sqrt(d)  # (B, h, T, d)
    folded = (queries @ attn.k_proj.weight.view(heads, d, -1)).reshape(b, heads * t, -1)  # (B, h*T, C)
    weights = torch.softmax(folded @ keys_pe.transpose(1, 2), dim=-1)  # (B, h*T, N)
    mixed = (weights @ keys).view(b, heads, t, -1)  # (B, h, T, C)
    w_v = attn.v_proj.weight.view(heads, d, -1)  # (h, d, C)
    values = (mixed @ w_v.transpose(1, 2)) + attn.v_proj.bias.view(heads, 1, d)  # (B, h, T, d)
    return attn.out_proj(values.transpose(1, 2).reshape(b, t, heads * d))


def _values_through_out_proj(attn: Attention, v: torch.Tensor) -> torch.Tensor:
    """(B, h*T, C): each token's per-head value pushed through its slice of out_proj, so heads need no recombining.

    out_proj's bias is spread over the h*T rows (b/h each): every head's weights sum to 1, so it is added once.
    """
    b, t, _ = v.shape
    heads = attn.num_heads
    d = attn.internal_dim // heads
    values = attn.v_proj(v).view(b, t, heads, d).transpose(1, 2)  # (B, h, T, d)
    w_out = attn.out_proj.weight.view(-1, heads, d).permute(1, 2, 0)  # (h, d, C)
    return (values @ w_out).reshape(b, heads * t, -1) + attn.out_proj.bias / heads


def low_res_masks(decoder, hs: torch.Tensor, keys: torch.Tensor, mask_slice: slice, grid: tuple[int, int]
                   ) -> torch.Tensor:
    """(B, M, 4*rows, 4*cols) mask logits (256x256 for the square), as MaskDecoder.predict_masks computes them, for
    the selected mask tokens only; `keys` (B, rows*cols, C) are the image tokens of a (rows, cols) grid.

    output_upscaling's own modules and weights, in channels-last memory ((B, N, C) keys already are): LayerNorm2d
    is then a plain layer_norm over the last dimension (its weight, bias, eps), and the GELUs run in place, since
    on CPU writing a fresh 8 MB-a-prompt tensor costs more than the arithmetic.
    """
    b, n, c = keys.shape
    conv1, norm, act1, conv2, act2 = decoder.output_upscaling
    x = conv1(keys.transpose(1, 2).view(b, c, *grid)).permute(0, 2, 3, 1).contiguous()  # (B, 2*rows, 2*cols, 64)
    x = F.layer_norm(x, norm.weight.shape, norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
    x = torch.ops.aten.gelu_(x, approximate=act1.approximate)
    x = conv2(x).permute(0, 2, 3, 1)  # (B, 4*rows, 4*cols, 32), contiguous in this order
    x = torch.ops.aten.gelu_(x, approximate=act2.approximate)
    hyper = torch.stack(
        [decoder.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in range(decoder.num_mask_tokens)[mask_slice]],
        dim=1,
    )  # (B, M, 32)
    _, h, w, channels = x.shape
    return (hyper @ x.reshape(b, h * w, channels).transpose(1, 2)).view(b, -1, h, w)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(L, h*d) -> (h, L, d)."""
    return x.view(x.shape[0], heads, -1).transpose(0, 1).contiguous()
