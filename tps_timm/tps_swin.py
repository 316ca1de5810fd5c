"""TPS-Swin: Swin Transformer with Temporal Patch Shift for video action recognition.

A timm implementation of
``Spatiotemporal Self-attention Modeling with Temporal Patch Shift for Action Recognition`` (Xiang et al., ECCV 2022,
https://arxiv.org/abs/2207.13259), numerically equal to the authors' mmaction2 backbone
(``SwinTransformer2D_TPS``) at 32 frames and 7 x 7 windows, and defined for any clip length and frame size.

Layout follows timm's ``swin_transformer.py``: patch merging at the start of stages 1-3, channels-last features
``(B, D, H, W, C)`` (``output_fmt = 'NDHWC'``), ``head.fc`` classifier. Blocks alternate a channel shift (even) and a
temporal patch shift with shifted windows (odd); both are index gathers from ``tps_timm.shift``. Each block keeps its
window layout (the partition permutations, the bias rows and Swin's mask) for the model's input size as non-persistent
buffers, and builds it per call for other sizes (logged once per size).

The steps that read the clip's size in Python (input check, padding, the window layout and what follows from it) are
FX leaves, so that ``torch.fx.symbolic_trace`` and timm's ``feature_cls='fx'`` trace the model.

Names: ``T`` clip frames (``num_frames``), ``D = ceil(T / patch_t)`` temporal tokens (``num_temporal_tokens``).
"""
import logging
import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, Format, Mlp, register_notrace_function, resize_rel_pos_bias_table, \
    to_2tuple, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from .layers import TEMPORAL_MIXING, DropPath, check_video_input, log_uncached_size, pad_to_multiple, \
    video_feature_cfg
from .pretrained import HUB_ORG, VIDEO_DATASETS, VideoPretrainedCfg, pretrained_load_errors, record_input_size, \
    resolve_video_pretrained_cfg
from .registry import register_model_aliases
from .shift import channel_shift, partition_channel_shift, patch_shift_offsets, permute_rows, window_token_index

__all__ = ['TpsSwinTransformer', 'checkpoint_filter_fn', 'TEMPORAL_MIXING', 'WindowLayout', 'window_layout']

_logger = logging.getLogger(__name__)

torch.fx.wrap('check_video_input')  # FX leaves by the names this module calls them (see tps_timm.layers)
torch.fx.wrap('pad_to_multiple')
torch.fx.wrap('rearrange')

MASK_VALUE = -100.0  # Swin's value between tokens of different regions of a shifted window


# ---------------------------------------------------------------------------------------------------------------------
# window math: small pure functions of the geometry

def window_and_shift_size(
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_window: bool,
) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Window clamped to the map, and the window shift (half a window) only along sides the window does not cover."""
    window = tuple(min(s, w) for s, w in zip(feat_size, window_size))
    shift = tuple(w // 2 if shift_window and s > w else 0 for s, w in zip(feat_size, window_size))
    return window, shift


def relative_position_index(
        num_temporal_tokens: int,
        window_size: Tuple[int, int],
        table_size: Tuple[int, int, int],
        shift: str,
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Row of the bias table for every (temporal token, query, key) of a window, shape ``(D, N, N)``.

    ``row = ((dt + Dt - 1) * (2Wh - 1) + rp - rq + Wh - 1) * (2Ww - 1) + sp - sq + Ww - 1`` with the table's extents
    ``(Dt, Wh, Ww)``. Like the reference, ``dt`` compares the query's token with token 0: ``dt = i`` for channel-shift
    blocks, ``dt = ((i - k_p) mod D) - ((-k_q) mod D)`` for patch-shift blocks (``k`` from the shift pattern), and
    ``dt = 0`` without temporal mixing (a per-frame 2D Swin).
    """
    table_tokens, table_h, table_w = table_size
    win_h, win_w = window_size
    rows = torch.arange(win_h, device=device).repeat_interleave(win_w)
    cols = torch.arange(win_w, device=device).repeat(win_h)
    tokens = torch.arange(num_temporal_tokens, device=device).view(-1, 1, 1)
    if shift == 'patch':
        k = patch_shift_offsets(window_size, device=device).flatten()
        dt = (tokens - k.view(1, -1, 1)) % num_temporal_tokens - (-k.view(1, 1, -1)) % num_temporal_tokens
    elif shift == 'channel':
        dt = tokens.expand(-1, win_h * win_w, win_h * win_w)
    else:
        dt = torch.zeros(num_temporal_tokens, win_h * win_w, win_h * win_w, dtype=torch.long, device=device)
    dr = (rows[:, None] - rows[None, :] + table_h - 1).unsqueeze(0)
    ds = (cols[:, None] - cols[None, :] + table_w - 1).unsqueeze(0)
    return ((dt + table_tokens - 1) * (2 * table_h - 1) + dr) * (2 * table_w - 1) + ds


