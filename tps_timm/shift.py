"""Temporal shifts of TPS-Swin: the patch pattern, the channel groups and the token gathers built from them.

Everything that moves tokens or channels between frames lives here, defined once:

* ``PATCH_SHIFT_PATTERN``: the 3 x 3 tile of temporal offsets of the patch shift (the paper's pattern C).
* ``CHANNEL_SHIFT_DIV``: channels ``[0, hd/8)`` of every head come from frame ``t-1``, ``[hd/8, 2hd/8)`` from ``t+1``.
* Eager references that follow the authors' code literally (per-tile rolls of a cloned tensor).
* The fused forms the model uses. The patch shift is folded, together with the cyclic window shift and the window
  partition, into one precomputed row permutation (``window_token_index``), so a patch-shift block moves its
  activations exactly as often as a 2D Swin block. Row permutations run as ``index_select`` on a 2D view in both
  directions (``permute_rows``): on CPU that is 2-4x faster than ``index_select`` along dim 1, whose backward is an
  ``index_add``. The channel shift touches only groups 0 and 1 of every head: in the model it is folded into the
  unshifted window partition (``partition_channel_shift``: the gather, then those groups copied from the neighbouring
  frames of the maps), and standing alone it is a copy with those groups rewritten (``channel_shift``); both with an
  explicit adjoint.

All shifts act along dim 1 (frames) of a ``(B, D, ...)`` tensor.
"""
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import torch

