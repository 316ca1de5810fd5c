"""Literal, slow references written from shared/TPS_SPEC.md, for checking the fused code: the two temporal shifts as
the authors write them, and a TPS-Swin attention branch built from them (benchmarks/bench.py times them too).

Each step is done the plain way: pad, roll, partition with view/permute, per-tile rolls, the bias row from the spec
formula in Python loops, Swin's mask built from slices, explicit softmax, inverse shift, merge, roll back, crop.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from tps_timm.shift import CHANNEL_SHIFT_DIV, PATCH_SHIFT_PATTERN


def channel_shift_reference(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Channel shift written as the authors do: clone, then two sliced copies per head."""
    shape = x.shape
    x = x.reshape(*shape[:-1], num_heads, shape[-1] // num_heads)
    fold = x.shape[-1] // CHANNEL_SHIFT_DIV
    out = x.clone()
    out[:, 1:, ..., :fold] = x[:, :-1, ..., :fold]
    out[:, :-1, ..., fold:2 * fold] = x[:, 1:, ..., fold:2 * fold]
    return out.reshape(shape)


def patch_shift_reference(x: torch.Tensor, window_size: Tuple[int, int], inverse: bool = False) -> torch.Tensor:
    """Patch shift written as the authors do: clone, then one roll per 3 x 3 tile position.

    ``x`` is ``(B, D, num_windows, win_h * win_w, C)``.
    """
    batch, num_tokens, num_windows, _, channels = x.shape
    x = x.view(batch, num_tokens, num_windows, window_size[0], window_size[1], channels)
    out = x.clone()
    sign = -1 if inverse else 1
    for r, row in enumerate(PATCH_SHIFT_PATTERN):
        for s, k in enumerate(row):
            out[:, :, :, r::3, s::3] = torch.roll(x[:, :, :, r::3, s::3], shifts=sign * k, dims=1)
    return out.flatten(3, 4)


def spec_bias_rows(num_frames, win, table=(16, 7, 7), kind='patch'):
    """Bias rows (D, N, N) from the spec formula, loop by loop."""
    dt_ext, th, tw = table
    n = win[0] * win[1]
    rows = torch.empty(num_frames, n, n, dtype=torch.long)
    for i in range(num_frames):
        for p in range(n):
            rp, sp = divmod(p, win[1])
            kp = PATCH_SHIFT_PATTERN[rp % 3][sp % 3]
            for q in range(n):
                rq, sq = divmod(q, win[1])
                kq = PATCH_SHIFT_PATTERN[rq % 3][sq % 3]
                if kind == 'patch':
                    dt = ((i - kp) % num_frames) - ((-kq) % num_frames)
                elif kind == 'channel':
                    dt = i
                else:
                    dt = 0
                row = (dt + dt_ext - 1) * (2 * th - 1) + (rp - rq + th - 1)
                rows[i, p, q] = row * (2 * tw - 1) + (sp - sq + tw - 1)
    return rows


def swin_mask(hp, wp, win, shift):
    img = torch.zeros(hp, wp)
    cnt = 0
    for h in (slice(0, -win[0]), slice(-win[0], -shift[0]), slice(-shift[0], None)):
        for w in (slice(0, -win[1]), slice(-win[1], -shift[1]), slice(-shift[1], None)):
            img[h, w] = cnt
            cnt += 1
    m = img.view(hp // win[0], win[0], wp // win[1], win[1]).permute(0, 2, 1, 3).reshape(-1, win[0] * win[1])
    m = m[:, None, :] - m[:, :, None]
    return m.masked_fill(m != 0, -100.0)


def reference_attn_branch(block, x, model_attention=False, normed=False):
    """norm1 -> shifts -> window attention -> inverse shift -> merge, for x (B, D, H, W, C).

    ``model_attention`` swaps the loop-built bias and explicit softmax for the block's own attention module (SDPA,
    cached bias): benchmarks/bench.py times the literal shifts that way. ``normed``: x is already normalised.
    """
    B, D, H, W, C = x.shape
    heads = block.num_heads
    win = tuple(min(s, w) for s, w in zip((H, W), block.window_size))
    shift = tuple(w // 2 if block.shift_window and s > w else 0 for s, w in zip((H, W), block.window_size))
    x = x if normed else block.norm1(x)
    pad_h, pad_w = (-H) % win[0], (-W) % win[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    if any(shift):
        x = torch.roll(x, (-shift[0], -shift[1]), (2, 3))
    nh, nw = Hp // win[0], Wp // win[1]
    win_x = x.view(B, D, nh, win[0], nw, win[1], C).permute(0, 1, 2, 4, 3, 5, 6).reshape(B, D, nh * nw, -1, C)
    if block.temporal_shift == 'patch':
        win_x = patch_shift_reference(win_x, win)
    elif block.temporal_shift == 'channel':
        win_x = channel_shift_reference(win_x, heads)
    N = win[0] * win[1]
    attn_mod = block.attn
    if model_attention:
        return _model_attention(block, win_x, B, D, H, W, Hp, Wp, win, shift)
    qkv = attn_mod.qkv(win_x).view(B, D, nh * nw, N, 3, heads, C // heads).permute(4, 0, 1, 2, 5, 3, 6)
    q, k, v = qkv[0], qkv[1], qkv[2]  # B, D, nW, heads, N, hd
    attn = (q * attn_mod.scale) @ k.transpose(-2, -1)
    rows = spec_bias_rows(D, win, attn_mod.table_size, block.temporal_shift)
    bias = attn_mod.relative_position_bias_table[rows.flatten()].view(D, N, N, heads).permute(0, 3, 1, 2)
    attn = attn + bias[None, :, None]
    if any(shift):
        attn = attn + swin_mask(Hp, Wp, win, shift)[None, None, :, None]
    out = attn.softmax(-1) @ v  # B, D, nW, heads, N, hd
    out = out.transpose(3, 4).reshape(B, D, nh * nw, N, C)
    if block.temporal_shift == 'patch':
        out = patch_shift_reference(out, win, inverse=True)
    out = attn_mod.proj(out)
    return _merge(out, B, D, H, W, Hp, Wp, win, shift)


def _merge(out, B, D, H, W, Hp, Wp, win, shift):
    nh, nw, C = Hp // win[0], Wp // win[1], out.shape[-1]
    out = out.view(B, D, nh, nw, win[0], win[1], C).permute(0, 1, 2, 4, 3, 5, 6).reshape(B, D, Hp, Wp, C)
    if any(shift):
        out = torch.roll(out, shift, (2, 3))
    return out[:, :, :H, :W]


def _model_attention(block, win_x, B, D, H, W, Hp, Wp, win, shift):
    from tps_timm.tps_swin import relative_position_index, shifted_window_mask
    num_windows = win_x.shape[2]
    table = (block.max_temporal_tokens, *block.window_size)
    bias_index = relative_position_index(D, win, table, block.temporal_shift, win_x.device)
    mask = shifted_window_mask((H, W), win, shift, win_x.device) if any(shift) else None
    bias = block.attn.attn_bias(bias_index, mask, num_windows)
    if mask is None:  # the bias is per frame only, shared by all windows: (B * nW, D) groups
        out = block.attn(win_x.transpose(1, 2).flatten(0, 1), bias)
        out = out.view(B, num_windows, D, -1, win_x.shape[-1]).transpose(1, 2)
    else:
        out = block.attn(win_x.flatten(1, 2), bias).view(B, D, num_windows, -1, win_x.shape[-1])
    if block.temporal_shift == 'patch':
        out = patch_shift_reference(out, win, inverse=True)
    return _merge(out, B, D, H, W, Hp, Wp, win, shift)


def reference_block(block, x):
    x = x + reference_attn_branch(block, x)
    return x + block.mlp(block.norm2(x))
