"""Which frames make a clip: dense sampling (Kinetics) and uniform segment sampling (SSv1/v2, Diving-48), and the
windows of a longer video (a timeline, a stream), each sampled as one test clip."""
import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, TypeVar

import numpy as np

from ..clip import SAMPLINGS, ClipConfig

__all__ = ['ClipSampler', 'dense_indices', 'uniform_indices', 'WindowLayout', 'Window', 'window_seconds',
           'sliding_windows']

Frame = TypeVar('Frame')  # a decoded frame, converted to an array only when a window takes it


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


def window_seconds(clip: ClipConfig, fps: float, window: Optional[float] = None) -> float:
    """The duration of one window of a timeline: ``window`` if given; for dense sampling the clip's span
    (``num_frames x frame_interval`` frames at ``fps``); for uniform sampling, where a clip spans a whole training
    video, the median training-video duration recorded in the model's config.

    Raises:
        ValueError: Uniform sampling and no duration recorded (a model trained before it was): give ``window``.
    """
    if window is not None:
        if not window > 0:
            raise ValueError(f'--window must be > 0 seconds, got {window}')
        return float(window)
    if clip.sampling == 'dense':
        return clip.num_frames * clip.frame_interval / fps
    if clip.train_video_seconds is None:
        raise ValueError('the model samples clips uniformly over a whole video, and its config does not record how '
                         'long its training videos were (trained before tps-timm 0.5): give --window SECONDS')
    return float(clip.train_video_seconds)


@dataclass(frozen=True)
class WindowLayout:
    """Windows of ``window_frames`` frames of a video, one starting every ``stride_frames`` frames."""
    window_frames: int
    stride_frames: int

    @classmethod
    def from_seconds(cls, window: float, stride: float, fps: float) -> 'WindowLayout':
        if not stride > 0:
            raise ValueError(f'--stride must be > 0 seconds, got {stride}')
        return cls(max(1, round(window * fps)), max(1, round(stride * fps)))

    def clip_indices(self, sampler: 'ClipSampler', window_frames: Optional[int] = None) -> np.ndarray:
        """The frames of one window (``window_frames`` of them, default a whole window) that make its clip, as
        offsets from the window's first frame: the sampler's first test clip."""
        return sampler(window_frames or self.window_frames, train=False)[0]


class Window(NamedTuple):
    """One window of a video: frames ``start`` to ``end`` (exclusive) and its clip ``(T, ...)`` of frames;
    ``padded``: the video is shorter than a window, and the clip repeats its frames."""
    start: int
    end: int
    frames: List
    padded: bool


class _Buffered:
    __slots__ = ('index', 'frame', 'array')

    def __init__(self, index: int, frame: Any):
        self.index, self.frame, self.array = index, frame, None


def sliding_windows(frames: Iterable[Frame], layout: WindowLayout, sampler: 'ClipSampler',
                    to_array: Callable[[Frame], np.ndarray] = np.asarray) -> Iterator[Window]:
    """The windows of a video read once, frame by frame: each as soon as its last frame is decoded.

    Windows start every ``stride_frames`` frames; when the last one ends before the video does, one more ends
    with the video, so every frame is in a window. A video shorter than a window gives one window of all of it
    (``padded``). Only the last window's frames are kept, and a frame is converted (``to_array``) once, when a
    window first takes it.
    """
    buffer: collections.deque = collections.deque(maxlen=layout.window_frames)
    offsets = layout.clip_indices(sampler)

    def clip(start: int, window_offsets: np.ndarray) -> List:
        first = buffer[0].index
        taken = []
        for offset in window_offsets.tolist():
            item = buffer[start + offset - first]
            if item.array is None:
                item.array = to_array(item.frame)
                item.frame = None  # the decoded frame is not needed again
            taken.append(item.array)
        return taken

    next_start, last_end, total = 0, 0, 0
    for index, frame in enumerate(frames):
        buffer.append(_Buffered(index, frame))
        total = index + 1
        if total == next_start + layout.window_frames:
            yield Window(next_start, total, clip(next_start, offsets), False)
            last_end, next_start = total, next_start + layout.stride_frames
    if total and total < layout.window_frames:
        yield Window(0, total, clip(0, layout.clip_indices(sampler, total)), True)
    elif total and last_end < total:  # the tail: a window ending with the video
        start = total - layout.window_frames
        yield Window(start, total, clip(start, offsets), False)
