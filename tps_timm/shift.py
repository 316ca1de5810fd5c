"""Temporal shifts of TPS-Swin: the patch pattern, the channel groups and the token gathers built from them.

Everything that moves tokens or channels between frames lives here, defined once:

* ``PATCH_SHIFT_PATTERN``: the 3 x 3 tile of temporal offsets of the patch shift (the paper's pattern C).
* ``CHANNEL_SHIFT_DIV``: channels ``[0, hd/8)`` of every head come from frame ``t-1``, ``[hd/8, 2hd/8)`` from ``t+1``.
* Eager references that follow the authors' code literally (per-tile rolls of a cloned tensor).
* The fused forms the model uses. The patch shift is folded, together with the cyclic window shift and the window
  partition, into one precomputed row permutation (``window_token_index``), so a patch-shift block moves its
  activations exactly as often as a 2D Swin block. Row permutations run as ``index_select`` on a 2D view in both
  directions (``permute_rows``): on CPU that is 2-4x faster than ``index_select`` along dim 1, whose backward is an
  ``index_add``. The channel shift is five slice copies with an explicit adjoint, one pass each way.

All shifts act along dim 1 (frames) of a ``(B, D, ...)`` tensor.
"""
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import torch

__all__ = [
    'PATCH_SHIFT_PATTERN', 'CHANNEL_SHIFT_DIV', 'patch_shift_offsets', 'patch_shift_source_frames',
    'channel_shift', 'patch_shift', 'permute_rows', 'channel_shift_reference',
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
            except Exception:  # no triton / unsupported platform: stay eager
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
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Frame each windowed token is read from, shape ``(D, win_h, win_w)``: ``(t - k) mod D``."""
    offsets = patch_shift_offsets(window_size, device=device)
    frames = torch.arange(num_frames, device=device).view(-1, 1, 1)
    return (frames - offsets) % num_frames


def _inverse_permutation(index: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel(), device=index.device)
    return inverse


class _RowPermutation(torch.autograd.Function):
    """``y = x[index]`` for a permutation ``index`` of the rows; its gradient is the gather by ``inverse``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inverse, = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def permute_rows(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Rows (last dim) of ``x`` reordered by the permutation ``index`` of ``x.shape[:-1].numel()`` rows, flat.

    ``inverse`` must be the inverse permutation: the backward pass is then a gather too, not a scatter-add.
    """
    return _RowPermutation.apply(x.reshape(-1, x.shape[-1]), index, inverse)


def _shift_channel_groups(x: torch.Tensor, num_heads: int, adjoint: bool) -> torch.Tensor:
    """The channel shift of ``x`` ``(B, D, ..., C)`` as slice copies into a new tensor, or its adjoint (the gradient).

    Forward: group 0 of every head reads frame ``t-1`` and group 1 frame ``t+1``, clip ends read themselves.
    Adjoint: group 0 of frame ``t`` is read by frame ``t+1`` (and by frame 0 itself when ``t = 0``), group 1 by
    frame ``t-1`` (and the last frame by itself).
    """
    shape = x.shape
    x = x.reshape(shape[0], shape[1], -1, num_heads, shape[-1] // num_heads)
    fold = x.shape[-1] // CHANNEL_SHIFT_DIV
    g0, g1 = slice(0, fold), slice(fold, 2 * fold)
    out = torch.empty_like(x)
    if not adjoint:
        out[:, 1:, ..., g0] = x[:, :-1, ..., g0]
        out[:, :1, ..., g0] = x[:, :1, ..., g0]
        out[:, :-1, ..., g1] = x[:, 1:, ..., g1]
        out[:, -1:, ..., g1] = x[:, -1:, ..., g1]
    else:
        out[:, :-1, ..., g0] = x[:, 1:, ..., g0]
        out[:, -1:, ..., g0] = 0
        out[:, :1, ..., g0] += x[:, :1, ..., g0]
        out[:, 1:, ..., g1] = x[:, :-1, ..., g1]
        out[:, :1, ..., g1] = 0
        out[:, -1:, ..., g1] += x[:, -1:, ..., g1]
    out[..., 2 * fold:] = x[..., 2 * fold:]
    return out.view(shape)


class _ChannelShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        ctx.num_heads = num_heads
        return _shift_channel_groups(x, num_heads, adjoint=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _shift_channel_groups(grad, ctx.num_heads, adjoint=True), None


@_maybe_compile
def channel_shift(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Channel shift (even blocks) of ``x`` shaped ``(B, D, ..., C)``: one pass over the activations each way.

    Slice copies rather than one gather along frames: the gather and its scatter-add backward are 2-3x slower on
    CPU, and inductor fuses the copies into one kernel under compile.
    """
    return _ChannelShift.apply(x, num_heads)


def patch_shift(x: torch.Tensor, window_size: Tuple[int, int], inverse: bool = False) -> torch.Tensor:
    """Temporal patch shift of windowed tokens ``(B, D, num_windows, win_h * win_w, C)`` as one row permutation."""
    batch, num_frames, num_windows = x.shape[:3]
    # windows stacked vertically form a (nW * win_h, win_w) map whose partition is the identity but for the shift
    index = window_token_index(num_frames, (num_windows * window_size[0], window_size[1]), window_size,
                               shift_patches=True, batch=batch, device=x.device)
    forward, backward = (index.reverse, index.partition) if inverse else (index.partition, index.reverse)
    return permute_rows(x, forward, backward).view(x.shape)


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
    """Row permutations that turn a batch of padded frame maps into attention windows and back.

    partition: ``(B * D * Hp * Wp,)`` into the flattened padded maps ``(B, D, Hp, Wp)``; rolls each map by the window
        shift, partitions it into windows and, for patch-shift blocks, reads each token from its shifted frame.
        Windows are ordered ``(clip, frame, window)``, or ``(clip, window, frame)`` when ``window_major``.
    reverse: the inverse permutation, windows back to the padded maps.
    """
    partition: torch.Tensor
    reverse: torch.Tensor


def _build_window_token_index(
        num_frames: int,
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int],
        shift_patches: bool,
        window_major: bool,
        batch: int,
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
    clips = torch.arange(batch, device=device).view(batch, 1, 1, 1, 1, 1) * num_frames
    partition = (clips + frames) * (pad_h * pad_w) + spatial  # (B, D, nWh, nWw, wh, ww)
    if window_major:
        partition = partition.permute(0, 2, 3, 1, 4, 5)
    partition = partition.flatten()
    return WindowTokenIndex(partition, _inverse_permutation(partition))


_cached_window_token_index = lru_cache(maxsize=256)(_build_window_token_index)


def window_token_index(
        num_frames: int,
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int] = (0, 0),
        shift_patches: bool = False,
        window_major: bool = False,
        batch: int = 1,
        device: Optional[torch.device] = None,
) -> WindowTokenIndex:
    """Window partition / reverse permutations for ``batch`` padded ``(D, Hp, Wp)`` maps, cached in eager mode."""
    args = (num_frames, tuple(feat_size), tuple(window_size), tuple(shift_size), shift_patches, window_major, batch)
    if torch.compiler.is_compiling():
        return _build_window_token_index(*args, device)  # traced once per graph, folded to constants
    return _cached_window_token_index(*args, torch.device(device) if device is not None else None)
