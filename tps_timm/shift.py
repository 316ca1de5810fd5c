"""Temporal shifts of the TPS models: the patch pattern, the channel groups and the token gathers built from them.

Everything that moves tokens or channels between frames lives here, defined once (the literal references that follow
the authors' code, per-tile rolls of a cloned tensor, are test code: ``tests/reference.py``):

* ``PATCH_SHIFT_PATTERN``: the 3 x 3 tile of temporal offsets of the patch shift (the paper's pattern C).
* ``CHANNEL_SHIFT_DIV``: channels ``[0, hd/8)`` of every head come from frame ``t-1``, ``[hd/8, 2hd/8)`` from ``t+1``.
* ``window_token_index``: the per-clip row permutation that rolls a block's padded maps by the window shift, cuts
  them into windows and, for patch-shift blocks, reads each token from its shifted frame, with its inverse. Both are
  closed-form index arithmetic (no scatter), so they build on any device, under ``torch.compile`` and on ``meta``.
* The fused ops the model uses, all plain gathers and slice copies: ``permute_rows`` (a window partition, with the
  patch shift folded in, whose backward is the inverse gather rather than a scatter-add), ``partition_channel_shift``
  (the unshifted partition with the channel shift folded in: the gather, then channel groups 0 and 1 copied from the
  neighbouring frames of the maps) and ``channel_shift`` standing alone; ``token_patch_shift_index`` for TPS-ViT.

Indices are per clip, without a batch dimension; the batch offsets are added when a permutation runs. All shifts act
along dim 1 (temporal tokens) of a ``(B, D, ...)`` tensor.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from timm.layers import register_notrace_function

__all__ = [
    'PATCH_SHIFT_PATTERN', 'CHANNEL_SHIFT_DIV', 'patch_shift_offsets', 'WindowTokenIndex',
    'window_token_index', 'permute_rows', 'channel_shift', 'partition_channel_shift', 'patch_shift',
    'EXPORT_DECOMPOSITIONS', 'token_patch_shift_index',
]

# temporal offset k of the token at window position (r, s), by (r mod 3, s mod 3): token t takes token t - k
PATCH_SHIFT_PATTERN: Tuple[Tuple[int, int, int], ...] = (
    (-4, 1, 2),
    (-1, 0, 3),
    (-2, -3, 4),
)
CHANNEL_SHIFT_DIV = 8


def patch_shift_offsets(window_size: Tuple[int, int], device: Optional[torch.device] = None) -> torch.Tensor:
    """Temporal offset ``k`` of every position of a window, shape ``(win_h, win_w)``."""
    pattern = torch.tensor(PATCH_SHIFT_PATTERN, dtype=torch.long, device=device)
    rows = torch.arange(window_size[0], device=device) % 3
    cols = torch.arange(window_size[1], device=device) % 3
    return pattern[rows[:, None], cols[None, :]]


class WindowTokenIndex(NamedTuple):
    """Row permutations between the padded maps ``(D, Hp, Wp)`` of one clip and its attention windows.

    partition: ``(D * Hp * Wp,)``, the map row that each window row reads. Windows are ordered
        ``(temporal token, window)``, or ``(window, temporal token)`` when window-major.
    reverse: the inverse permutation, windows back to the maps.
    """
    partition: torch.Tensor
    reverse: torch.Tensor


def window_token_index(
        num_temporal_tokens: int,
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int] = (0, 0),
        shift_patches: bool = False,
        window_major: bool = False,
        device: Optional[torch.device] = None,
) -> WindowTokenIndex:
    """Window partition / reverse permutations of one clip's maps, padded from ``feat_size`` to whole windows.

    Window token ``(t, a, b, r, s)`` (temporal token, window row and column, position in the window) reads map position
    ``(t - k(r, s) mod D, (a * wh + r + sh) mod Hp, (b * ww + s + sw) mod Wp)``: Swin's roll by ``-shift`` and the
    partition, with the patch shift's ``k`` when ``shift_patches`` (else ``k = 0``). The reverse inverts each step.
    """
    num_tokens = num_temporal_tokens
    (height, width), (win_h, win_w), (shift_h, shift_w) = feat_size, window_size, shift_size
    pad_h, pad_w = -(-height // win_h) * win_h, -(-width // win_w) * win_w
    nwh, nww = pad_h // win_h, pad_w // win_w
    offsets = patch_shift_offsets(window_size, device) if shift_patches else \
        torch.zeros(win_h, win_w, dtype=torch.long, device=device)

    # partition, indexed (t, a, b, r, s)
    t = torch.arange(num_tokens, device=device).view(-1, 1, 1, 1, 1)
    a = torch.arange(nwh, device=device).view(-1, 1, 1, 1)
    b = torch.arange(nww, device=device).view(-1, 1, 1)
    r = torch.arange(win_h, device=device).view(-1, 1)
    s = torch.arange(win_w, device=device)
    source_t = (t - offsets) % num_tokens
    partition = (source_t * pad_h + (a * win_h + r + shift_h) % pad_h) * pad_w + (b * win_w + s + shift_w) % pad_w
    if window_major:
        partition = partition.permute(1, 2, 0, 3, 4)

    # reverse, indexed by map position (t', h, w): the window row that reads it
    h = (torch.arange(pad_h, device=device) - shift_h) % pad_h  # position in the rolled map
    w = (torch.arange(pad_w, device=device) - shift_w) % pad_w
    a, r = (h // win_h).view(-1, 1), (h % win_h).view(-1, 1)
    b, s = w // win_w, w % win_w
    t = (torch.arange(num_tokens, device=device).view(-1, 1, 1) + offsets[r, s]) % num_tokens  # t - k(r, s) = t'
    if window_major:
        window_row = (a * nww + b) * num_tokens + t
    else:
        window_row = (t * nwh + a) * nww + b
    reverse = (window_row * win_h + r) * win_w + s
    return WindowTokenIndex(partition.flatten(), reverse.flatten())


def _batched(index: torch.Tensor, batch: int) -> torch.Tensor:
    """A per-clip row index for ``batch`` clips stacked along rows."""
    return (torch.arange(batch, device=index.device).unsqueeze(1) * index.numel() + index).flatten()


class _RowPermutation(torch.autograd.Function):
    """``y = x[index]`` per clip for a permutation ``index`` of its rows; the gradient gathers by ``inverse``."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, batch: int) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        ctx.batch = batch
        return rows.index_select(0, _batched(index, batch))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inverse, = ctx.saved_tensors
        return grad.index_select(0, _batched(inverse, ctx.batch)), None, None, None


