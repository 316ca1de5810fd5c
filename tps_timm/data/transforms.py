"""Clip transforms on uint8 tensors ``(T, C, H, W)``: every frame of a clip gets the same random parameters.

Geometry uses torchvision's tensor functionals, which treat leading dims as a batch, so one crop box and one flip
serve all frames by construction. Training makes one resize: the crop box is drawn on the frame as it would be after
the short-side resize and read from the frame as decoded. RandAugment (timm's policy, ``ClipRandAugment``) is drawn
once per clip and applied to all frames at once, in the loader worker or later on the batch.
Normalisation and random erasing run late, on the batch and on the accelerator when there is one.
"""
import math
import random
from typing import Dict, Optional, Sequence, Tuple

import torch
import torchvision.transforms.v2.functional as TF

from .rand_augment import ClipRandAugment
from .video_io import short_side_size

__all__ = ['short_side_resize', 'ClipTrainTransform', 'ClipEvalTransform', 'normalize_clip',
           'ClipRandomErasing']

def short_side_resize(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(..., H, W)`` so that its short side is ``size``, keeping the aspect ratio."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    return TF.resize(clip, list(short_side_size(height, width, size)), antialias=True)


def _random_resized_box(height: int, width: int, scale: Tuple[float, float], ratio: Tuple[float, float],
                        rng: random.Random) -> Tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop with area fraction in ``scale`` and aspect ratio in ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(height, width)  # fall back to a centre crop
    return (height - side) // 2, (width - side) // 2, side, side


class ClipTrainTransform:
    """Training augmentation: RandomResizedCrop of the short-side-resized frame (made as one resize), flip (with
    label swap), RandAugment.

    Args:
        size: Output crop size.
        short_side: Short side after the first resize (``ClipConfig.train_short_side``: 256 in the authors'
            recipes).
        scale: Area range of RandomResizedCrop.
        ratio: Aspect ratio range of RandomResizedCrop.
        hflip: Probability of a horizontal flip.
        flip_label_map: Labels swapped by a flip (``tps_timm.data.flip_label_map`` of the class-name pairs).
        rand_augment: timm RandAugment config string, e.g. ``'rand-m7-n4-mstd0.5-inc1'``, or None.
    """

    def __init__(
            self,
            size: int,
            short_side: int,
            scale: Tuple[float, float] = (0.08, 1.0),
            ratio: Tuple[float, float] = (3 / 4, 4 / 3),
            hflip: float = 0.5,
            flip_label_map: Optional[Dict[int, int]] = None,
            rand_augment: Optional[str] = None,
    ):
        self.size = size
        self.short_side = short_side
        self.scale = scale
        self.ratio = ratio
        self.hflip = hflip
        self.flip_label_map = dict(flip_label_map or {})
        self.rand_augment = ClipRandAugment(rand_augment, rand_augment_hparams(size)) if rand_augment else None

    def __call__(self, clip: torch.Tensor, label: int, rng: Optional[random.Random] = None) -> Tuple[torch.Tensor, int]:
        """uint8 ``(T, C, H, W)`` -> augmented uint8 ``(T, C, size, size)`` and the (possibly swapped) label."""
        rng = rng or random.Random()
        height, width = clip.shape[-2:]
        resized_h, resized_w = short_side_size(height, width, self.short_side)
        top, left, h, w = _random_resized_box(resized_h, resized_w, self.scale, self.ratio, rng)
        sy, sx = height / resized_h, width / resized_w  # the box on the frame as decoded: one resize, not two
        top, left = round(top * sy), round(left * sx)
        h, w = max(1, min(round(h * sy), height - top)), max(1, min(round(w * sx), width - left))
        clip = TF.resized_crop(clip, top, left, h, w, [self.size, self.size], antialias=True)
        if rng.random() < self.hflip:
            clip = TF.horizontal_flip(clip)
            label = self.flip_label_map.get(label, label)
        if self.rand_augment is not None:
            clip = self.rand_augment(clip, rng)
        return clip, label


def rand_augment_hparams(size: int) -> Dict:
    """timm's RandAugment hparams for a crop of ``size`` (as timm's transforms_factory sets them)."""
    return dict(translate_const=int(size * 0.45), img_mean=(124, 116, 104))


class ClipEvalTransform:
    """Test views: short-side resize (default: to the crop size, the authors' test protocol), then a centre crop or
    three crops along the long side.

    Returns uint8 ``(num_crops, T, C, size, size)``.
    """

    def __init__(self, size: int, short_side: Optional[int] = None, num_crops: int = 1):
        if num_crops not in (1, 3):
            raise ValueError(f'num_crops must be 1 or 3, got {num_crops}')
        self.size = size
        self.short_side = short_side or size
        self.num_crops = num_crops

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        clip = short_side_resize(clip, self.short_side)
        height, width = clip.shape[-2:]
        if self.num_crops == 1:
            return TF.center_crop(clip, [self.size, self.size]).unsqueeze(0)
        crops = []
        for frac in (0.0, 0.5, 1.0):  # first, middle, last along the long side
            top = round((height - self.size) * frac) if height > width else (height - self.size) // 2
            left = round((width - self.size) * frac) if width >= height else (width - self.size) // 2
            crops.append(TF.crop(clip, top, left, self.size, self.size))
        return torch.stack(crops)


def normalize_clip(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 clips ``(..., C, T, H, W)`` -> float, ``(x / 255 - mean) / std`` per channel."""
    shape = (len(mean), 1, 1, 1)
    mean_t = torch.tensor(mean, device=clip.device).view(shape) * 255
    std_t = torch.tensor(std, device=clip.device).view(shape) * 255
    return (clip.float() - mean_t) / std_t


class ClipRandomErasing:
    """timm's RandomErasing with one box per clip, for normalised batches ``(B, C, T, H, W)``.

    Frames are folded into channels so that timm draws a single box for the whole clip.
    """

    def __init__(self, probability: float = 0.25, mode: str = 'pixel', device: str = 'cpu'):
        from timm.data.random_erasing import RandomErasing
        self.probability = probability
        self.erase = RandomErasing(probability, mode=mode, device=device)

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        if self.probability <= 0:
            return clips
        batch, channels, frames, height, width = clips.shape
        folded = clips.reshape(batch, channels * frames, height, width)
        for sample in folded:
            self.erase(sample)  # in place, on a view of the clip
        return folded.view(clips.shape)
