"""Pieces both TPS model families (TPS-Swin, TPS-ViT) share: the temporal mixing of each block kind, stochastic depth
with its rate in a buffer, the input check, zero padding to whole patches, the log of clip sizes without kept layouts
and timm's FX feature extractor laid out as video maps.

Functions that read a tensor's shape in Python are FX leaves (``torch.fx.wrap`` for ``torch.fx.symbolic_trace``,
``register_notrace_function`` for timm's tracer): a traced graph calls them with the run's tensors. A module that calls
one of them by its imported name wraps that name too (``torch.fx.wrap`` patches the caller's globals).
"""
import logging
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function
from timm.models import FeatureGraphNet

__all__ = ['TEMPORAL_MIXING', 'DropPath', 'check_video_input', 'pad_to_multiple', 'log_uncached_size',
           'VideoFeatureGraphNet', 'video_feature_cfg']

_logger = logging.getLogger(__name__)

# temporal mixing per block kind (even, odd), for the paper's Table 2 ablations
TEMPORAL_MIXING: Dict[str, Tuple[str, str]] = {
    'tps': ('channel', 'patch'),  # the paper's model: channel shift and patch shift alternating
    'patch': ('patch', 'patch'),  # patch shift in every block
    'channel': ('channel', 'channel'),  # channel shift (TSM) in every block
    'none': ('none', 'none'),  # no temporal mixing: a per-frame 2D model with the same weights
}


class DropPath(nn.Module):
    """Stochastic depth per sample, as timm's ``DropPath``, with the drop rate held in a buffer: compiled blocks that
    differ only in their rate then share one graph (a float attribute would be a constant of each block's graph)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob  # not read by forward: the buffer is
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        device = self.keep_prob.device if hasattr(self, 'keep_prob') else None
        self.register_buffer('keep_prob', torch.tensor(1. - self.drop_prob, device=device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(self.keep_prob.to(x.dtype))
        return x * keep / self.keep_prob

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:.3f}'


@torch.fx.wrap
@register_notrace_function  # reason: checks the input's type, rank and dtype
def check_video_input(x: torch.Tensor, in_chans: Optional[int] = None) -> torch.Tensor:
    """``x`` if it is a float clip ``(B, in_chans, T, H, W)`` (any channels if ``in_chans`` is None), else a ValueError.

    Returns its input so that a traced graph keeps the check (an unused node would be dropped as dead code).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or not x.is_floating_point() or \
            (in_chans is not None and x.shape[1] != in_chans):
        got = f'{x.dtype} tensor of shape {tuple(x.shape)}' if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'expected a floating-point video tensor of shape (B, {in_chans or "C"}, T, H, W), got {got}')
    return x


@torch.fx.wrap
@register_notrace_function  # reason: the padding is read from the shape, and none is a no-op
def pad_to_multiple(x: torch.Tensor, multiples: Sequence[int], first_dim: int) -> torch.Tensor:
    """``x`` zero-padded at the end of dims ``first_dim, first_dim + 1, ...`` to multiples of ``multiples``; ``x``
    itself when they are whole already (no copy)."""
    pads = [-x.shape[first_dim + i] % m for i, m in enumerate(multiples)]
    if not any(pads):
        return x
    trailing = x.ndim - first_dim - len(multiples)
    return F.pad(x, [0, 0] * trailing + [p for pad in reversed(pads) for p in (0, pad)])


def log_uncached_size(
        owner: nn.Module,
        model_name: str,
        clip_size: Sequence[int],
        grid: Tuple[int, ...],
        kept_grid: Optional[Tuple[int, ...]],
        what: str,
) -> None:
    """Log at INFO, once per token ``grid`` and ``owner``, that clips of ``clip_size`` (T, H, W), whose grid is not the
    kept one, build their ``what`` per call: slower than reading the kept buffers.

    The grids logged are a set on ``owner``, the model's patch embedding (FX graphs can hold a submodule, not the model
    itself). Dynamo skips the call (``ignore_logging_functions``, below): a compiled graph holds no log.
    """
    logged = owner.__dict__.setdefault('_uncached_grids_logged', set())
    if grid in logged:
        return
    logged.add(grid)
    kept = 'none' if kept_grid is None else ' x '.join(map(str, kept_grid))
    _logger.info(f'{model_name}: clips of {" x ".join(map(str, clip_size))} (T x H x W; token grid '
                 f'{" x ".join(map(str, grid))}) build their {what} per call, which is slower than the kept grid\'s '
                 f'({kept}); model.set_input_size(img_size=..., num_frames=...) keeps theirs')


if hasattr(torch._dynamo.config, 'ignore_logging_functions'):  # private, and absent in older torch: graph-break there
    torch._dynamo.config.ignore_logging_functions.add(log_uncached_size)


class VideoFeatureGraphNet(FeatureGraphNet):
    """timm's FX feature extractor (``features_only=True, feature_cls='fx'``) giving the ``(B, C, D, H, W)`` maps of the
    default (``forward_intermediates``) path.

    The graph returns the traced stages' or blocks' outputs (timm's ``FeatureGraphNet``), which the model's
    ``fx_feature_maps()`` function of (output, clip) lays out: TPS-Swin's channels-last maps, TPS-ViT's frame tokens.
    ``output_fmt`` (the model's, as ``build_model_with_cfg`` passes it) is not read: the maps are 'NCHW', timm's name
    for channels-first maps.
    """

    def __init__(
            self,
            model: nn.Module,
            out_indices: Tuple[int, ...],
            out_map: Optional[Dict] = None,
            output_fmt: str = 'NCHW',
            return_dict: bool = False,
    ):
        super().__init__(model, out_indices, out_map=out_map, output_fmt='NCHW', return_dict=return_dict)
        self.to_maps: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = model.fx_feature_maps()

    def forward(self, x: torch.Tensor):
        out = {name: self.to_maps(feature, x) for name, feature in self.graph_module(x).items()}
        return out if self.return_dict else list(out.values())


def video_feature_cfg(
        kwargs: Dict[str, Any],
        out_indices: Union[int, Tuple[int, ...]],
        module_output_fmt: Optional[str] = None,
) -> Dict[str, Any]:
    """timm's ``feature_cfg`` for a TPS model (``build_model_with_cfg``), ``kwargs`` adapted in place.

    The getter (``forward_intermediates``) by default and ``feature_cls='fx'`` (``VideoFeatureGraphNet``) give the same
    ``(B, C, D, H, W)`` maps; timm's hook, list and dict wrappers give the modules' outputs, labelled
    ``module_output_fmt`` (timm's ``Format`` names no 5D layout: TPS-Swin's own ``output_fmt`` 'NDHWC' would not do).
    """
    cfg = dict(feature_cls='getter', out_indices=out_indices)
    feature_cls = kwargs.get('feature_cls')
    if isinstance(feature_cls, str) and feature_cls.lower() == 'fx':
        kwargs['feature_cls'] = VideoFeatureGraphNet
    elif isinstance(feature_cls, str) and feature_cls.lower() != 'getter' and module_output_fmt:
        cfg['output_fmt'] = module_output_fmt
    return cfg