@torch.fx.wrap
@register_notrace_function  # reason: whether a gradient is needed picks the autograd function or the plain gather
def permute_rows(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Rows of every clip of ``x`` ``(B, ..., C)`` reordered by the per-clip permutation ``index``, as ``(B, L, C)``.

    ``L = index.numel()`` rows per clip. ``inverse`` must be the inverse permutation: the backward pass is then a gather
    too, not a scatter-add. On a 2D view with batch offsets: ``index_select`` along dim 1 is slower on CPU.
    Without a gradient to compute it is the plain gather (no autograd function: inference, ``torch.export``).
    """
    batch, channels = x.shape[0], x.shape[-1]
    rows = x.reshape(-1, channels)
    if torch.is_grad_enabled() and x.requires_grad:
        rows = _RowPermutation.apply(rows, index, inverse, batch)
    else:
        rows = rows.index_select(0, _batched(index, batch))
    return rows.view(batch, index.numel(), channels)


def _channel_groups(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Channel groups 0 and 1 of every head of ``x`` ``(B, D, ..., C)``, as a view ``(B, D, ..., heads, 2, fold)``."""
    heads = x.unflatten(-1, (num_heads, -1))
    fold = heads.shape[-1] // CHANNEL_SHIFT_DIV
    return heads[..., :2 * fold].unflatten(-1, (2, fold))


def _copy_shifted_channel_groups(dst: torch.Tensor, src: torch.Tensor, num_heads: int, adjoint: bool) -> None:
    """Overwrite channel groups 0 and 1 of ``dst`` with those of ``src`` shifted along dim 1, in place.

    ``dst`` and ``src`` share one logical shape ``(B, D, ..., C)`` and ``dst`` already holds ``src``, so that ``dst``
    becomes the channel shift of ``src`` (or, with ``adjoint``, its gradient). Forward: group 0 of every head reads
    token ``t-1`` and group 1 token ``t+1``; the clip ends keep their own values. Adjoint: group 0 of token ``t`` is
    read by ``t+1`` (and by token 0 itself when ``t = 0``), group 1 by ``t-1`` (and the last token by itself).
    """
    if src.shape[1] < 2:
        return  # a single temporal token keeps all its channels
    out, x = _channel_groups(dst, num_heads), _channel_groups(src, num_heads)
    if not adjoint:
        out[:, 1:, ..., 0, :] = x[:, :-1, ..., 0, :]
        out[:, :-1, ..., 1, :] = x[:, 1:, ..., 1, :]
        return
    out[:, :-1, ..., 0, :] = x[:, 1:, ..., 0, :]
    out[:, -1:, ..., 0, :] = 0
    out[:, 1:, ..., 1, :] = x[:, :-1, ..., 1, :]
    out[:, :1, ..., 1, :] = 0
    out[:, :1, ..., 0, :] += x[:, :1, ..., 0, :]  # the clip ends also read themselves
    out[:, -1:, ..., 1, :] += x[:, -1:, ..., 1, :]


@torch.library.custom_op('tps_timm::channel_shift', mutates_args=())
def _channel_shift_op(x: torch.Tensor, num_heads: int, adjoint: bool, fixed_tokens: int) -> torch.Tensor:
    out = x.clone(memory_format=torch.contiguous_format)
    _copy_shifted_channel_groups(out[:, :, fixed_tokens:], x[:, :, fixed_tokens:], num_heads, adjoint)
    return out


@_channel_shift_op.register_fake
def _(x: torch.Tensor, num_heads: int, adjoint: bool, fixed_tokens: int) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _channel_shift_setup(ctx, inputs, output) -> None:
    _, ctx.num_heads, ctx.adjoint, ctx.fixed_tokens = inputs


def _channel_shift_backward(ctx, grad: torch.Tensor):
    return _channel_shift_op(grad, ctx.num_heads, not ctx.adjoint, ctx.fixed_tokens), None, None, None


_channel_shift_op.register_autograd(_channel_shift_backward, setup_context=_channel_shift_setup)


def channel_shift(x: torch.Tensor, num_heads: int, fixed_tokens: int = 0) -> torch.Tensor:
    """Channel shift (even blocks) of ``x`` shaped ``(B, D, N, ..., C)``: a copy, then groups 0 and 1 rewritten.

    The first ``fixed_tokens`` entries of dim 2 keep their channels (a ViT's class and register tokens). Slice copies
    rather than one gather along time, whose scatter-add backward is slower (docs/benchmarks.md). A custom op
    (its backward is the adjoint shift): ``torch.compile`` traces one node instead of functionalising the slice
    writes, the costliest part of tracing a channel-shift block. Blocks with unshifted windows fold it into their
    window partition instead (``partition_channel_shift``).
    """
    return _channel_shift_op(x, num_heads, False, fixed_tokens)


def _tiled_shape(maps_shape: torch.Size, window_size: Tuple[int, int]) -> Tuple[int, ...]:
    """Padded maps ``(B, D, Hp, Wp, C)`` split into windows: ``(B, D, nWh, win_h, nWw, win_w, C)``."""
    batch, num_tokens, height, width, channels = maps_shape
    win_h, win_w = window_size
    return batch, num_tokens, height // win_h, win_h, width // win_w, win_w, channels


def _windows_as_maps(windows: torch.Tensor, maps_shape: torch.Size, window_size: Tuple[int, int]) -> torch.Tensor:
    """Window-major rows of an unshifted partition, viewed in map order (``_tiled_shape``)."""
    batch, num_tokens, win_rows, win_h, win_cols, win_w, channels = _tiled_shape(maps_shape, window_size)
    return windows.view(batch, win_rows, win_cols, num_tokens, win_h, win_w, channels).permute(0, 3, 1, 4, 2, 5, 6)


@torch.library.custom_op('tps_timm::partition_channel_shift', mutates_args=())
def _partition_channel_shift_op(maps: torch.Tensor, partition: torch.Tensor, reverse: torch.Tensor,
                                window_size: Sequence[int], num_heads: int) -> torch.Tensor:
    """Unshifted window partition with the channel shift folded in: the block's row gather, then groups 0 and 1 of
    every head copied from the neighbouring frames of the maps. ``reverse`` serves the backward pass."""
    maps = maps.contiguous()
    windows = maps.reshape(-1, maps.shape[-1]).index_select(0, _batched(partition, maps.shape[0]))
    _copy_shifted_channel_groups(_windows_as_maps(windows, maps.shape, window_size),
                                 maps.view(_tiled_shape(maps.shape, window_size)), num_heads, adjoint=False)
    return windows.view(maps.shape[0], -1, maps.shape[-1])


@_partition_channel_shift_op.register_fake
def _(maps: torch.Tensor, partition: torch.Tensor, reverse: torch.Tensor, window_size: Sequence[int],
      num_heads: int) -> torch.Tensor:
    return maps.new_empty(maps.shape[0], partition.shape[0], maps.shape[-1])


@torch.library.custom_op('tps_timm::partition_channel_shift_backward', mutates_args=())
def _partition_channel_shift_backward_op(grad: torch.Tensor, reverse: torch.Tensor, maps_shape: Sequence[int],
                                         window_size: Sequence[int], num_heads: int) -> torch.Tensor:
    """Gradient of ``partition_channel_shift``: the reverse gather, then the channel shift's adjoint."""
    grad = grad.contiguous().view(-1, grad.shape[-1])
    grad_maps = grad.index_select(0, _batched(reverse, maps_shape[0]))
    _copy_shifted_channel_groups(grad_maps.view(_tiled_shape(maps_shape, window_size)),
                                 _windows_as_maps(grad, maps_shape, window_size), num_heads, adjoint=True)
    return grad_maps.view(maps_shape)


@_partition_channel_shift_backward_op.register_fake
def _(grad: torch.Tensor, reverse: torch.Tensor, maps_shape: Sequence[int], window_size: Sequence[int],
      num_heads: int) -> torch.Tensor:
    return grad.new_empty(maps_shape)


def _partition_channel_shift_setup(ctx, inputs, output) -> None:
    maps, _, reverse, ctx.window_size, ctx.num_heads = inputs
    ctx.maps_shape = maps.shape
    ctx.save_for_backward(reverse)


def _partition_channel_shift_backward(ctx, grad: torch.Tensor):
    reverse, = ctx.saved_tensors
    grad_maps = _partition_channel_shift_backward_op(grad, reverse, ctx.maps_shape, ctx.window_size, ctx.num_heads)
    return grad_maps, None, None, None, None


_partition_channel_shift_op.register_autograd(_partition_channel_shift_backward,
                                              setup_context=_partition_channel_shift_setup)


def partition_channel_shift(
        maps: torch.Tensor,
        partition: torch.Tensor,
        reverse: torch.Tensor,
        window_size: Tuple[int, int],
        num_heads: int,
) -> torch.Tensor:
    """Channel-shifted windows of padded maps ``(B, D, Hp, Wp, C)`` as rows ``(B, D * Hp * Wp, C)``.

    ``partition`` / ``reverse`` must be the unshifted, window-major partition of these maps (``window_token_index``
    with no window shift, no patch shift and ``window_major=True``): its windows are then a plain reordering of the
    maps, so the shifted channel groups can be copied straight from the maps and the shift adds no pass of its own.
    A custom op, like ``channel_shift``.
    """
    return _partition_channel_shift_op(maps, partition, reverse, tuple(window_size), num_heads)


def _channel_shift_decomposition(x: torch.Tensor, num_heads: int, adjoint: bool = False,
                                 fixed_tokens: int = 0) -> torch.Tensor:
    """The channel shift as concatenated slices, no writes: the form an exported graph can hold."""
    if adjoint:
        raise NotImplementedError('the adjoint channel shift appears only in backward graphs, which are not exported')
    if fixed_tokens:
        return torch.cat([x[:, :, :fixed_tokens], _channel_shift_decomposition(x[:, :, fixed_tokens:], num_heads)], 2)
    heads = x.unflatten(-1, (num_heads, -1))
    fold = heads.shape[-1] // CHANNEL_SHIFT_DIV
    if x.shape[1] < 2 or fold == 0:
        return x.clone()
    previous = torch.cat([heads[:, :1, ..., :fold], heads[:, :-1, ..., :fold]], dim=1)
    following = torch.cat([heads[:, 1:, ..., fold:2 * fold], heads[:, -1:, ..., fold:2 * fold]], dim=1)
    return torch.cat([previous, following, heads[..., 2 * fold:]], dim=-1).flatten(-2)


def _partition_channel_shift_decomposition(maps: torch.Tensor, partition: torch.Tensor, reverse: torch.Tensor,
                                           window_size: Sequence[int], num_heads: int) -> torch.Tensor:
    return permute_rows(_channel_shift_decomposition(maps, num_heads), partition, reverse)


# the shifts' custom ops as plain tensor ops (concatenated slices and a gather), for exported programs:
# `ExportedProgram.run_decompositions(EXPORT_DECOMPOSITIONS)` leaves only core ATen ops, which ONNX and others know
EXPORT_DECOMPOSITIONS = {
    torch.ops.tps_timm.channel_shift.default: _channel_shift_decomposition,
    torch.ops.tps_timm.partition_channel_shift.default: _partition_channel_shift_decomposition,
}


def token_patch_shift_index(
        num_temporal_tokens: int,
        grid_size: Tuple[int, int],
        num_prefix_tokens: int = 0,
        device: Optional[torch.device] = None,
) -> WindowTokenIndex:
    """Patch-shift permutation of one clip's ViT tokens ``(D, P + h * w)`` and its inverse.

    Patch token ``(t, i, j)`` of the grid reads the token at the same position in ``t - k(i mod 3, j mod 3) mod D``,
    the patch shift with the whole grid as one window; the ``P`` prefix tokens (class, register) stay.
    """
    height, width = grid_size
    tokens = num_prefix_tokens + height * width
    patches = window_token_index(num_temporal_tokens, grid_size, grid_size, shift_patches=True, device=device)

    def with_prefix(index: torch.Tensor) -> torch.Tensor:  # patch indices (D, h*w) -> token indices (D, P + h*w)
        index = index.view(num_temporal_tokens, -1)
        patch_rows = index // (height * width) * tokens + index % (height * width) + num_prefix_tokens
        prefix_rows = torch.arange(num_temporal_tokens, device=device).view(-1, 1) * tokens + \
            torch.arange(num_prefix_tokens, device=device)
        return torch.cat([prefix_rows, patch_rows], 1).flatten()

    return WindowTokenIndex(with_prefix(patches.partition), with_prefix(patches.reverse))


def patch_shift(x: torch.Tensor, window_size: Tuple[int, int], inverse: bool = False) -> torch.Tensor:
    """Temporal patch shift of windowed tokens ``(B, D, num_windows, win_h * win_w, C)`` as one row permutation."""
    num_tokens, num_windows = x.shape[1:3]
    # windows stacked vertically form a (nW * win_h, win_w) map whose partition is the identity but for the shift
    index = window_token_index(num_tokens, (num_windows * window_size[0], window_size[1]), window_size,
                               shift_patches=True, device=x.device)
    forward, backward = (index.reverse, index.partition) if inverse else (index.partition, index.reverse)
    return permute_rows(x, forward, backward).view(x.shape)
