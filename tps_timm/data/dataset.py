"""Video clip datasets: decode, sample, transform; unreadable files never stop a run."""
import logging
import random
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import VideoList
from .sampling import ClipSampler
from .transforms import ClipEvalTransform, ClipTrainTransform
from .video_io import VideoReadError, load_clip

__all__ = ['VideoDataset']

_logger = logging.getLogger(__name__)


class VideoDataset(Dataset):
    """Clips of the videos in a :class:`VideoList`.

    Training items are ``(clip uint8 (C, T, H, W), label)``, or with ``repeated_aug=N > 1`` N differently augmented
    clips of one decode, ``(clips (N, C, T, H, W), labels (N,))`` (:func:`tps_timm.data.collate_clips` makes batches
    of them). An item may be asked for as ``(index, seed)`` (:class:`tps_timm.data.SeededRandomSampler`): the seed,
    drawn in the main process, fixes every random choice, so the clips do not depend on the worker count. An
    unreadable video is reported by path and reason and replaced by another one.

    Evaluation items are dicts with ``video`` uint8 ``(views, C, T, H, W)`` (clips x crops), ``label``, ``index``,
    ``readable`` and ``error`` (the reason, if unreadable); an unreadable video comes back zero-filled with
    ``readable=False`` so that evaluation can count it and leave it out of the accuracy.
    """

    def __init__(
            self,
            videos: VideoList,
            sampler: ClipSampler,
            transform,
            train: bool = False,
            backend: Optional[str] = None,
            max_retries: int = 10,
            repeated_aug: int = 1,
    ):
        if repeated_aug < 1:
            raise ValueError(f'repeated_aug must be >= 1, got {repeated_aug}')
        if not videos.samples:
            raise ValueError('the video list is empty')
        self.videos = videos
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.backend = backend
        self.max_retries = max_retries
        self.repeated_aug = repeated_aug
        if train != isinstance(transform, ClipTrainTransform) and isinstance(transform, (ClipTrainTransform,
                                                                                            ClipEvalTransform)):
            raise ValueError('train=True needs a ClipTrainTransform, evaluation a ClipEvalTransform')

    @property
    def class_names(self):
        return self.videos.class_names

    def __len__(self) -> int:
        return len(self.videos.samples)

    def decode(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``(clips, T, C, H, W)`` of video ``index``, frames chosen by the sampler with ``rng``."""
        path, _ = self.videos.samples[index]
        frames, _ = load_clip(path, lambda n: self.sampler(n, self.train, rng), self.backend)
        return torch.from_numpy(frames).permute(0, 1, 4, 2, 3)  # clips, T, C, H, W

    def __getitem__(self, item: Union[int, Tuple[int, int]]):
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is None:  # no seed from the sampler: the worker's torch seeding drives all randomness
            seed = int(torch.randint(2 ** 62, ()).item())
        rng = np.random.default_rng(seed)
        if self.train:
            return self._train_item(index, rng, random.Random(seed))
        return self._eval_item(index, rng)

    def _train_item(self, index: int, rng: np.random.Generator, py_rng: random.Random):
        error = None
        for _ in range(self.max_retries + 1):
            try:
                clip = self.decode(index, rng)[0]
                break
            except VideoReadError as e:
                _logger.warning(f'skipping unreadable video {e.path}: {e.reason}')
                error, index = e, int(rng.integers(len(self)))
        else:
            raise RuntimeError(f'{self.max_retries + 1} videos in a row were unreadable; last: {error}')
        return self.augment(clip, self.videos.samples[index][1], py_rng)

    def augment(self, clip: torch.Tensor, label: int, rng: random.Random):
        """A decoded clip ``(T, C, H, W)`` -> the training item (``repeated_aug`` augmentations of it)."""
        if self.repeated_aug == 1:
            clip, label = self.transform(clip, label, rng)
            return clip.permute(1, 0, 2, 3), label  # collation copies it into the batch: no copy here
        views = [self.transform(clip, label, rng) for _ in range(self.repeated_aug)]
        return torch.stack([v.permute(1, 0, 2, 3) for v, _ in views]), torch.tensor([lab for _, lab in views])

    def _eval_item(self, index: int, rng: np.random.Generator) -> Dict[str, torch.Tensor]:
        label = self.videos.samples[index][1]
        error = ''
        try:
            clips = self.decode(index, rng)
            views = torch.cat([self.transform(clip) for clip in clips])  # clips x crops, T, C, H, W
            readable = True
        except VideoReadError as e:
            _logger.warning(f'unreadable video {e.path}: {e.reason}')
            error = e.reason
            size = self.transform.size
            views = torch.zeros(self.sampler.num_clips * self.transform.num_crops, self.sampler.clip_len, 3, size,
                                size, dtype=torch.uint8)
            readable = False
        return dict(video=views.permute(0, 2, 1, 3, 4).contiguous(), label=label, index=index, readable=readable,
                    error=error)
