"""TPS for timm's Vision Transformers: an image ViT (DeiT, AugReg, CLIP, DINOv2, SigLIP, ...) as a video model.

``to_video(model)`` keeps the image model's parameters and turns it into a model of clips ``(B, C, T, H, W)``:

* The patch embedding is inflated over ``tubelet_size`` frames: its kernel is split evenly across the tubelet, so a
  static clip embeds as the 2D frame does. ``D = ceil(T / tubelet_size)`` temporal tokens; ``T`` is zero-padded at the
  end, as TPS-Swin pads.
* Every frame runs the image model's blocks as a 2D ViT, with the temporal shifts of ``shared/TPS_SPEC.md``: even
  blocks shift a quarter of each head's channels between neighbouring frames, odd blocks read every patch token from
  the frame its 3 x 3 tile position says (``(row mod 3, col mod 3)`` of its position on the patch grid) and put the
  attention output back. Both act after ``norm1``; class and register tokens are not shifted. With
  ``temporal_mixing='none'`` it is the image model on every frame.
* The features are averaged over time before timm's own pooling and head, so every head option keeps working; an
  opt-in, zero-initialised temporal position embedding adds one vector per frame.

The registered ``tps_vit_*`` models take timm's 2D pretrained tags (timm's default tag first) and inflate the weights
on load. As in TPS-Swin, the steps that read the clip's size in Python are FX leaves (``torch.fx.symbolic_trace``,
timm's ``feature_cls='fx'``).
"""
import functools
import math
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from timm.layers import PatchEmbed, register_notrace_function, to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import Block, VisionTransformer

from .layers import TEMPORAL_MIXING, DropPath, check_video_input, log_uncached_size, pad_to_multiple, \
    video_feature_cfg
from .pretrained import VideoPretrainedCfg, record_input_size, resolve_video_pretrained_cfg
from .shift import channel_shift, permute_rows, token_patch_shift_index

__all__ = ['TpsVisionTransformer', 'to_video', 'checkpoint_filter_fn']

torch.fx.wrap('check_video_input')  # FX leaves by the names this module calls them (see tps_timm.layers)
torch.fx.wrap('pad_to_multiple')
torch.fx.wrap('permute_rows')
torch.fx.wrap('rearrange')

# where the registered models' clips differ from ClipConfig's (VideoMAE-style: 16 frames, 4 apart, tubelets of 2);
# the default of to_video's num_frames too
_VIDEO_DEFAULTS = dict(num_frames=16, frame_interval=4)


class VideoPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` over tubelets of frames: a tubelet's frames are stacked as channels, and the 2D kernel,
    divided by the tubelet length, is repeated over them (a ``Conv3d`` of kernel ``(tubelet, p, p)`` written as the
    ``Conv2d`` timm's forward already runs). Clips ``(B, C, T, H, W)`` -> tokens of ``B * D`` frames."""

    @classmethod
    def from_2d(cls, patch_embed: PatchEmbed, tubelet_size: int) -> 'VideoPatchEmbed':
        video = cls.__new__(cls)
        nn.Module.__init__(video)
        for name, value in vars(patch_embed).items():
            if not name.startswith('_'):
                setattr(video, name, value)
        video.tubelet_size = tubelet_size
        video.norm = patch_embed.norm
        proj = patch_embed.proj
        video.proj = nn.Conv2d(proj.in_channels * tubelet_size, proj.out_channels, proj.kernel_size, proj.stride,
                               bias=proj.bias is not None, device=proj.weight.device, dtype=proj.weight.dtype)
        with torch.no_grad():
            video.proj.weight.copy_(inflate_patch_kernel(proj.weight, tubelet_size))
            if proj.bias is not None:
                video.proj.bias.copy_(proj.bias)
        return video

    def set_input_size(self, img_size=None, patch_size=None) -> None:
        if patch_size is not None and to_2tuple(patch_size) != tuple(self.patch_size):
            raise ValueError('a video patch embedding keeps its patch size; create the model with the one you need')
        super().set_input_size(img_size=img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, (self.tubelet_size,), 2)
        # channel c * tubelet + k is frame k of the tubelet
        return super().forward(rearrange(x, 'b c (d k) h w -> (b d) (c k) h w', k=self.tubelet_size))


def inflate_patch_kernel(weight: torch.Tensor, tubelet_size: int) -> torch.Tensor:
    """A 2D patch kernel ``(O, C, p, p)`` as the tubelet kernel ``(O, C * tubelet, p, p)``: split evenly over the
    tubelet's frames, so that a static clip embeds as its frame does."""
    return weight.repeat_interleave(tubelet_size, dim=1) / tubelet_size


class TpsVitBlock(nn.Module):
    """A timm ViT ``Block`` (its own norms, attention, layer scales, MLP) with the temporal shift around attention."""

    def __init__(self, block: Block, temporal_shift: str):
        super().__init__()
        if temporal_shift not in ('channel', 'patch', 'none'):
            raise ValueError(f"temporal_shift must be 'channel', 'patch' or 'none', got {temporal_shift!r}")
        for name in ('norm1', 'attn', 'ls1', 'norm2', 'mlp', 'ls2'):
            setattr(self, name, getattr(block, name))
        # stochastic depth with its rate in a buffer: compiled blocks that differ only in their rate share a graph
        for name in ('drop_path1', 'drop_path2'):
            drop = getattr(block, name)
            if hasattr(drop, 'drop_prob'):
                drop = DropPath(drop.drop_prob).to(next(block.parameters()).device)
            setattr(self, name, drop)
        self.temporal_shift = temporal_shift
        self.num_heads = block.attn.num_heads

    def forward(self, x: torch.Tensor, patch_shift: torch.Tensor, patch_unshift: torch.Tensor, num_temporal_tokens: int,
                num_prefix_tokens: int) -> torch.Tensor:
        """Tokens ``(B * D, N, C)`` of ``B`` clips of ``D`` frames; ``patch_shift`` / ``patch_unshift``: the per-clip
        token permutation of the patch shift and its inverse (``token_patch_shift_index``)."""
        frames, tokens, channels = x.shape
        y = self.norm1(x)
        clips = y.view(-1, num_temporal_tokens, tokens, channels)
        if self.temporal_shift == 'channel':
            y = channel_shift(clips, self.num_heads, num_prefix_tokens).view(frames, tokens, channels)
        elif self.temporal_shift == 'patch':
            y = permute_rows(clips, patch_shift, patch_unshift).view(frames, tokens, channels)
        y = self.attn(y)
        if self.temporal_shift == 'patch':  # every token back to its own frame (attention's output is per token)
            y = permute_rows(y.view(-1, num_temporal_tokens * tokens, channels), patch_unshift, patch_shift)
            y = y.view(frames, tokens, channels)
        x = x + self._drop_clips(self.drop_path1, self.ls1(y), num_temporal_tokens)
        return x + self._drop_clips(self.drop_path2, self.ls2(self.mlp(self.norm2(x))), num_temporal_tokens)

    @staticmethod
    def _drop_clips(drop_path: nn.Module, y: torch.Tensor, num_temporal_tokens: int) -> torch.Tensor:
        """Stochastic depth per clip, as TPS-Swin's, not per frame: the rows of ``y`` are the clips' frames."""
        return drop_path(y.unflatten(0, (-1, num_temporal_tokens))).flatten(0, 1)


class TpsVisionTransformer(VisionTransformer):
    """A timm ``VisionTransformer`` on clips ``(B, C, T, H, W)`` with temporal patch shift; made by :func:`to_video`.

    It is the image model's class extended: pooling, head, layer decay groups, ``reset_classifier``,
    ``prune_intermediate_layers`` and the rest are timm's; ``forward_features`` averages over time before them and
    ``forward_intermediates`` gives ``(B, C, D, H, W)`` maps.
    """
    # the blocks FSDP wraps one by one (Accelerate's TRANSFORMER_BASED_WRAP reads this)
    _no_split_modules = ['TpsVitBlock']

    def _init_video(self, tubelet_size: int, temporal_mixing: str, num_frames: Optional[int],
                    temporal_pos_embed: bool, max_temporal_tokens: int) -> None:
        if temporal_mixing not in TEMPORAL_MIXING:
            raise ValueError(f'temporal_mixing must be one of {sorted(TEMPORAL_MIXING)}, got {temporal_mixing!r}')
        if tubelet_size < 1:
            raise ValueError(f'tubelet_size must be >= 1, got {tubelet_size}')
        self.tubelet_size = tubelet_size
        self.temporal_mixing = temporal_mixing
        self.patch_embed = VideoPatchEmbed.from_2d(self.patch_embed, tubelet_size)
        self.blocks = nn.Sequential(*[TpsVitBlock(block, TEMPORAL_MIXING[temporal_mixing][i % 2])
                                      for i, block in enumerate(self.blocks)])
        self.temporal_pos_embed = None
        if temporal_pos_embed:
            self.temporal_pos_embed = nn.Parameter(torch.zeros(max_temporal_tokens, self.embed_dim,
                                                               device=self.patch_embed.proj.weight.device))
        self.num_frames = num_frames
        self._init_buffers()

    def _init_buffers(self) -> None:
        """The patch-shift permutation of the clips of ``num_frames`` x ``img_size`` as non-persistent buffers."""
        index = None
        if self.num_frames and self.patch_embed.grid_size:
            index = self.token_index(math.ceil(self.num_frames / self.tubelet_size), self.patch_embed.grid_size,
                                     self.patch_embed.proj.weight.device)
        self.register_buffer('patch_shift_index', None if index is None else index.partition, persistent=False)
        self.register_buffer('patch_unshift_index', None if index is None else index.reverse, persistent=False)

    def token_index(self, num_temporal_tokens: int, grid_size: Tuple[int, int], device=None):
        return token_patch_shift_index(num_temporal_tokens, tuple(grid_size), self.num_prefix_tokens, device)

    def set_input_size(self, img_size=None, patch_size=None, num_frames: Optional[int] = None) -> None:
        """As timm's (``img_size``; the patch size is kept), plus the clip frames whose shift layout is kept."""
        super().set_input_size(img_size=img_size, patch_size=patch_size)
        if num_frames is not None:
            self.num_frames = num_frames
        self._init_buffers()
        record_input_size(self, self.patch_embed.img_size, num_frames=self.num_frames)

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` if it is a float clip ``(B, C, T, H, W)``, else a ValueError."""
        return check_video_input(x)

    def fx_feature_maps(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """How ``feature_cls='fx'`` lays out a block's output for a clip: frame tokens to ``(B, C, D, h, w)`` maps."""
        return functools.partial(_block_maps, tubelet_size=self.tubelet_size,
                                 patch_size=tuple(self.patch_embed.patch_size),
                                 dynamic_img_pad=self.patch_embed.dynamic_img_pad,
                                 num_prefix_tokens=self.num_prefix_tokens)

    def _kept_grid(self) -> Optional[Tuple[int, int, int]]:
        """The token grid ``(D, h, w)`` whose patch-shift permutation is kept as buffers (None: none kept)."""
        if self.patch_shift_index is None:
            return None
        return (math.ceil(self.num_frames / self.tubelet_size), *self.patch_embed.grid_size)

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, Tuple[int, int], Tuple[torch.Tensor, ...]]:
        """Clips -> frame tokens ``(B * D, N, C)`` after timm's position embedding and pre-norm; D, grid, layout."""
        x = self.check_input(x)
        batch = x.shape[0]
        num_tokens, grid, shift, unshift = _patch_shift_layout(
            self.patch_embed, x, self._kept_grid(), (self.patch_shift_index, self.patch_unshift_index),
            self.num_prefix_tokens)
        x = self._pos_embed(self.patch_embed(x))
        if self.temporal_pos_embed is not None:
            table = _temporal_pos_table(self.temporal_pos_embed, num_tokens)
            x = (x.view(batch, num_tokens, -1, x.shape[-1]) + table[:, None]).flatten(0, 1)
        x = self.norm_pre(self.patch_drop(x))
        return x, num_tokens, grid, (shift, unshift)

    def _blocks(self, x: torch.Tensor, num_tokens: int, index: Tuple[torch.Tensor, ...],
                blocks: Optional[nn.Module] = None, keep_all: bool = True) -> List[torch.Tensor]:
        """Every block's output (``keep_all``) or the last one only, which is all a forward needs to hold."""
        outputs = []
        for block in self.blocks if blocks is None else blocks:
            args = (*index, num_tokens, self.num_prefix_tokens)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
            if keep_all or not outputs:
                outputs.append(x)
            else:
                outputs[0] = x
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, C, T, H, W)`` -> normalised tokens averaged over time ``(B, N, C)``, for timm's head."""
        batch = x.shape[0]
        x, num_tokens, _, index = self._embed(x)
        x = self.norm(self._blocks(x, num_tokens, index, keep_all=False)[-1])
        return x.unflatten(0, (batch, num_tokens)).mean(1)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Per-block video maps ``(B, C, D, H, W)`` ('NCHW' / 'NCDHW') or tokens ``(B, D, N, C)`` ('NLC')."""
        if output_fmt not in ('NCHW', 'NCDHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW'/'NCDHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        batch = x.shape[0]
        x, num_tokens, grid, index = self._embed(x)
        outputs = self._blocks(x, num_tokens, index, self.blocks[:max_index + 1] if stop_early else None)
        prefix = self.num_prefix_tokens
        intermediates, prefix_tokens = [], []
        for i in take_indices:
            y = self.norm(outputs[i]) if norm else outputs[i]
            prefix_tokens.append(y[:, :prefix].unflatten(0, (batch, num_tokens)))
            if output_fmt == 'NLC':
                intermediates.append(y[:, prefix:].unflatten(0, (batch, num_tokens)))
            else:
                intermediates.append(_token_maps(y, batch, num_tokens, grid, prefix))
        if return_prefix_tokens and prefix:
            intermediates = list(zip(intermediates, prefix_tokens))
        if intermediates_only:
            return intermediates
        x = self.norm(outputs[-1])
        return x.unflatten(0, (batch, num_tokens)).mean(1), intermediates

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return super().no_weight_decay() | {'temporal_pos_embed'}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@torch.fx.wrap
@register_notrace_function  # reason: the clip's size decides the token grid and whether the kept permutations serve
def _patch_shift_layout(
        patch_embed: VideoPatchEmbed,
        x: torch.Tensor,
        kept_grid: Optional[Tuple[int, int, int]],
        kept_index: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]],
        num_prefix_tokens: int,
) -> Tuple[int, Tuple[int, int], torch.Tensor, torch.Tensor]:
    """Temporal tokens, patch grid and patch-shift permutation (and its inverse) of clips ``x`` ``(B, C, T, H, W)``:
    the kept buffers for the kept grid, else built for this grid (logged once per grid)."""
    num_tokens = math.ceil(x.shape[2] / patch_embed.tubelet_size)
    grid = tuple(patch_embed.dynamic_feat_size(tuple(x.shape[-2:])))
    if (num_tokens, *grid) == kept_grid:
        return num_tokens, grid, *kept_index
    log_uncached_size(patch_embed, 'TPS-ViT', x.shape[2:], (num_tokens, *grid), kept_grid, 'patch-shift permutation')
    index = token_patch_shift_index(num_tokens, grid, num_prefix_tokens, x.device)
    return num_tokens, grid, index.partition, index.reverse


@torch.fx.wrap
@register_notrace_function  # reason: a clip longer than the table reads it stretched along time
def _temporal_pos_table(table: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The temporal position embedding of ``num_tokens`` tokens, ``(D, C)``."""
    if num_tokens > table.shape[0]:
        table = F.interpolate(table.t()[None], size=num_tokens, mode='linear', align_corners=True)[0].t()
    return table[:num_tokens]


