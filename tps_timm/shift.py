"""Temporal shifts of TPS-Swin: the patch pattern, the channel groups and the token gathers built from them.

Everything that moves tokens or channels between frames lives here, defined once:

* ``PATCH_SHIFT_PATTERN``: the 3 x 3 tile of temporal offsets of the patch shift (the paper's pattern C).
* ``CHANNEL_SHIFT_DIV``: channels ``[0, hd/8)`` of every head come from frame ``t-1``, ``[hd/8, 2hd/8)`` from ``t+1``.
* Eager references that follow the authors' code literally (per-tile rolls of a cloned tensor).
* The fused forms the model uses: one gather each. The patch shift is folded, together with padding removal,
  the cyclic window shift and the window partition, into a single precomputed token index
  (``window_token_index``), so a patch-shift block moves its activations exactly as often as a 2D Swin block.

All shifts act along dim 1 (frames) of a ``(B, D, ...)`` tensor.
"""
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import torch

__all__ = [
    'PATCH_SHIFT_PATTERN', 'CHANNEL_SHIFT_DIV', 'patch_shift_offsets', 'patch_shift_source_frames',
    'channel_shift_source_frames', 'channel_shift', 'patch_shift', 'channel_shift_reference',
    'patch_shift_reference', 'WindowTokenIndex', 'window_token_index',
]

# temporal offset k of the token at window position (r, s), by (r mod 3, s mod 3): frame t takes frame t - k
PATCH_SHIFT_PATTERN: Tuple[Tuple[int, int, int], ...] = (
    (-4, 1, 2),
    (-1, 0, 3),
    (-2, -3, 4),
)
CHANNEL_SHIFT_DIV = 8


def _maybe_compile(fn):
    """Compile a pure-tensor op with inductor where that pays off (CUDA with triton); eager elsewhere."""
    compiled = None

    def wrapper(*args, **kwargs):
        nonlocal compiled
        if torch.compiler.is_compiling() or not args[0].is_cuda:
            return fn(*args, **kwargs)  # inside an outer compile, or on CPU where compile time dominates
        if compiled is None:
            try:
                import triton  # noqa: F401
                compiled = torch.compile(fn, dynamic=True)
            except Exception:  # no triton / unsupported platform: the eager op is already one gather
                compiled = fn
        return compiled(*args, **kwargs)

    wrapper.__wrapped__ = fn
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def patch_shift_offsets(window_size: Tuple[int, int], device: Optional[torch.device] = None) -> torch.Tensor:
    """Temporal offset ``k`` of every position of a window, shape ``(win_h, win_w)``."""
    pattern = torch.tensor(PATCH_SHIFT_PATTERN, dtype=torch.long, device=device)
    rows = torch.arange(window_size[0], device=device) % 3
    cols = torch.arange(window_size[1], device=device) % 3
    return pattern[rows[:, None], cols[None, :]]


