"""Timeline items: the windows of whole videos, each a test clip, decoded in one pass over each file.

:class:`WindowItems` turns one video into its windows (:func:`~tps_timm.data.sampling.sliding_windows`), as
:class:`~tps_timm.data.dataset.ClipItems` turns one into its test views; :class:`VideoWindows` reads the videos of a
list or table with it, and :class:`~tps_timm.data.shards.ShardedEvalClips` reads shards (and streamed Hugging Face
datasets) with it, so a timeline reads every source that ``predict`` reads.
"""
import logging
from typing import Dict, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..clip import ClipConfig
from .sampling import ClipSampler, WindowLayout, sliding_windows, window_seconds
from .transforms import ClipEvalTransform
from .video_io import VideoReadError, decoded_frames, frame_to_rgb

__all__ = ['WindowItems', 'VideoWindows']

_logger = logging.getLogger(__name__)


class WindowItems:
    """How one video becomes timeline items: windows of ``window`` seconds (default: :func:`window_seconds` of the
    clip) every ``stride`` seconds (default: half a window), each sampled as the clip's first test clip and given one
    centre crop.

    Items are dicts: ``video`` uint8 ``(1, C, T, H, W)``, ``label``, ``index`` (the video's), ``window`` (its number
    in the video), ``start`` / ``end`` (seconds), ``fps``, ``seconds`` / ``stride`` (the window's length and
    step, in whole frames), ``padded`` (the video is
    shorter than a window), ``readable`` and ``error``. A video that cannot be read (or stops decoding midway) ends
    with an item of ``readable=False`` and ``window=-1`` carrying the reason.
    """
    max_retries = 0  # evaluation replaces no video

    def __init__(self, clip: ClipConfig, window: Optional[float] = None, stride: Optional[float] = None,
                 short_side: Optional[int] = None):
        self.clip = clip
        self.window = window
        self.stride = stride
        self.sampler = ClipSampler.for_clip(clip, 1)
        self.transform = ClipEvalTransform(clip.img_size, short_side, 1)
        window_seconds(clip, 1.0, window)  # fail at once, not per video, when no window can be known

    def eval_items(self, name: str, label: int, index: int, data: Optional[bytes] = None) -> Iterator[Dict]:
        """The windows of video ``name`` (or of its bytes ``data``) as items, in order."""
        try:
            with decoded_frames(name, data) as (rate, _, frames):
                fps = float(rate)
                seconds = window_seconds(self.clip, fps, self.window)
                layout = WindowLayout.from_seconds(seconds, self.stride or seconds / 2, fps)
                number = -1
                for number, window in enumerate(sliding_windows(frames, layout, self.sampler, frame_to_rgb)):
                    clip = torch.from_numpy(np.stack(window.frames)).permute(0, 3, 1, 2)  # T, C, H, W
                    view = self.transform(clip)  # (1, T, C, H, W)
                    yield dict(video=view.permute(0, 2, 1, 3, 4).contiguous(), label=label, index=index,
                               window=number, start=window.start / fps, end=window.end / fps, fps=fps,
                               seconds=layout.window_frames / fps, stride=layout.stride_frames / fps,
                               padded=window.padded, readable=True, error='')
                if number < 0:
                    raise VideoReadError(name, 'no frames decoded')
        except VideoReadError as e:
            yield self.unreadable_eval_item(name, e.reason, index, label)

    def unreadable_eval_item(self, name: str, reason: str, index: int, label: int = -1) -> Dict:
        """What a video that cannot be read (further) gives: no clip, ``readable=False`` and the reason."""
        _logger.warning(f'unreadable video {name}: {reason}')
        size = self.clip.img_size
        return dict(video=torch.zeros(1, 3, self.clip.num_frames, size, size, dtype=torch.uint8), label=label,
                    index=index, window=-1, start=0.0, end=0.0, fps=0.0, seconds=0.0, stride=0.0, padded=False,
                    readable=False, error=reason)


class VideoWindows(IterableDataset):
    """The windows of every video of a table (a :class:`~tps_timm.data.annotations.VideoList`, a Hugging Face
    table: anything with ``__len__`` and ``video(index) -> (name, bytes or None, label)``), the videos dealt to the
    loader's workers in turn; items as :class:`WindowItems` gives them, with ``name``."""

    def __init__(self, videos, items: WindowItems):
        self.videos = videos
        self.items = items

    def __iter__(self) -> Iterator[Dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in range(worker, len(self.videos), workers):
            try:
                name, data, label = self.videos.video(index)
            except VideoReadError as e:
                yield dict(self.items.unreadable_eval_item(e.path, e.reason, index), name=e.path)
                continue
            for item in self.items.eval_items(name, label, index, data):
                yield dict(item, name=name)
