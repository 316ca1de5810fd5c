"""Which frames make a clip: dense sampling (Kinetics) and uniform segment sampling (SSv1/v2, Diving-48)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..clip import SAMPLINGS, ClipConfig

__all__ = ['ClipSampler', 'dense_indices', 'uniform_indices']


def _fit_short(indices: np.ndarray, video_frames: int) -> np.ndarray:
    """Indices past the end of a short video: stretch the clip over the video instead, repeating frames in order."""
    if indices.max() < video_frames:
        return indices
    num_frames = indices.shape[-1]
    return np.broadcast_to(np.arange(num_frames) * video_frames // num_frames, indices.shape).copy()


def dense_indices(video_frames: int, num_frames: int, frame_interval: int, num_clips: int = 1, train: bool = False,
                  rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Clips of ``num_frames`` frames ``frame_interval`` apart from a video of ``video_frames``,
    ``(num_clips, num_frames)``.

    Training: each clip starts at a random offset within its share of the video. Test: clips evenly spread,
    each centred in its share (deterministic). Videos shorter than a clip repeat frames in order.
    """
    span = num_frames * frame_interval
    room = video_frames - span + 1
    share = max(room, 1) / num_clips
    if train:
        rng = rng or np.random.default_rng()
        starts = (np.arange(num_clips) * share + rng.random(num_clips) * share).astype(np.int64)
    else:
        starts = (np.arange(num_clips) * share + share / 2).astype(np.int64)
    starts = np.minimum(starts, max(room - 1, 0))
    return _fit_short(starts[:, None] + np.arange(num_frames) * frame_interval, video_frames)


def uniform_indices(video_frames: int, num_frames: int, num_clips: int = 1, train: bool = False,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """One frame from each of ``num_frames`` equal segments of a video of ``video_frames``, ``(num_clips,
    num_frames)``.

    Training: a random frame within each segment. Test: clip ``j`` takes position ``(j + 0.5) / num_clips`` of every
    segment (the centre for one clip). Short videos repeat frames in order.
    """
    segment = video_frames / num_frames
    if train:
        rng = rng or np.random.default_rng()
        position = rng.random((num_clips, num_frames))
    else:
        position = np.broadcast_to(((np.arange(num_clips) + 0.5) / num_clips)[:, None], (num_clips, num_frames))
    indices = ((np.arange(num_frames) + position) * segment).astype(np.int64)
    return np.minimum(indices, video_frames - 1)


@dataclass
class ClipSampler:
    """Frame indices of ``num_clips`` clips of ``num_frames`` (clip frames ``T``) for a video of ``video_frames``
    frames, in training or test mode; ``ClipSampler.for_clip`` makes the one a ``ClipConfig`` describes."""
    num_frames: int
    frame_interval: int
    num_clips: int
    mode: str  # 'dense' or 'uniform'

    def __post_init__(self):
        if self.mode not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.mode!r}")
        if self.num_frames < 1 or self.frame_interval < 1 or self.num_clips < 1:
            raise ValueError(f'num_frames, frame_interval and num_clips must be >= 1, got {self}')

    @classmethod
    def for_clip(cls, clip: ClipConfig, num_clips: int = 1) -> 'ClipSampler':
        return cls(clip.num_frames, clip.frame_interval, num_clips, clip.sampling)

    def __call__(self, video_frames: int, train: bool = False, rng: Optional[np.random.Generator] = None
                 ) -> np.ndarray:
        if self.mode == 'dense':
            return dense_indices(video_frames, self.num_frames, self.frame_interval, self.num_clips, train, rng)
        return uniform_indices(video_frames, self.num_frames, self.num_clips, train, rng)