def _token_maps(tokens: torch.Tensor, batch: int, num_tokens: int, grid: Tuple[int, int],
                num_prefix_tokens: int) -> torch.Tensor:
    """Frame tokens ``(B * D, P + h * w, C)`` -> patch maps ``(B, C, D, h, w)``."""
    maps = rearrange(tokens[:, num_prefix_tokens:], '(b d) (h w) c -> b c d h w', b=batch, d=num_tokens, h=grid[0])
    return maps.contiguous()


def _block_maps(tokens: torch.Tensor, clip: torch.Tensor, tubelet_size: int, patch_size: Tuple[int, int],
                dynamic_img_pad: bool, num_prefix_tokens: int) -> torch.Tensor:
    """A block's frame tokens as the patch maps of ``clip`` (``fx_feature_maps``; the grid as ``PatchEmbed`` has it)."""
    height, width = clip.shape[-2:]
    grid = (-(-height // patch_size[0]), -(-width // patch_size[1])) if dynamic_img_pad else \
        (height // patch_size[0], width // patch_size[1])
    return _token_maps(tokens, clip.shape[0], math.ceil(clip.shape[2] / tubelet_size), grid, num_prefix_tokens)


def to_video(
        model: VisionTransformer,
        tubelet_size: int = 2,
        temporal_mixing: str = 'tps',
        num_frames: Optional[int] = _VIDEO_DEFAULTS['num_frames'],
        temporal_pos_embed: bool = False,
        max_temporal_tokens: int = 16,
) -> TpsVisionTransformer:
    """A timm image ViT as a TPS video model that keeps its parameters (see the module docstring).

    Args:
        model: A timm ``VisionTransformer`` (or subclass) built from timm's ``Block``: ``vit_*``, ``deit_*``,
            ``vit_*_clip_*``, ``vit_*_dinov2*``, ``vit_*_siglip*``, ...
        tubelet_size: Frames per temporal token.
        temporal_mixing: 'tps' (channel shift and patch shift alternating), 'patch', 'channel' or 'none'.
        num_frames: Clip frames ``T`` whose patch-shift layout is kept as buffers (others build theirs per call;
            None: none kept). The default is that of the registered models' configs.
        temporal_pos_embed: Add a learned, zero-initialised embedding per temporal token.
        max_temporal_tokens: Temporal tokens the temporal position embedding covers (longer clips stretch it).
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f'to_video takes a timm VisionTransformer, got {type(model).__name__}')
    if isinstance(model, TpsVisionTransformer):
        raise TypeError('the model is a video model already')
    if not isinstance(getattr(model, 'patch_drop', nn.Identity()), nn.Identity):
        raise ValueError('to_video needs the same tokens in every frame: create the image model with '
                         'patch_drop_rate=0')
    unsupported = sorted({type(b).__name__ for b in model.blocks if not isinstance(b, Block)})
    if unsupported:
        raise TypeError(f'to_video supports ViTs built from timm\'s Block; this model has {unsupported}')
    video = TpsVisionTransformer.__new__(TpsVisionTransformer)
    nn.Module.__init__(video)
    for name, value in vars(model).items():  # the image model's settings, then its parameters and modules
        if not name.startswith('_'):
            setattr(video, name, value)
    for name, param in model.named_parameters(recurse=False):
        video.register_parameter(name, param)
    for name, buffer in model.named_buffers(recurse=False):
        video.register_buffer(name, buffer)
    for name, module in model.named_children():
        video.add_module(name, module)
    video._init_video(tubelet_size, temporal_mixing, num_frames, temporal_pos_embed, max_temporal_tokens)
    return video


class _ImageView:
    """What timm's ViT checkpoint filter reads of a model, with the patch kernel at its image shape."""

    def __init__(self, model: TpsVisionTransformer):
        self._model = model
        weight = model.patch_embed.proj.weight
        image_weight = torch.empty(weight.shape[0], weight.shape[1] // model.tubelet_size, *weight.shape[2:],
                                   device='meta')
        self.patch_embed = _Namespace(vars(model.patch_embed), proj=_Namespace({}, weight=image_weight))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class _Namespace:
    def __init__(self, values: Dict[str, Any], **extra: Any):
        self.__dict__.update({k: v for k, v in values.items() if not k.startswith('_')}, **extra)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: TpsVisionTransformer) -> Dict[str, torch.Tensor]:
    """timm's ViT checkpoint conversions (CLIP, DINOv2, SigLIP layouts, position-embedding resampling), then the
    image patch kernel inflated over the tubelet; our own video checkpoints pass through."""
    from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter
    state_dict = vit_filter(state_dict, _ImageView(model))
    weight = state_dict.get('patch_embed.proj.weight')
    if weight is not None and weight.shape[1] * model.tubelet_size == model.patch_embed.proj.weight.shape[1]:
        state_dict['patch_embed.proj.weight'] = inflate_patch_kernel(weight, model.tubelet_size)
    return state_dict


# ---------------------------------------------------------------------------------------------------------------------
# registered models: timm's image ViTs with their pretrained tags, as video models

_IMAGE_MODELS = {
    'tps_vit_small_patch16_224': 'vit_small_patch16_224',
    'tps_vit_base_patch16_224': 'vit_base_patch16_224',
    'tps_vit_large_patch16_224': 'vit_large_patch16_224',
    'tps_vit_base_patch16_clip_224': 'vit_base_patch16_clip_224',
    'tps_vit_small_patch14_dinov2': 'vit_small_patch14_dinov2',
    'tps_vit_base_patch14_dinov2': 'vit_base_patch14_dinov2',
}


def _video_cfgs() -> Dict[str, VideoPretrainedCfg]:
    """Every pretrained tag of the image models, as a video config that loads (and inflates) those weights.

    In timm's tag order, so that each model's default tag is timm's default for the image model (what
    ``timm.create_model(image_name, pretrained=True)`` loads).
    """
    from timm.models import get_arch_pretrained_cfgs
    cfgs = {}
    for video_name, image_name in _IMAGE_MODELS.items():
        for tagged, image_cfg in get_arch_pretrained_cfgs(image_name).items():
            image_cfg = image_cfg.to_dict()
            image_cfg.pop('architecture', None)
            image_cfg.pop('tag', None)
            cfg = dict(image_cfg, **_VIDEO_DEFAULTS, description=f'image init: timm {tagged}, inflated to video')
            cfgs[f'{video_name}.{tagged.split(".", 1)[1]}'] = VideoPretrainedCfg(
                **{k: v for k, v in cfg.items() if k in VideoPretrainedCfg.__dataclass_fields__})
    return cfgs


default_cfgs = generate_default_cfgs(_video_cfgs())


def _create_tps_vit(variant: str, pretrained: bool = False, tubelet_size: int = 2, temporal_mixing: str = 'tps',
                    num_frames: Optional[int] = None, temporal_pos_embed: bool = False, max_temporal_tokens: int = 16,
                    **kwargs) -> TpsVisionTransformer:
    """``num_frames``: clip frames whose layout is kept as buffers; None: the pretrained config's."""
    import timm
    from .pretrained import pretrained_load_errors
    image_name = _IMAGE_MODELS[variant]
    cfg = resolve_video_pretrained_cfg(variant, kwargs)  # e.g. a model folder's config.json
    if num_frames is None:
        num_frames = cfg.num_frames

    def build(**model_kwargs) -> TpsVisionTransformer:  # the image architecture exactly as timm's entrypoint makes it
        model_kwargs.pop('pretrained_cfg', None)
        image = timm.create_model(image_name, pretrained=False, **model_kwargs)
        return to_video(image, tubelet_size, temporal_mixing, num_frames, temporal_pos_embed, max_temporal_tokens)

    out_indices = kwargs.pop('out_indices', 3)
    with pretrained_load_errors(variant, pretrained, kwargs):
        return build_model_with_cfg(build, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                    feature_cfg=video_feature_cfg(kwargs, out_indices), **kwargs)


@register_model
def tps_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-S/16 from timm's vit_small_patch16_224 (AugReg tags)."""
    return _create_tps_vit('tps_vit_small_patch16_224', pretrained, **kwargs)


@register_model
def tps_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-B/16 from timm's vit_base_patch16_224 (AugReg tags)."""
    return _create_tps_vit('tps_vit_base_patch16_224', pretrained, **kwargs)


@register_model
def tps_vit_large_patch16_224(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-L/16 from timm's vit_large_patch16_224 (AugReg tags)."""
    return _create_tps_vit('tps_vit_large_patch16_224', pretrained, **kwargs)


@register_model
def tps_vit_base_patch16_clip_224(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-B/16 from timm's CLIP image tower vit_base_patch16_clip_224 (OpenAI / LAION tags)."""
    return _create_tps_vit('tps_vit_base_patch16_clip_224', pretrained, **kwargs)


@register_model
def tps_vit_small_patch14_dinov2(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-S/14 from timm's vit_small_patch14_dinov2 (DINOv2 tags)."""
    return _create_tps_vit('tps_vit_small_patch14_dinov2', pretrained, **kwargs)


@register_model
def tps_vit_base_patch14_dinov2(pretrained: bool = False, **kwargs) -> TpsVisionTransformer:
    """TPS-ViT-B/14 from timm's vit_base_patch14_dinov2 (DINOv2 tags)."""
    return _create_tps_vit('tps_vit_base_patch14_dinov2', pretrained, **kwargs)