def shifted_window_mask(
        feat_size: Tuple[int, int],
        window_size: Tuple[int, int],
        shift_size: Tuple[int, int],
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Swin's mask ``(num_windows, N, N)`` for the padded map rolled by ``shift_size``: -100 across regions."""
    pad_h, pad_w = (-(-s // w) * w for s, w in zip(feat_size, window_size))

    def regions(size: int, window: int, shift: int) -> torch.Tensor:  # 0, 1, 2 along one side of the rolled map
        position = torch.arange(size, device=device)
        return (position >= size - window).long() + (position >= size - shift).long()

    region = regions(pad_h, window_size[0], shift_size[0])[:, None] * 3 + regions(pad_w, window_size[1], shift_size[1])
    # regions are laid out in the rolled map's coordinates, so the windows are read without a further roll
    index = window_token_index(1, feat_size, window_size, device=device).partition
    region = region.flatten()[index].view(-1, window_size[0] * window_size[1])
    return (region[:, :, None] != region[:, None, :]).float() * MASK_VALUE


class WindowLayout(NamedTuple):
    """How a block turns the padded maps ``(D, Hp, Wp)`` of a clip into attention windows and back.

    partition_index: ``(D * Hp * Wp,)`` map row read by each window row (window shift and patch shift folded in).
    reverse_index: its inverse permutation.
    relative_position_index: ``(D, N, N)`` bias-table rows.
    attn_mask: Swin's shifted-window mask ``(nW, N, N)``, or None for unshifted windows.
    """
    partition_index: Optional[torch.Tensor]
    reverse_index: Optional[torch.Tensor]
    relative_position_index: Optional[torch.Tensor]
    attn_mask: Optional[torch.Tensor]


def window_layout(
        feat_size: Tuple[int, int, int],
        window_size: Tuple[int, int],
        shift_window: bool,
        temporal_shift: str,
        table_size: Tuple[int, int, int],
        device: Optional[torch.device] = None,
) -> WindowLayout:
    """The window layout of one clip with ``feat_size = (D, H, W)`` for a block of this kind; no batch dimension.

    Unshifted windows are ordered window-major, so that one per-token bias serves every window; shifted windows
    (with a per-window mask) token-major. ``table_size`` extents below the clip's are stretched to it: the block then
    resamples its bias table along time (``resample_bias_table``).
    """
    num_tokens, height, width = feat_size
    window, shift = window_and_shift_size((height, width), window_size, shift_window)
    table_size = (max(table_size[0], num_tokens), *table_size[1:])
    index = window_token_index(num_tokens, (height, width), window, shift, temporal_shift == 'patch',
                               window_major=not any(shift), device=device)
    mask = shifted_window_mask((height, width), window, shift, device) if any(shift) else None
    return WindowLayout(index.partition, index.reverse,
                        relative_position_index(num_tokens, window, table_size, temporal_shift, device), mask)


def resample_bias_table(table: torch.Tensor, spatial: int, num_tokens: int) -> torch.Tensor:
    """A TPS bias table ``((2Dt - 1) * spatial, heads)`` resampled linearly along time to ``num_tokens`` tokens.

    Used when loading a checkpoint with another temporal extent and, at run time, for clips longer than the table
    (as timm resizes position tables); the ends and ``dt = 0`` keep their values.
    """
    stored = table.shape[0] // spatial
    heads = table.shape[1]
    if stored == 2 * num_tokens - 1:
        return table
    table = table.reshape(stored, spatial * heads).t().unsqueeze(0)
    table = F.interpolate(table, size=2 * num_tokens - 1, mode='linear', align_corners=True)
    return table.squeeze(0).t().reshape(-1, heads)


@torch.fx.wrap
@register_notrace_function  # reason: the clip's temporal extent decides whether the table is resampled
def _attn_bias(
        table: torch.Tensor,
        table_size: Tuple[int, int, int],
        bias_index: torch.Tensor,
        window_mask: Optional[torch.Tensor],
        num_windows: Optional[int],
) -> torch.Tensor:
    """``WindowAttention.attn_bias`` on its bias table ``table`` of extents ``table_size``."""
    num_tokens, tokens, _ = bias_index.shape
    if num_tokens > table_size[0]:
        table = resample_bias_table(table, (2 * table_size[1] - 1) * (2 * table_size[2] - 1), num_tokens)
    bias = table[bias_index.flatten()].view(num_tokens, tokens, tokens, -1)
    bias = bias.permute(0, 3, 1, 2)  # D, heads, N, N
    if window_mask is not None:
        num_windows = window_mask.shape[0] if num_windows is None else num_windows
        bias = bias.unsqueeze(1) + window_mask.to(bias.dtype).view(1, num_windows, 1, tokens, tokens)
    return bias.reshape(-1, tokens, tokens)


@torch.fx.wrap
@register_notrace_function  # reason: the kernel depends on the device and on whether the bias needs a gradient
def _window_attention(qkv: torch.Tensor, attn_bias: torch.Tensor, fused: bool, scale: float,
                      dropout_p: float) -> torch.Tensor:
    """Softmax attention of ``qkv`` ``(3, B', G, heads, N, hd)`` with the additive bias ``(G * heads, N, N)``, as
    ``(B', G, heads, N, hd)``."""
    _, batch, groups, heads, tokens, _ = qkv.shape
    # CPU SDPA has no fused kernel for a mask that needs a gradient; its math fallback adds a safe-softmax pass
    if fused and not (qkv.device.type == 'cpu' and attn_bias.requires_grad):
        q, k, v = qkv.reshape(3, batch, groups * heads, tokens, -1).unbind(0)  # SDPA wants 4D
        # a 4D mask: with a 3D one CPU SDPA falls back to its math kernel (2x slower than its fused one)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.unsqueeze(0), dropout_p=dropout_p)
        return x.view(batch, groups, heads, tokens, -1)
    # views (B', G, heads, N, hd): autograd then keeps copies of k and v only, not of the unscaled q too
    q, k, v = qkv.unbind(0)
    attn = (q * scale) @ k.transpose(-2, -1) + attn_bias.view(groups, heads, tokens, tokens)
    attn = attn.softmax(dim=-1)
    if dropout_p:
        attn = F.dropout(attn, dropout_p)
    return attn @ v


# ---------------------------------------------------------------------------------------------------------------------
# model

class WindowAttention(nn.Module):
    """Multi-head self-attention inside one-frame windows, with a relative position bias indexed across frames."""
    fused_attn: torch.jit.Final[bool]

    def __init__(
            self,
            dim: int,
            num_heads: int,
            table_size: Tuple[int, int, int] = (16, 7, 7),
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ):
        """
        Args:
            dim: Number of input channels.
            num_heads: Number of attention heads.
            table_size: Temporal and spatial extents (Dt, Wh, Ww) covered by the relative position bias table.
            qkv_bias: If True, add a learnable bias to query, key, value.
            attn_drop: Dropout ratio of attention weights.
            proj_drop: Dropout ratio of the output.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.dim = dim
        self.num_heads = num_heads
        self.table_size = table_size
        self.scale = (dim // num_heads) ** -0.5
        self.fused_attn = use_fused_attn()
        dt, wh, ww = table_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * dt - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=.02)

    def attn_bias(
            self,
            bias_index: torch.Tensor,
            window_mask: Optional[torch.Tensor] = None,
            num_windows: Optional[int] = None,
    ) -> torch.Tensor:
        """Additive attention bias, shared by the batch.

        Without a window mask: ``(D * heads, N, N)``, the same for every window (windows ordered window-major).
        With one (``(nW, N, N)``; ``num_windows`` defaults to its length): ``(D * nW * heads, N, N)``, for windows
        ordered token-major. A clip with more temporal tokens than the table covers reads a table resampled along
        time (``bias_index`` was built for its extent).
        """
        return _attn_bias(self.relative_position_bias_table, self.table_size, bias_index, window_mask, num_windows)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: Windowed tokens ``(B', G, N, C)``: ``B'`` runs of ``G`` windows; window ``g`` of a run takes bias ``g``.
            attn_bias: Additive bias ``(G * heads, N, N)``, broadcast over ``B'``.

        Returns:
            Attended tokens ``(B' * G * N, C)``.
        """
        batch, groups, tokens, channels = x.shape
        qkv = self.qkv(x).view(batch, groups, tokens, 3, self.num_heads, -1).permute(3, 0, 1, 4, 2, 5)
        x = _window_attention(qkv, attn_bias.to(qkv.dtype), self.fused_attn, self.scale,
                              self.attn_drop.p if self.training else 0.)
        x = x.transpose(2, 3).reshape(-1, channels)
        return self.proj_drop(self.proj(x))


class TpsSwinTransformerBlock(nn.Module):
    """TPS-Swin block: window attention with a temporal shift on its input, then an MLP."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            feat_size: Optional[Tuple[int, int, int]] = None,
            window_size: Tuple[int, int] = (7, 7),
            shift_window: bool = False,
            temporal_shift: str = 'channel',
            max_temporal_tokens: int = 16,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            act_layer: Type[nn.Module] = nn.GELU,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
    ):
        """
        Args:
            dim: Number of input channels.
            num_heads: Number of attention heads.
            feat_size: Maps ``(D, H, W)`` whose window layout is kept as buffers (None: built per call).
            window_size: Spatial window size (clamped to smaller feature maps).
            shift_window: Shift windows by half a window (Swin's SW-MSA).
            temporal_shift: 'channel', 'patch' or 'none'.
            max_temporal_tokens: Temporal extent of the relative position bias table.
            mlp_ratio: Ratio of mlp hidden dim to embedding dim.
            qkv_bias: If True, add a learnable bias to query, key, value.
            proj_drop: Dropout rate after projections.
            attn_drop: Attention dropout rate.
            drop_path: Stochastic depth rate.
            act_layer: Activation layer.
            norm_layer: Normalization layer.
        """
        super().__init__()
        if temporal_shift not in ('channel', 'patch', 'none'):
            raise ValueError(f"temporal_shift must be 'channel', 'patch' or 'none', got {temporal_shift!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = to_2tuple(window_size)
        self.shift_window = shift_window
        self.temporal_shift = temporal_shift
        self.max_temporal_tokens = max_temporal_tokens
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim,
            num_heads=num_heads,
            table_size=(max_temporal_tokens, *self.window_size),
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.set_input_size(feat_size)

    def build_layout(self, feat_size: Tuple[int, int, int], device: Optional[torch.device] = None) -> WindowLayout:
        """This block's window layout for maps ``(D, H, W)``."""
        return window_layout(feat_size, self.window_size, self.shift_window, self.temporal_shift,
                             self.attn.table_size, device)

    def init_non_persistent_buffers(self) -> None:
        """Rebuild the layout buffers (e.g. after ``to_empty`` from the meta device); timm calls this."""
        self.set_input_size(self.feat_size)

    def set_input_size(self, feat_size: Optional[Tuple[int, int, int]]) -> None:
        """Keep the window layout for maps ``(D, H, W)`` as non-persistent buffers (None: build it per call)."""
        device = self.attn.relative_position_bias_table.device
        self.feat_size = tuple(feat_size) if feat_size is not None else None
        layout = self.build_layout(self.feat_size, device) if self.feat_size else WindowLayout(None, None, None, None)
        for name, tensor in layout._asdict().items():
            self.register_buffer(name, tensor, persistent=False)

    def window_layout(self, feat_size: Tuple[int, int, int], device: torch.device) -> WindowLayout:
        """The buffers for the input size set, else a layout built for this size."""
        if feat_size == self.feat_size:
            return WindowLayout(self.partition_index, self.reverse_index, self.relative_position_index, self.attn_mask)
        return self.build_layout(feat_size, device)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        """Layout, gather into windows (with the shifts), attend, scatter back to the maps."""
        layout, window, shift = _block_window_layout(self, x)
        windows = _gather_windows(x, layout, window, shift, self.temporal_shift, self.num_heads)
        attn_bias = self.attn.attn_bias(layout.relative_position_index, layout.attn_mask)  # (G * heads, N, N)
        # runs of G windows sharing one bias: the temporal tokens (and, with a mask, the windows) of a clip
        windows = windows.view(-1, attn_bias.shape[0] // self.num_heads, attn_bias.shape[-1], x.shape[-1])
        windows = self.attn(windows, attn_bias).view(x.shape[0], -1, x.shape[-1])
        return _scatter_windows(windows, layout, x.shape, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass on ``(B, D, H, W, C)``."""
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


@torch.fx.wrap
@register_notrace_function  # reason: the maps' size decides the window, the shift and whether the buffers serve
def _block_window_layout(
        block: TpsSwinTransformerBlock,
        x: torch.Tensor,
) -> Tuple[WindowLayout, Tuple[int, int], Tuple[int, int]]:
    """The block's window layout for maps ``x`` ``(B, D, H, W, C)``, with the window and window shift they take."""
    feat_size = tuple(x.shape[1:4])
    window, shift = window_and_shift_size(feat_size[1:], block.window_size, block.shift_window)
    return block.window_layout(feat_size, x.device), window, shift


@torch.fx.wrap
@register_notrace_function  # reason: the window shift and the padding depend on the maps' size
def _gather_windows(
        x: torch.Tensor,
        layout: WindowLayout,
        window: Tuple[int, int],
        shift: Tuple[int, int],
        temporal_shift: str,
        num_heads: int,
) -> torch.Tensor:
    """Maps ``(B, D, H, W, C)`` -> window rows ``(B, L, C)``, the block's temporal shift folded in."""
    if temporal_shift == 'channel' and any(shift):  # only temporal_mixing='channel' shifts these windows
        x = channel_shift(x, num_heads)
    x = pad_to_multiple(x, window, 2)
    if temporal_shift == 'channel' and not any(shift):
        # unshifted windows are a plain reordering of the maps: the channel shift folds into their partition
        return partition_channel_shift(x, layout.partition_index, layout.reverse_index, window, num_heads)
    return permute_rows(x, layout.partition_index, layout.reverse_index)


@torch.fx.wrap
@register_notrace_function  # reason: crops the padding the maps' size asked for
def _scatter_windows(windows: torch.Tensor, layout: WindowLayout, maps_shape: torch.Size,
                     window: Tuple[int, int]) -> torch.Tensor:
    """Window rows ``(B, L, C)`` back to the maps ``(B, D, H, W, C)`` (proj is per token, so the inverse patch shift
    folds into this reverse permutation)."""
    batch, num_temporal_tokens, height, width, channels = maps_shape
    pad_h, pad_w = (-s % w for s, w in zip((height, width), window))
    x = permute_rows(windows, layout.reverse_index, layout.partition_index)
    x = x.view(batch, num_temporal_tokens, height + pad_h, width + pad_w, channels)
    return x[:, :, :height, :width] if pad_h or pad_w else x


class PatchMerging(nn.Module):
    """Merge each 2 x 2 spatial neighbourhood of every frame, halving H and W; time is kept."""

    def __init__(self, dim: int, out_dim: Optional[int] = None, norm_layer: Type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> ``(B, D, ceil(H/2), ceil(W/2), out_dim)``."""
        x = pad_to_multiple(x, (2, 2), 2)
        # channel order (0,0), (1,0), (0,1), (1,1) in (row, col), as the reference concatenates
        x = rearrange(x, 'b d (h i) (w j) c -> b d h w (j i c)', i=2, j=2)
        return self.reduction(self.norm(x))


class PatchEmbed3d(nn.Module):
    """Video to tokens: ``Conv3d`` over (2, 4, 4) patches, zero padding at the end of T, H, W; channels-last out.

    ``grid_size``, set by the model, is the token grid ``(D, H, W)`` whose window layouts it keeps (None: none kept);
    clips with another grid are logged, once per grid, as building theirs per call.
    """

    def __init__(
            self,
            patch_size: Tuple[int, int, int] = (2, 4, 4),
            in_chans: int = 3,
            embed_dim: int = 96,
            norm_layer: Optional[Type[nn.Module]] = nn.LayerNorm,
    ):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.in_chans = in_chans
        self.grid_size: Optional[Tuple[int, int, int]] = None
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D, H/4, W/4, embed_dim)``."""
        return self.norm(self.proj(_pad_to_patches(self, x)).permute(0, 2, 3, 4, 1))


@torch.fx.wrap
@register_notrace_function  # reason: reads the clip's size (padding, the log of grids without kept layouts)
def _pad_to_patches(patch_embed: PatchEmbed3d, x: torch.Tensor) -> torch.Tensor:
    """The clip zero-padded at the end of T, H, W to whole patches; a token grid without kept layouts is logged."""
    x_shape = tuple(x.shape[2:])
    x = pad_to_multiple(x, patch_embed.patch_size, 2)
    grid = tuple(s // p for s, p in zip(x.shape[2:], patch_embed.patch_size))
    if grid != patch_embed.grid_size:
        log_uncached_size(patch_embed, 'TPS-Swin', x_shape, grid, patch_embed.grid_size, 'window layouts')
    return x


class TpsSwinTransformerStage(nn.Module):
    """One stage: optional patch merging at its start (timm layout), then alternating blocks."""

    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            downsample: bool = True,
            num_heads: int = 4,
            feat_size: Optional[Tuple[int, int, int]] = None,
            window_size: Tuple[int, int] = (7, 7),
            temporal_mixing: str = 'tps',
            max_temporal_tokens: int = 16,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: Union[List[float], float] = 0.,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.dim = dim
        self.grad_checkpointing = False
        self.downsample = PatchMerging(dim, out_dim, norm_layer) if downsample else nn.Identity()
        if not downsample and dim != out_dim:
            raise ValueError(f'a stage without patch merging keeps its width, got {dim} -> {out_dim}')
        self.blocks = nn.Sequential(*[
            TpsSwinTransformerBlock(
                dim=out_dim,
                num_heads=num_heads,
                feat_size=feat_size,
                window_size=window_size,
                shift_window=i % 2 == 1,
                temporal_shift=TEMPORAL_MIXING[temporal_mixing][i % 2],
                max_temporal_tokens=max_temporal_tokens,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path,
                norm_layer=norm_layer,
            )
            for i in range(depth)])

    def set_input_size(self, feat_size: Optional[Tuple[int, int, int]]) -> None:
        """Window layouts of the blocks for maps ``(D, H, W)`` after merging (None: built per call)."""
        for block in self.blocks:
            block.set_input_size(feat_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class TpsSwinTransformer(nn.Module):
    """TPS-Swin video transformer (the paper's PST).

    Takes float clips ``(B, in_chans, T, H, W)`` of any length and size; features are channels-last
    ``(B, D, H, W, C)`` with ``D = ceil(T / 2)``. The window layouts of clips of ``num_frames x img_size`` are kept as
    buffers (``set_input_size`` changes them); other clips build theirs per call.
    """
    # the blocks FSDP wraps one by one (Accelerate's TRANSFORMER_BASED_WRAP reads this)
    _no_split_modules = ['TpsSwinTransformerBlock']

    def __init__(
            self,
            img_size: Optional[Union[int, Tuple[int, int]]] = VideoPretrainedCfg.input_size[-1],
            num_frames: Optional[int] = VideoPretrainedCfg.num_frames,
            in_chans: int = 3,
            num_classes: int = 400,
            global_pool: str = 'avg',
            embed_dim: int = 96,
            depths: Tuple[int, ...] = (2, 2, 6, 2),
            num_heads: Tuple[int, ...] = (3, 6, 12, 24),
            patch_size: Tuple[int, int, int] = (2, 4, 4),
            window_size: Union[int, Tuple[int, int]] = 7,
            max_temporal_tokens: int = 16,
            temporal_mixing: str = 'tps',
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            patch_norm: bool = True,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
    ):
        """
        Args:
            img_size: Frame size whose window layouts are kept as buffers (None: none kept, all built per call).
            num_frames: Clip frames ``T`` whose window layouts are kept as buffers (None: none kept); the default is
                the pretrained config's (``VideoPretrainedCfg``).
            in_chans: Number of input channels.
            num_classes: Number of classes of the classifier head (0 for none).
            global_pool: Pooling over (D, H, W) before the head: 'avg', 'max', 'avgmax' or ''.
            embed_dim: Width of the first stage.
            depths: Blocks per stage.
            num_heads: Attention heads per stage.
            patch_size: (time, height, width) of the patch embedding.
            window_size: Spatial attention window.
            max_temporal_tokens: Temporal extent of the bias tables (``ceil(T / 2)`` tokens). Checkpoints with another
                extent are resampled along time on load; longer clips read a table resampled at run time.
            temporal_mixing: 'tps' (channel / patch shift alternating, the paper), 'patch', 'channel' or 'none'.
            mlp_ratio: Ratio of mlp hidden dim to embedding dim.
            qkv_bias: If True, add a learnable bias to query, key, value.
            drop_rate: Head dropout rate.
            proj_drop_rate: Projection dropout rate.
            attn_drop_rate: Attention dropout rate.
            drop_path_rate: Stochastic depth rate, linearly increasing over blocks.
            patch_norm: LayerNorm after the patch embedding.
            norm_layer: Normalization layer.
        """
        super().__init__()
        if temporal_mixing not in TEMPORAL_MIXING:
            raise ValueError(f'temporal_mixing must be one of {sorted(TEMPORAL_MIXING)}, got {temporal_mixing!r}')
        if max_temporal_tokens < 1:
            raise ValueError(f'max_temporal_tokens must be >= 1, got {max_temporal_tokens}')
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.in_chans = in_chans
        self.temporal_mixing = temporal_mixing
        self.max_temporal_tokens = max_temporal_tokens
        self.window_size = to_2tuple(window_size)
        num_layers = len(depths)
        self.num_features = self.head_hidden_size = int(embed_dim * 2 ** (num_layers - 1))
        self.output_fmt = 'NDHWC'  # channels-last maps (B, D, H, W, C), as timm's Swin's are 'NHWC'

        self.patch_embed = PatchEmbed3d(patch_size, in_chans, embed_dim, norm_layer if patch_norm else None)
        self.img_size = to_2tuple(img_size) if img_size is not None else None
        self.num_frames = num_frames if img_size is not None else None
        feat_sizes = self._stage_feat_sizes(num_layers)
        self.patch_embed.grid_size = feat_sizes[0]
        rates = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]  # linear over blocks
        dpr = [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]
        self.feature_info = []
        layers = []
        in_dim = embed_dim
        for i in range(num_layers):
            out_dim = int(embed_dim * 2 ** i)
            layers.append(TpsSwinTransformerStage(
                dim=in_dim,
                out_dim=out_dim,
                depth=depths[i],
                downsample=i > 0,
                num_heads=num_heads[i],
                feat_size=feat_sizes[i],
                window_size=self.window_size,
                temporal_mixing=temporal_mixing,
                max_temporal_tokens=max_temporal_tokens,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                norm_layer=norm_layer,
            ))
            in_dim = out_dim
            self.feature_info += [dict(num_chs=out_dim, reduction=patch_size[1] * 2 ** i, module=f'layers.{i}')]
        self.layers = nn.Sequential(*layers)
        self.norm = norm_layer(self.num_features)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, input_fmt='NHWC')
        self.apply(self._init_weights)

    def _stage_feat_sizes(self, num_stages: int) -> List[Optional[Tuple[int, int, int]]]:
        """Maps ``(D, H, W)`` of every stage for clips of ``num_frames x img_size`` (None without an input size)."""
        if self.img_size is None or self.num_frames is None:
            return [None] * num_stages
        size = [math.ceil(s / p) for s, p in zip((self.num_frames, *self.img_size), self.patch_embed.patch_size)]
        sizes = []
        for i in range(num_stages):
            if i > 0:  # patch merging pads odd maps
                size[1:] = [math.ceil(s / 2) for s in size[1:]]
            sizes.append(tuple(size))
        return sizes

    def set_input_size(
            self,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,
            num_frames: Optional[int] = None,
    ) -> None:
        """Keep the window layouts of clips of ``num_frames x img_size`` as buffers (as timm's Swin does for
        ``img_size``); clips of other sizes still run, with layouts built per call."""
        if img_size is not None:
            self.img_size = to_2tuple(img_size)
        if num_frames is not None:
            self.num_frames = num_frames
        feat_sizes = self._stage_feat_sizes(len(self.layers))
        self.patch_embed.grid_size = feat_sizes[0]
        for stage, feat_size in zip(self.layers, feat_sizes):
            stage.set_input_size(feat_size)
        record_input_size(self, self.img_size, num_frames=self.num_frames)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """Bias tables are excluded from weight decay (norms and biases are, by dimension, in timm)."""
        return {n for n, _ in self.named_parameters() if 'relative_position_bias_table' in n}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for layer-wise lr decay, as timm's Swin."""
        return dict(
            stem=r'^patch_embed',
            blocks=r'^layers\.(\d+)' if coarse else [
                (r'^layers\.(\d+).downsample', (0,)),
                (r'^layers\.(\d+)\.\w+\.(\d+)', None),
                (r'^norm', (99999,)),
            ]
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass instead of storing them."""
        for layer in self.layers:
            layer.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier (and optionally the pooling) with a fresh one for ``num_classes``."""
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)
        if global_pool is not None:
            self.global_pool = global_pool

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` if it is a float clip ``(B, in_chans, T, H, W)``, else a ValueError."""
        return check_video_input(x, self.in_chans)

    def fx_feature_maps(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """How ``feature_cls='fx'`` lays out a stage's output for a clip: channels-last maps to ``(B, C, D, H, W)``."""
        return _channels_first

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: Union[str, Format] = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward returning per-stage feature maps.

        Args:
            x: Input clips ``(B, C, T, H, W)``.
            indices: Take the last n stages if int, all if None, the listed stages if a sequence.
            norm: Apply the final norm to the last stage's map.
            stop_early: Stop after the last requested stage.
            output_fmt: 'NCHW' / 'NCDHW' for ``(B, C, D, H, W)``, 'NHWC' / 'NDHWC' for ``(B, D, H, W, C)``.
            intermediates_only: Only return the intermediates.

        Returns:
            The intermediates, or (final features, intermediates).
        """
        fmt = output_fmt.value if isinstance(output_fmt, Format) else output_fmt
        if fmt not in ('NCHW', 'NCDHW', 'NHWC', 'NDHWC'):
            raise ValueError(f"output_fmt must be 'NCHW'/'NCDHW' or 'NHWC'/'NDHWC', got {output_fmt!r}")
        channels_first = fmt in ('NCHW', 'NCDHW')
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        x = self.patch_embed(self.check_input(x))
        num_stages = len(self.layers)
        stages = self.layers if torch.jit.is_scripting() or not stop_early else self.layers[:max_index + 1]
        i = 0
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                x_inter = self.norm(x) if norm and i == num_stages - 1 else x
                intermediates.append(_channels_first(x_inter) if channels_first else x_inter)
        if intermediates_only:
            return intermediates
        if i == num_stages - 1:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and norm / head) not needed for the given intermediates."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        prune_end = max_index < len(self.layers) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        self.layers = self.layers[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.head = ClassifierHead(self.num_features, 0, input_fmt='NHWC')  # sized for the new last stage
            self.reset_classifier(0, '')  # as timm: the pruned model returns unpooled maps
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, C, T, H, W)`` -> normalised features ``(B, D, H/32, W/32, num_features)``."""
        x = self.patch_embed(self.check_input(x))
        x = self.layers(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool over (D, H, W) and classify; ``pre_logits`` returns the pooled features."""
        out = self.head(x.flatten(1, 2), pre_logits=pre_logits)  # (D*H, W) pooled as one NHWC map
        if self.head.global_pool.is_identity():  # no pooling: give the temporal tokens back
            out = out.unflatten(1, x.shape[1:3])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _channels_first(maps: torch.Tensor, clip: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Channels-last maps ``(B, D, H, W, C)`` as ``(B, C, D, H, W)`` (``clip``: unused, for ``fx_feature_maps``)."""
    return maps.permute(0, 4, 1, 2, 3).contiguous()


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint conversion

def _unwrap_state_dict(state_dict: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state_dict.get(key), dict):
            return _unwrap_state_dict(state_dict[key])
    return state_dict


def _resize_bias_table(table: torch.Tensor, target_shape: torch.Size, table_size: Tuple[int, int, int],
                       name: str, from_2d: bool) -> torch.Tensor:
    """Bring a 2D Swin table ``(S, heads)`` or a TPS table ``((2Dt'-1) * S, heads)`` to ``target_shape``.

    2D tables are resized bicubically if the window differs and tiled along time (the authors' inflation); TPS
    tables with another temporal extent are resampled linearly along time.
    """
    rows, heads = target_shape
    frames, win_h, win_w = table_size
    spatial = (2 * win_h - 1) * (2 * win_w - 1)
    if table.shape[1] != heads:
        raise ValueError(f'{name}: checkpoint has {table.shape[1]} heads, the model {heads}')
    if from_2d:  # (2w-1) x (2w-1) spatial offsets
        if table.shape[0] != spatial:
            table = resize_rel_pos_bias_table(
                table, new_window_size=(win_h, win_w), new_bias_shape=(spatial, heads))
        return table.repeat(2 * frames - 1, 1)
    if table.shape[0] % spatial or (table.shape[0] // spatial) % 2 == 0:
        raise ValueError(f'{name}: cannot read a bias table of shape {tuple(table.shape)} for a model table of '
                         f'shape {tuple(target_shape)}')
    return resample_bias_table(table, spatial, frames)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: TpsSwinTransformer) -> Dict[str, torch.Tensor]:
    """Convert any supported checkpoint to this model's layout.

    Recognised: our own layout; timm 2D Swin (``timm/swin_*``); Microsoft 2D Swin; the authors' mmaction / ModelScope
    TPS checkpoints (``state_dict`` / ``model`` / ``module.`` wrapping, ``backbone.`` and ``cls_head.fc_cls.`` keys,
    patch merging at the end of a stage). 2D weights are inflated as the authors do: the patch kernel repeated along
    time and divided by its length, bias tables tiled along time. Derived buffers (position indices, masks) are dropped.
    """
    import re
    state_dict = _unwrap_state_dict(state_dict)
    state_dict = {re.sub(r'^(module\.)?(backbone\.)?', '', k): v for k, v in state_dict.items()}
    # Microsoft and mmaction checkpoints merge patches at the end of a stage, timm and we at the start of the next
    merge_at_end = 'layers.0.downsample.reduction.weight' in state_dict
    from_2d = state_dict.get('patch_embed.proj.weight', torch.empty(0, 0, 0, 0, 0)).ndim == 4
    model_sd = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if any(n in k for n in ('relative_position_index', 'attn_mask')):
            continue
        if merge_at_end:
            k = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) + 1}.downsample', k)
        k = re.sub(r'^cls_head\.fc_cls\.', 'head.fc.', k)
        k = re.sub(r'^head\.(weight|bias)$', r'head.fc.\1', k)
        if k == 'patch_embed.proj.weight' and from_2d:
            frames = model.patch_embed.patch_size[0]
            v = v.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames
        if k.endswith('relative_position_bias_table') and k in model_sd and v.shape != model_sd[k].shape:
            v = _resize_bias_table(v, model_sd[k].shape, model.get_submodule(k.rsplit('.', 1)[0]).table_size, k,
                                   from_2d)
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------------------------------
# pretrained configs and entrypoints

TIMM_SWIN_2D = {'tiny': 'swin_tiny_patch4_window7_224', 'small': 'swin_small_patch4_window7_224',
                'base': 'swin_base_patch4_window7_224', 'large': 'swin_large_patch4_window7_224'}


def _cfg(**kwargs) -> VideoPretrainedCfg:
    """A TPS-Swin pretrained config: timm's keys (``input_size`` is one frame's ``(C, H, W)``; the clip has
    ``num_frames`` of them) plus the video ones of ``VideoPretrainedCfg``. ``pool_size`` is the final map
    ``(D, H/32, W/32)`` of such a clip, as timm's Swin gives ``(H/32, W/32)``."""
    input_size = kwargs.get('input_size', VideoPretrainedCfg.input_size)
    num_frames = kwargs.get('num_frames', VideoPretrainedCfg.num_frames)
    cfg = dict(
        num_classes=400, input_size=input_size,
        pool_size=(math.ceil(num_frames / 2), math.ceil(input_size[1] / 32), math.ceil(input_size[2] / 32)),
        crop_pct=224 / 256, interpolation='bilinear',
        fixed_input_size=False, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv='patch_embed.proj', classifier='head.fc', license='apache-2.0',
        paper_ids='arXiv:2207.13259', paper_name='Spatiotemporal Self-attention Modeling with Temporal Patch Shift '
                                                 'for Action Recognition',
        origin_url='https://github.com/MartinXM/TPS',
    )
    cfg.update(kwargs)
    return VideoPretrainedCfg(**cfg)


def _video_cfg(size: str, dataset: str) -> VideoPretrainedCfg:
    num_classes, sampling, clips, crops = VIDEO_DATASETS[dataset]
    return _cfg(hf_hub_id=f'{HUB_ORG}/tps_swin_{size}.{dataset}', num_classes=num_classes, sampling=sampling,
                test_num_clips=clips, test_num_crops=crops, dataset=dataset)


def _imagenet_cfg(size: str, tag: str) -> VideoPretrainedCfg:
    return _cfg(hf_hub_id=f'timm/{TIMM_SWIN_2D[size]}.{tag}', num_classes=21841 if tag == 'ms_in22k' else 1000,
                license='mit', dataset='imagenet-22k' if tag == 'ms_in22k' else 'imagenet-1k',
                description=f'ImageNet init: timm {TIMM_SWIN_2D[size]}.{tag} inflated to video')


_IMAGENET_TAGS = {
    'tiny': ('ms_in1k', 'ms_in22k_ft_in1k', 'ms_in22k'),
    'small': ('ms_in1k', 'ms_in22k_ft_in1k', 'ms_in22k'),
    'base': ('ms_in1k', 'ms_in22k_ft_in1k', 'ms_in22k'),
    'large': ('ms_in22k_ft_in1k', 'ms_in22k'),
}
default_cfgs = generate_default_cfgs({
    **{f'tps_swin_{size}.{ds}': _video_cfg(size, ds) for size in TIMM_SWIN_2D for ds in VIDEO_DATASETS},
    **{f'tps_swin_{size}.{tag}': _imagenet_cfg(size, tag) for size, tags in _IMAGENET_TAGS.items() for tag in tags},
})


def _create_tps_swin(variant: str, pretrained: bool = False, **kwargs) -> TpsSwinTransformer:
    out_indices = kwargs.pop('out_indices', tuple(range(len(kwargs.get('depths', (2, 2, 6, 2))))))
    # the window layouts kept as buffers are those of the clips the weights were made for
    cfg = resolve_video_pretrained_cfg(variant, kwargs)
    kwargs.setdefault('img_size', tuple(cfg.input_size[-2:]))
    kwargs.setdefault('num_frames', cfg.num_frames)
    with pretrained_load_errors(variant, pretrained, kwargs):
        return build_model_with_cfg(
            TpsSwinTransformer, variant, pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=video_feature_cfg(kwargs, out_indices, module_output_fmt='NHWC'),
            **kwargs)


_VARIANT_ARGS = {
    'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}


def _create_variant(size: str, pretrained: bool, **kwargs) -> TpsSwinTransformer:
    return _create_tps_swin(f'tps_swin_{size}', pretrained=pretrained, **dict(_VARIANT_ARGS[size], **kwargs))


@register_model
def tps_swin_tiny(pretrained: bool = False, **kwargs) -> TpsSwinTransformer:
    """TPS-Swin-T (PST-T): C=96, depths 2-2-6-2."""
    return _create_variant('tiny', pretrained, **kwargs)


@register_model
def tps_swin_small(pretrained: bool = False, **kwargs) -> TpsSwinTransformer:
    """TPS-Swin-S: C=96, depths 2-2-18-2."""
    return _create_variant('small', pretrained, **kwargs)


@register_model
def tps_swin_base(pretrained: bool = False, **kwargs) -> TpsSwinTransformer:
    """TPS-Swin-B (PST-B): C=128, depths 2-2-18-2."""
    return _create_variant('base', pretrained, **kwargs)


@register_model
def tps_swin_large(pretrained: bool = False, **kwargs) -> TpsSwinTransformer:
    """TPS-Swin-L: C=192, depths 2-2-18-2."""
    return _create_variant('large', pretrained, **kwargs)


register_model_aliases(__name__, {  # the names users write: tps_swin_base_sthv2 = tps_swin_base.sthv2
    f'tps_swin_{size}_{dataset}': f'tps_swin_{size}.{dataset}' for size in _VARIANT_ARGS for dataset in VIDEO_DATASETS})
