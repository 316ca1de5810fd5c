"""Which frames make a clip: dense sampling (Kinetics) and uniform segment sampling (SSv1/v2, Diving-48)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ['ClipSampler', 'dense_indices', 'uniform_indices']


def _fit_short(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """Indices past the end of a short video: stretch the clip over the video instead, repeating frames in order."""
    if indices.max() < num_frames:
        return indices
    clip_len = indices.shape[-1]
    return np.broadcast_to(np.arange(clip_len) * num_frames // clip_len, indices.shape).copy()


def dense_indices(num_frames: int, clip_len: int, frame_interval: int, num_clips: int = 1, train: bool = False,
                  rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Clips of ``clip_len`` frames ``frame_interval`` apart, ``(num_clips, clip_len)``.

    Training: each clip starts at a random offset within its share of the video. Test: clips evenly spread,
    each centred in its share (deterministic). Videos shorter than a clip repeat frames in order.
    """
    span = clip_len * frame_interval
    room = num_frames - span + 1
    share = max(room, 1) / num_clips
    if train:
        rng = rng or np.random.default_rng()
        starts = (np.arange(num_clips) * share + rng.random(num_clips) * share).astype(np.int64)
    else:
        starts = (np.arange(num_clips) * share + share / 2).astype(np.int64)
    starts = np.minimum(starts, max(room - 1, 0))
    return _fit_short(starts[:, None] + np.arange(clip_len) * frame_interval, num_frames)


def uniform_indices(num_frames: int, clip_len: int, num_clips: int = 1, train: bool = False,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """One frame from each of ``clip_len`` equal segments, ``(num_clips, clip_len)``.

    Training: a random frame within each segment. Test: clip ``j`` takes position ``(j + 0.5) / num_clips`` of every
    segment (the centre for one clip). Short videos repeat frames in order.
    """
    segment = num_frames / clip_len
    if train:
        rng = rng or np.random.default_rng()
        position = rng.random((num_clips, clip_len))
    else:
        position = np.broadcast_to(((np.arange(num_clips) + 0.5) / num_clips)[:, None], (num_clips, clip_len))
    indices = ((np.arange(clip_len) + position) * segment).astype(np.int64)
    return np.minimum(indices, num_frames - 1)


@dataclass
class ClipSampler:
    """Frame indices for a video of ``num_frames`` frames, in training or test mode."""
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 1
    mode: str = 'dense'  # 'dense' or 'uniform'

    def __post_init__(self):
        if self.mode not in ('dense', 'uniform'):
            raise ValueError(f"sampling must be 'dense' or 'uniform', got {self.mode!r}")
        if self.clip_len < 1 or self.frame_interval < 1 or self.num_clips < 1:
            raise ValueError(f'clip_len, frame_interval and num_clips must be >= 1, got {self}')

    def __call__(self, num_frames: int, train: bool = False, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        if self.mode == 'dense':
            return dense_indices(num_frames, self.clip_len, self.frame_interval, self.num_clips, train, rng)
        return uniform_indices(num_frames, self.clip_len, self.num_clips, train, rng)