def patch_shift_source_frames(
        num_frames: int,
        window_size: Tuple[int, int],
        inverse: bool = False,
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Frame each windowed token is read from, shape ``(D, win_h, win_w)``: ``(t - k) mod D`` (``+k`` if inverse)."""
    offsets = patch_shift_offsets(window_size, device=device)
    frames = torch.arange(num_frames, device=device).view(-1, 1, 1)
    return (frames + (offsets if inverse else -offsets)) % num_frames


def channel_shift_source_frames(
        num_frames: int,
        num_heads: int,
        head_dim: int,
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Frame each channel is read from, shape ``(D, heads * head_dim)``; clip ends keep their own values."""
    fold = head_dim // CHANNEL_SHIFT_DIV
    channel = torch.arange(head_dim, device=device)
    step = torch.where(channel < fold, -1, torch.where(channel < 2 * fold, 1, 0)).repeat(num_heads)
    frames = torch.arange(num_frames, device=device).view(-1, 1)
    return (frames + step).clamp(0, num_frames - 1)


@_maybe_compile
def channel_shift(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Channel shift (even blocks) of ``x`` shaped ``(B, D, ..., C)`` as one gather along frames."""
    num_frames, channels = x.shape[1], x.shape[-1]
    src = channel_shift_source_frames(num_frames, num_heads, channels // num_heads, device=x.device)
    src = src.view(1, num_frames, *([1] * (x.ndim - 3)), channels).expand(x.shape)
    return torch.gather(x, 1, src)


@_maybe_compile
def patch_shift(x: torch.Tensor, window_size: Tuple[int, int], inverse: bool = False) -> torch.Tensor:
    """Temporal patch shift of windowed tokens ``(B, D, num_windows, win_h * win_w, C)`` as one gather."""
    batch, num_frames, num_windows, tokens, channels = x.shape
    src = patch_shift_source_frames(num_frames, window_size, inverse, device=x.device).view(num_frames, 1, tokens)
    pos = torch.arange(num_windows * tokens, device=x.device).view(1, num_windows, tokens)
    index = (src * (num_windows * tokens) + pos).flatten()
    return x.reshape(batch, -1, channels).index_select(1, index).view(x.shape)


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
    batch, num_frames, num_windows, _, channels = x.shape
    x = x.view(batch, num_frames, num_windows, window_size[0], window_size[1], channels)
    out = x.clone()
    sign = -1 if inverse else 1
    for r, row in enumerate(PATCH_SHIFT_PATTERN):
        for s, k in enumerate(row):
            out[:, :, :, r::3, s::3] = torch.roll(x[:, :, :, r::3, s::3], shifts=sign * k, dims=1)
    return out.flatten(3, 4)


class WindowTokenIndex(NamedTuple):
    """Gather indices that turn a frame map into attention windows and back.

    partition: ``(D * nW * N,)`` into the flattened padded map ``(D, Hp, Wp)``; rolls the map by the window shift,
        partitions it into windows ordered ``(frame, window row, window col)`` and, for patch-shift blocks,
        reads each token from its shifted frame.
    reverse: ``(D * H * W,)`` into the flattened windows; the exact inverse, padding dropped.
    """
    partition: torch.Tensor
    reverse: torch.Tensor


def _build_window_token_index(
        num_frames: int,
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int],
        shift_patches: bool,
        device: Optional[torch.device],
) -> WindowTokenIndex:
    height, width = feat_size
    win_h, win_w = window_size
    pad_h, pad_w = -(-height // win_h) * win_h, -(-width // win_w) * win_w
    rows = torch.arange(pad_h, device=device).view(pad_h // win_h, 1, win_h, 1)
    cols = torch.arange(pad_w, device=device).view(1, pad_w // win_w, 1, win_w)
    # window token (a, b, r, s) of the rolled map comes from map position ((a*wh + r + sh) % Hp, (b*ww + s + sw) % Wp)
    spatial = ((rows + shift_size[0]) % pad_h) * pad_w + (cols + shift_size[1]) % pad_w  # (nWh, nWw, wh, ww)
    if shift_patches:
        frames = patch_shift_source_frames(num_frames, window_size, device=device).view(num_frames, 1, 1, win_h, win_w)
    else:
        frames = torch.arange(num_frames, device=device).view(num_frames, 1, 1, 1, 1)
    partition = (frames * (pad_h * pad_w) + spatial).flatten()
    inverse = torch.empty_like(partition)
    inverse[partition] = torch.arange(partition.numel(), device=device)
    reverse = inverse.view(num_frames, pad_h, pad_w)[:, :height, :width].flatten()
    return WindowTokenIndex(partition, reverse)


_cached_window_token_index = lru_cache(maxsize=256)(_build_window_token_index)


def window_token_index(
        num_frames: int,
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int] = (0, 0),
        shift_patches: bool = False,
        device: Optional[torch.device] = None,
) -> WindowTokenIndex:
    """Window partition / reverse indices for a ``(D, H, W)`` map, cached per geometry in eager mode."""
    args = (num_frames, tuple(feat_size), tuple(window_size), tuple(shift_size), shift_patches)
    if torch.compiler.is_compiling():
        return _build_window_token_index(*args, device)  # traced once per graph, folded to constants
    return _cached_window_token_index(*args, torch.device(device) if device is not None else None)
