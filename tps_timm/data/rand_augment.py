"""timm's RandAugment on uint8 clip tensors: one draw of ops and magnitudes per clip, applied to all frames at once.

timm parses the config string (``rand-m7-n4-mstd0.5-inc1``: ops, magnitude, its noise and bounds, weights) and
defines the draw; this module replays that draw with a caller's random generator and applies each op to the whole
``(..., C, H, W)`` tensor, so every frame of a clip gets the same op and magnitude. The ops follow Pillow's
definitions (the ones timm's ops call): lookup-table ops and blends are exact; the geometric ops sample with
Pillow's coordinates, border rule and fill, but their bicubic kernel is torch's (a = -0.75, Pillow's is -0.5).
Image statistics (autocontrast range, equalize histogram, contrast mean) are taken per frame, as Pillow takes them
per image. A clip on the CPU (a loader worker) gets the draw through timm's own Pillow ops frame by frame, which is
faster there; the tensor ops serve clips on an accelerator (``--aa-on-batch``).
"""
import math
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['ClipRandAugment', 'CLIP_OPS']

_PIL_INTERPOLATION = {0: 'nearest', 2: 'bilinear', 3: 'bicubic'}  # PIL.Image.Resampling values


def _per_channel(clip: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` -> ``(N, H * W)``: one row per image channel."""
    return clip.reshape(-1, clip.shape[-2] * clip.shape[-1])


def _apply_lut(clip: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map values through a 256-entry table: ``lut`` ``(256,)`` for every channel, or ``(N, 256)`` one per image
    channel in ``(..., C)`` order."""
    lut = lut.to(torch.uint8)
    if lut.dim() == 1:
        return lut[clip.long()]
    rows = _per_channel(clip)
    offsets = torch.arange(rows.shape[0], device=clip.device).unsqueeze(1) * 256
    return lut.reshape(-1)[rows.long() + offsets].reshape(clip.shape)


def _histogram(clip: torch.Tensor) -> torch.Tensor:
    """``(N, 256)`` value counts of each image channel, in ``(..., C)`` order."""
    rows = _per_channel(clip).long()
    hist = torch.zeros(rows.shape[0], 256, dtype=torch.int64, device=clip.device)
    return hist.scatter_add_(1, rows, torch.ones_like(rows))


def _blend(degenerate: Optional[torch.Tensor], clip: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, clip, factor)``: ``deg + factor * (clip - deg)`` in float32, truncated and
    clipped (``degenerate`` broadcasts; None: black)."""
    if factor == 1.0:
        return clip
    out = clip.float()
    if isinstance(degenerate, torch.Tensor):
        deg = degenerate.float()
        return out.sub_(deg).mul_(torch.tensor(factor, dtype=torch.float32)).add_(deg).clamp_(0, 255).to(torch.uint8)
    return out.mul_(torch.tensor(factor, dtype=torch.float32)).clamp_(0, 255).to(torch.uint8)  # black: deg = 0


def _grayscale(clip: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L conversion (integer ITU-R 601 weights), ``(..., 1, H, W)``."""
    r, g, b = clip.int().unbind(-3)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(-3)


def auto_contrast(clip: torch.Tensor, **_) -> torch.Tensor:
    present = _histogram(clip) > 0
    levels = torch.arange(256, device=clip.device)
    lo = torch.where(present, levels, 255).amin(1, keepdim=True).cpu().double()
    hi = torch.where(present, levels, 0).amax(1, keepdim=True).cpu().double()
    # Pillow's table in float64 (not every device has it): N x 256 entries, built on the CPU
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)  # (`255.0 / t` would multiply by 1 / t)
    levels = torch.arange(256, dtype=torch.float64)
    lut = (levels * scale - lo * scale).trunc().clamp(0, 255)
    lut = torch.where(hi > lo, lut, levels)  # a flat channel is left as it is
    return _apply_lut(clip, lut.to(clip.device))


def equalize(clip: torch.Tensor, **_) -> torch.Tensor:
    hist = _histogram(clip)
    last = hist.gather(1, (torch.arange(256, device=clip.device) * (hist > 0)).argmax(1, keepdim=True))
    step = (hist.sum(1, keepdim=True) - last) // 255
    below = hist.cumsum(1) - hist  # pixels in the bins before each value
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    levels = torch.arange(256, device=clip.device).expand_as(lut)
    return _apply_lut(clip, torch.where(step > 0, lut, levels))


def invert(clip: torch.Tensor, **_) -> torch.Tensor:
    return 255 - clip


def _levels(clip: torch.Tensor) -> torch.Tensor:
    return torch.arange(256, dtype=torch.int16, device=clip.device)


def posterize(clip: torch.Tensor, bits_to_keep: int, **_) -> torch.Tensor:
    if bits_to_keep >= 8:
        return clip
    return clip & (0xFF << (8 - bits_to_keep)) & 0xFF


def solarize(clip: torch.Tensor, thresh: int, **_) -> torch.Tensor:
    levels = _levels(clip)
    return _apply_lut(clip, torch.where(levels >= thresh, 255 - levels, levels))


def solarize_add(clip: torch.Tensor, add: int, thresh: int = 128, **_) -> torch.Tensor:
    levels = _levels(clip)
    return _apply_lut(clip, torch.where(levels < thresh, (levels + add).clamp(max=255), levels))


def color(clip: torch.Tensor, factor: float, **_) -> torch.Tensor:
    return _blend(_grayscale(clip), clip, factor)


def contrast(clip: torch.Tensor, factor: float, **_) -> torch.Tensor:
    gray = _grayscale(clip)
    pixels = gray.shape[-2] * gray.shape[-1]
    # Pillow's int(mean + 0.5), in integers: exact, and no float64 (which not every device has)
    mean = torch.div(2 * gray.sum((-3, -2, -1), keepdim=True) + pixels, 2 * pixels, rounding_mode='floor')
    return _blend(mean, clip, factor)


def brightness(clip: torch.Tensor, factor: float, **_) -> torch.Tensor:
    return _blend(None, clip, factor)


def sharpness(clip: torch.Tensor, factor: float, **_) -> torch.Tensor:
    # Pillow's SMOOTH filter (centre 5, neighbours 1, / 13, rounded) in integers; the one-pixel border stays as it is
    x = clip.short()
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    smooth = (box + 4 * x[..., 1:-1, 1:-1]) * 2 + 13
    degenerate = clip.clone()
    degenerate[..., 1:-1, 1:-1] = torch.div(smooth, 26, rounding_mode='floor')
    return _blend(degenerate, clip, factor)


def _affine(clip: torch.Tensor, matrix: Sequence[float], fill: Sequence[int], interpolation: str) -> torch.Tensor:
    """Pillow's ``Image.transform(AFFINE, matrix)``: output pixel centre ``(x, y)`` reads the input at
    ``(a x + b y + c, d x + e y + f)``; points outside the image get ``fill``, points inside interpolate with the
    edge pixels repeated."""
    a, b, c, d, e, f = matrix
    height, width = clip.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=clip.device) + 0.5,
                            torch.arange(width, device=clip.device) + 0.5, indexing='ij')
    src_x, src_y = a * xs + b * ys + c, d * xs + e * ys + f
    inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    grid = torch.stack([src_x * (2 / width) - 1, src_y * (2 / height) - 1], -1).unsqueeze(0)
    # all frames and channels as the channels of one image, channels last: one grid, grid_sample's fast layout
    lead = clip.shape[:-2]
    images = clip.reshape(1, -1, height, width).to(torch.float32, memory_format=torch.channels_last)
    out = F.grid_sample(images, grid, mode=interpolation, padding_mode='border', align_corners=False)
    if interpolation != 'nearest':
        out = out.floor_()
    fill_t = torch.tensor(fill, dtype=out.dtype, device=clip.device).repeat(out.shape[1] // len(fill)).view(-1, 1, 1)
    out = torch.where(inside, out.clamp_(0, 255), fill_t).to(torch.uint8)
    return out[0].permute(1, 2, 0).reshape(height, width, *lead).permute(*range(2, 2 + len(lead)), 0, 1)


def shear_x(clip: torch.Tensor, factor: float, fill=(128, 128, 128), interpolation='bilinear') -> torch.Tensor:
    return _affine(clip, (1, factor, 0, 0, 1, 0), fill, interpolation)


def shear_y(clip: torch.Tensor, factor: float, fill=(128, 128, 128), interpolation='bilinear') -> torch.Tensor:
    return _affine(clip, (1, 0, 0, factor, 1, 0), fill, interpolation)


def translate_x_abs(clip: torch.Tensor, pixels: float, fill=(128, 128, 128), interpolation='bilinear'):
    return _affine(clip, (1, 0, pixels, 0, 1, 0), fill, interpolation)


def translate_y_abs(clip: torch.Tensor, pixels: float, fill=(128, 128, 128), interpolation='bilinear'):
    return _affine(clip, (1, 0, 0, 0, 1, pixels), fill, interpolation)


def translate_x_rel(clip: torch.Tensor, pct: float, **kwargs) -> torch.Tensor:
    return translate_x_abs(clip, pct * clip.shape[-1], **kwargs)


def translate_y_rel(clip: torch.Tensor, pct: float, **kwargs) -> torch.Tensor:
    return translate_y_abs(clip, pct * clip.shape[-2], **kwargs)


def rotate(clip: torch.Tensor, degrees: float, fill=(128, 128, 128), interpolation='bilinear') -> torch.Tensor:
    """Pillow's ``Image.rotate(degrees)`` about the centre, same size, counter-clockwise."""
    height, width = clip.shape[-2:]
    angle = -math.radians(degrees % 360.0)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    cx, cy = width / 2.0, height / 2.0
    return _affine(clip, (cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy), fill,
                   interpolation)


def desaturate(clip: torch.Tensor, factor: float, **_) -> torch.Tensor:
    return color(clip, min(1., max(0., 1. - factor)))


# timm's op functions by name -> the same op on clip tensors; the geometric ones also take a fill and interpolation
_GEOMETRIC_OPS = (shear_x, shear_y, translate_x_abs, translate_y_abs, translate_x_rel, translate_y_rel, rotate)
_GEOMETRIC = frozenset(fn.__name__ for fn in _GEOMETRIC_OPS)
CLIP_OPS: Dict[str, Callable] = {fn.__name__: fn for fn in (
    auto_contrast, equalize, invert, posterize, solarize, solarize_add, color, contrast, brightness, sharpness,
    desaturate, *_GEOMETRIC_OPS)}

Draw = Tuple[str, tuple, dict]  # (op function name, level args, keyword args)
_PIL_RESAMPLE = {name: value for value, name in _PIL_INTERPOLATION.items()}


def _apply_pillow(clip: torch.Tensor, draws: Sequence[Draw]) -> torch.Tensor:
    """The drawn ops through timm's Pillow op functions, the same ops and arguments on every frame."""
    from PIL import Image
    from timm.data import auto_augment
    ops = [(getattr(auto_augment, name), args,
            dict(fillcolor=kw['fill'], resample=_PIL_RESAMPLE[kw['interpolation']]) if kw else {})
           for name, args, kw in draws]
    frames = clip.movedim(-3, -1)  # (..., H, W, C)
    out = np.empty(frames.shape, dtype=np.uint8)
    flat_in, flat_out = frames.reshape(-1, *frames.shape[-3:]).numpy(), out.reshape(-1, *frames.shape[-3:])
    for frame, dest in zip(flat_in, flat_out):
        image = Image.fromarray(frame)
        for op, args, kwargs in ops:
            image = op(image, *args, **kwargs)
        dest[...] = np.asarray(image)
    return torch.from_numpy(out).movedim(-1, -3)


class ClipRandAugment:
    """timm's RandAugment from a config string, drawn once per clip and applied to uint8 ``(..., C, H, W)``.

    Args:
        config_str: timm RandAugment string, e.g. ``'rand-m7-n4-mstd0.5-inc1'``.
        hparams: timm's hparams (``translate_const``, ``img_mean`` for the fill, ``interpolation``...).
        pillow_on_cpu: Apply a draw to a CPU clip with timm's own Pillow ops frame by frame (faster there than the
            tensor ops; see docs/benchmarks.md). Clips elsewhere always take the tensor ops, all frames at once.
    """

    def __init__(self, config_str: str, hparams: Optional[Dict] = None, pillow_on_cpu: bool = True):
        from timm.data.auto_augment import rand_augment_transform
        self.config_str = config_str
        self.pillow_on_cpu = pillow_on_cpu
        try:
            self.policy = rand_augment_transform(config_str, dict(hparams or {}))
        except (AssertionError, ValueError) as e:  # timm asserts on unknown sections
            raise ValueError(f"RandAugment {config_str!r} is not a timm RandAugment string such as "
                             f"'rand-m7-n4-mstd0.5-inc1' ({e or 'unknown section'})") from None
        unsupported = sorted({op.name for op in self.policy.ops if op.aug_fn.__name__ not in CLIP_OPS})
        if unsupported:
            raise ValueError(f'RandAugment {config_str!r}: ops {unsupported} have no clip-tensor version; '
                             f'supported: the ops of timm\'s rand / rand-inc1 / weighted policies and Desaturate')

    def draw(self, rng: random.Random) -> List[Draw]:
        """The ops, their arguments and interpolation for one clip, drawn as timm's RandAugment and AugmentOp do."""
        policy = self.policy
        weights = policy.choice_weights
        if weights is None:  # timm: np.random.choice with replacement
            ops = [policy.ops[rng.randrange(len(policy.ops))] for _ in range(policy.num_layers)]
        else:  # without replacement, weighted
            ops, pool, pool_w = [], list(policy.ops), [float(w) for w in weights]
            for _ in range(policy.num_layers):
                i = rng.choices(range(len(pool)), weights=pool_w)[0]
                ops.append(pool.pop(i))
                pool_w.pop(i)
        draws = []
        for op in ops:
            if op.prob < 1.0 and rng.random() > op.prob:
                continue
            magnitude = op.magnitude
            if op.magnitude_std == float('inf'):
                magnitude = rng.uniform(0, magnitude)
            elif op.magnitude_std > 0:
                magnitude = rng.gauss(magnitude, op.magnitude_std)
            magnitude = max(0., min(magnitude, op.magnitude_max or 10.))
            args = ()
            if op.level_fn is not None:  # timm's level functions draw the sign from `random`: give them our draw
                saved = random.getstate()
                random.seed(rng.getrandbits(64))
                try:
                    args = tuple(op.level_fn(magnitude, op.hparams))
                finally:
                    random.setstate(saved)
            kwargs = {}
            if op.aug_fn.__name__ in _GEOMETRIC:
                resample = op.kwargs['resample']
                if isinstance(resample, (list, tuple)):
                    resample = rng.choice(resample)
                kwargs = dict(fill=tuple(op.kwargs['fillcolor']), interpolation=_PIL_INTERPOLATION[int(resample)])
            draws.append((op.aug_fn.__name__, args, kwargs))
        return draws

    def apply(self, clip: torch.Tensor, draws: Sequence[Draw]) -> torch.Tensor:
        """Apply drawn ops to a clip (Pillow or tensor ops: see ``pillow_on_cpu``)."""
        if not draws:
            return clip
        if clip.device.type == 'cpu' and self.pillow_on_cpu:
            return _apply_pillow(clip, draws)
        for name, args, kwargs in draws:
            clip = CLIP_OPS[name](clip, *args, **kwargs)
        return clip

    def __call__(self, clip: torch.Tensor, rng: Optional[random.Random] = None) -> torch.Tensor:
        """uint8 ``(..., C, H, W)`` (all frames of one clip) -> the same shape, augmented."""
        if clip.dtype != torch.uint8:
            raise TypeError(f'RandAugment takes uint8 clips, got {clip.dtype}')
        return self.apply(clip, self.draw(rng or random.Random()))

    def augment_batch(self, clips: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """uint8 batch ``(B, C, T, H, W)`` (on any device) -> each clip augmented with its own draw."""
        return torch.stack([self(clip.transpose(0, 1), rng).transpose(0, 1) for clip in clips])

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.config_str!r})'