__all__ = [
    'PATCH_SHIFT_PATTERN', 'CHANNEL_SHIFT_DIV', 'patch_shift_offsets', 'patch_shift_source_frames',
    'channel_shift', 'partition_channel_shift', 'patch_shift', 'permute_rows', 'channel_shift_reference',
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


# channel groups of these byte widths move as single elements of a dtype this wide
_WIDE_DTYPES = {2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.complex128}


def _shifted_channel_groups(x: torch.Tensor, num_heads: int, wide: bool) -> torch.Tensor:
    """Channel groups 0 and 1 of every head of ``x`` ``(B, D, ..., C)``, as a view ``(B, D, ..., heads, 2, fold)``.

    With ``wide``, where the dtype allows, a group of ``head_dim / 8`` channels is one element of a wider dtype
    (16 bytes for float32): on CPU, copies of strided 16-byte elements run ~1.5x faster than of 4-float slices.
    """
    heads = x.unflatten(-1, (num_heads, -1))
    fold = heads.shape[-1] // CHANNEL_SHIFT_DIV
    width = fold * x.element_size()
    if wide and fold > 1 and width in _WIDE_DTYPES and heads.shape[-1] % fold == 0:
        heads, fold = heads.view(_WIDE_DTYPES[width]), 1
    return heads[..., :2 * fold].unflatten(-1, (2, fold))


def _frame_diagonal(groups: torch.Tensor) -> torch.Tensor:
    """``(B, D - 2, ..., 2, fold)`` view of ``_shifted_channel_groups``: group ``j`` of frame ``t + 2j`` at ``t``.

    Group 0 of frame ``t`` and group 1 of frame ``t + 2`` are what frame ``t + 1`` reads, so one copy between this
    view and frames ``1 .. D-2`` moves both groups of the clip's inner frames.
    """
    size, stride = list(groups.shape), list(groups.stride())
    size[1] -= 2
    stride[-2] += 2 * stride[1]
    return groups.as_strided(size, stride)  # the storage offset stays that of `groups`


def _copy_shifted_channel_groups(dst: torch.Tensor, src: torch.Tensor, num_heads: int, adjoint: bool) -> None:
    """Overwrite channel groups 0 and 1 of ``dst`` with those of ``src`` shifted along frames (dim 1), in place.

    ``dst`` and ``src`` share one logical shape ``(B, D, ..., C)`` and ``dst`` already holds ``src`` in every other
    channel, so that ``dst`` becomes the channel shift of ``src`` (or, with ``adjoint``, its gradient).
    Forward: group 0 of every head reads frame ``t-1`` and group 1 frame ``t+1``; clip ends keep their own values.
    Adjoint: group 0 of frame ``t`` is read by frame ``t+1`` (and by frame 0 itself when ``t = 0``), group 1 by
    frame ``t-1`` (and the last frame by itself).
    """
    if src.shape[1] < 2:
        return  # a single frame keeps all its channels
    wide = not torch.compiler.is_compiling()  # under compile the plain slices fuse into one kernel
    out, x = _shifted_channel_groups(dst, num_heads, wide), _shifted_channel_groups(src, num_heads, wide)
    if not adjoint:
        out[:, 1:-1] = _frame_diagonal(x)
        out[:, :1, ..., 1, :] = x[:, 1:2, ..., 1, :]
        out[:, -1:, ..., 0, :] = x[:, -2:-1, ..., 0, :]
        return
    # two copies: compile cannot functionalize a write through the diagonal's as_strided
    out[:, :-1, ..., 0, :] = x[:, 1:, ..., 0, :]
    out[:, -1:, ..., 0, :] = 0
    out[:, 1:, ..., 1, :] = x[:, :-1, ..., 1, :]
    out[:, :1, ..., 1, :] = 0
    # the clip ends also read themselves: sums, in the real dtype
    out, x = _shifted_channel_groups(dst, num_heads, False), _shifted_channel_groups(src, num_heads, False)
    out[:, :1, ..., 0, :] += x[:, :1, ..., 0, :]
    out[:, -1:, ..., 1, :] += x[:, -1:, ..., 1, :]


class _ChannelShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        ctx.num_heads = num_heads
        out = x.clone(memory_format=torch.contiguous_format)
        _copy_shifted_channel_groups(out, x, num_heads, adjoint=False)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_x = grad.clone(memory_format=torch.contiguous_format)
        _copy_shifted_channel_groups(grad_x, grad, ctx.num_heads, adjoint=True)
        return grad_x, None


@_maybe_compile
def channel_shift(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Channel shift (even blocks) of ``x`` shaped ``(B, D, ..., C)``: a copy, then groups 0 and 1 rewritten.

    Slice copies rather than one gather along frames: the gather and its scatter-add backward are 2-3x slower on
    CPU, and inductor fuses the copies into one kernel under compile. Blocks with unshifted windows fold it into
    their window partition instead (``partition_channel_shift``).
    """
    return _ChannelShift.apply(x, num_heads)


def _tiled_shape(maps_shape: torch.Size, window_size: Tuple[int, int]) -> Tuple[int, ...]:
    """Padded maps ``(B, D, Hp, Wp, C)`` split into windows: ``(B, D, nWh, win_h, nWw, win_w, C)``."""
    batch, num_frames, height, width, channels = maps_shape
    win_h, win_w = window_size
    return batch, num_frames, height // win_h, win_h, width // win_w, win_w, channels


def _windows_as_maps(windows: torch.Tensor, maps_shape: torch.Size, window_size: Tuple[int, int]) -> torch.Tensor:
    """Window-major rows of an unshifted partition, viewed in map order (``_tiled_shape``)."""
    batch, num_frames, win_rows, win_h, win_cols, win_w, channels = _tiled_shape(maps_shape, window_size)
    return windows.view(batch, win_rows, win_cols, num_frames, win_h, win_w, channels).permute(0, 3, 1, 4, 2, 5, 6)


class _PartitionChannelShift(torch.autograd.Function):
    """Unshifted window partition with the channel shift folded in: the block's row gather, then groups 0 and 1 of
    every head copied from the neighbouring frames of the maps. Backward: the reverse gather, then the adjoint."""

    @staticmethod
    def forward(ctx, maps: torch.Tensor, partition: torch.Tensor, reverse: torch.Tensor,
                window_size: Tuple[int, int], num_heads: int) -> torch.Tensor:
        ctx.save_for_backward(reverse)
        ctx.geometry = (maps.shape, window_size, num_heads)
        windows = maps.reshape(-1, maps.shape[-1]).index_select(0, partition)
        _copy_shifted_channel_groups(_windows_as_maps(windows, maps.shape, window_size),
                                     maps.view(_tiled_shape(maps.shape, window_size)), num_heads, adjoint=False)
        return windows

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        reverse, = ctx.saved_tensors
        maps_shape, window_size, num_heads = ctx.geometry
        grad = grad.contiguous()
        grad_maps = grad.index_select(0, reverse)
        _copy_shifted_channel_groups(grad_maps.view(_tiled_shape(maps_shape, window_size)),
                                     _windows_as_maps(grad, maps_shape, window_size), num_heads, adjoint=True)
        return grad_maps.view(maps_shape), None, None, None, None


def partition_channel_shift(
        maps: torch.Tensor,
        index: 'WindowTokenIndex',
        window_size: Tuple[int, int],
        num_heads: int,
) -> torch.Tensor:
    """Channel-shifted windows of padded maps ``(B, D, Hp, Wp, C)`` as rows ``(B * Hp * Wp * D, C)``.

    ``index`` must be the unshifted, window-major partition of these maps (``window_token_index`` with no window
    shift, no patch shift and ``window_major=True``): its windows are then a plain reordering of the maps, so the
    shifted channel groups can be copied straight from the maps and the shift adds no pass of its own.
    """
    return _PartitionChannelShift.apply(maps.contiguous(), index.partition, index.reverse, tuple(window_size),
                                        num_heads)


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
