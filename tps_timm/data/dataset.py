"""Video clip datasets: decode, sample, transform; unreadable files never stop a run."""
import logging
import random
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import VideoList
from .sampling import ClipSampler
from .transforms import ClipEvalTransform, ClipTrainTransform
from .video_io import VideoReadError, load_clip, video_seconds

__all__ = ['ClipItems', 'VideoDataset', 'TooManyUnreadable', 'check_unreadable', 'item_seed', 'unreadable_line',
           'median_video_seconds']

_logger = logging.getLogger(__name__)
_SHOWN = 3  # unreadable videos named in an error


class TooManyUnreadable(ValueError):
    """More unreadable videos than ``--max-unreadable`` allows, or none readable at all."""


def check_unreadable(count: int, total: int, max_fraction: float, what: str = 'videos',
                     examples: Sequence[str] = ()) -> None:
    """Raise :class:`TooManyUnreadable` when none of ``total`` videos was readable or more than ``max_fraction`` of
    them (``count``) were not; the message counts them and names the first of ``examples`` (their paths)."""
    if not count:
        return
    if count >= total:
        problem = f'none of the {total} {what} was readable'
    elif count > max_fraction * total:
        problem = f'{count} of {total} {what} ({count / total:.1%}) were unreadable, more than --max-unreadable ' \
                  f'{max_fraction:g} allows'
    else:
        return
    shown = list(examples[:_SHOWN])
    if count > len(shown):
        shown.append(f'and {count - len(shown)} more' if shown else f'{count} not named here')
    raise TooManyUnreadable(f'{problem}: {"; ".join(shown)}')


class ClipItems:
    """How one video becomes a dataset item, whatever holds it (a file of a list, a member of a tar shard): frames
    chosen by ``sampler``, decoded (from the file, or from its bytes), and transformed. :class:`VideoDataset` and the
    shard datasets (:mod:`tps_timm.data.shards`) share it, so that every source gives the same clips for the same
    seed.

    Training items are ``(clip uint8 (C, T, H, W), label, unreadable)``, or with ``repeated_aug=N > 1`` N differently
    augmented clips of one decode, ``(N clips (C, T, H, W), labels (N,), unreadable)``
    (:func:`tps_timm.data.collate_clips` makes batches of them); ``unreadable`` names (``name: reason`` lines) the
    unreadable videos the item replaced, so that the training loop counts them. Evaluation items are dicts with
    ``video`` uint8 ``(views, C, T, H, W)`` (clips x crops), ``label``, ``index``, ``readable`` and ``error`` (the
    reason, if unreadable); an unreadable video comes back zero-filled with ``readable=False`` so that evaluation
    can count it and leave it out of the accuracy.
    """

    def __init__(self, sampler: ClipSampler, transform, train: bool = False, backend: Optional[str] = None,
                 max_retries: int = 10, repeated_aug: int = 1):
        if repeated_aug < 1:
            raise ValueError(f'repeated_aug must be >= 1, got {repeated_aug}')
        if train != isinstance(transform, ClipTrainTransform) and isinstance(transform, (ClipTrainTransform,
                                                                                            ClipEvalTransform)):
            raise ValueError('train=True needs a ClipTrainTransform, evaluation a ClipEvalTransform')
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.backend = backend
        self.max_retries = max_retries
        self.repeated_aug = repeated_aug
        self._noted_short = False

    def decode(self, name: str, rng: np.random.Generator, data: Optional[bytes] = None) -> torch.Tensor:
        """uint8 ``(clips, T, C, H, W)`` of the video ``name`` (or of its bytes ``data``), frames chosen by the
        sampler with ``rng``."""
        frames, _ = load_clip(name, lambda n: self._indices(name, n, rng), self.backend, data=data)
        return torch.from_numpy(frames).permute(0, 1, 4, 2, 3)  # clips, T, C, H, W

    def _indices(self, name: str, video_frames: int, rng: np.random.Generator) -> np.ndarray:
        if video_frames < self.sampler.num_frames and not self._noted_short:
            self._noted_short = True  # once per dataset (and loader worker): short videos may be many
            _logger.warning(f'{name} has {video_frames} frame{"s" if video_frames != 1 else ""}, fewer than the '
                            f'{self.sampler.num_frames} of a clip: its frames are repeated (said once)')
        return self.sampler(video_frames, self.train, rng)

    def augment(self, clip: torch.Tensor, label: int, rng: random.Random):
        """A decoded clip ``(T, C, H, W)`` -> the training item (``repeated_aug`` augmentations of it)."""
        if self.repeated_aug == 1:
            clip, label = self.transform(clip, label, rng)
            return clip.permute(1, 0, 2, 3), label  # collation copies it into the batch: no copy here
        views = [self.transform(clip, label, rng) for _ in range(self.repeated_aug)]
        # the views as they are: collate_clips writes each into the batch once (a stack here would copy them twice)
        return tuple(v.permute(1, 0, 2, 3) for v, _ in views), torch.tensor([lab for _, lab in views])

    def failed_train_item(self, unreadable: Sequence[str]):
        """The item after ``max_retries + 1`` unreadable videos in a row: zeros, which the training loop stops on."""
        size = self.transform.size
        clip = torch.zeros(self.sampler.num_frames, 3, size, size, dtype=torch.uint8)
        return (*self.augment(clip, 0, random.Random(0)), '\n'.join(unreadable))

    def eval_item(self, name: str, label: int, index: int, data: Optional[bytes] = None) -> Dict[str, torch.Tensor]:
        """The test views of one video (deterministic: the test sampling draws nothing)."""
        try:
            clips = self.decode(name, np.random.default_rng(0), data)
        except VideoReadError as e:
            return self.unreadable_eval_item(e.path, e.reason, index, label)
        views = torch.cat([self.transform(clip) for clip in clips])  # clips x crops, T, C, H, W
        return dict(video=views.permute(0, 2, 1, 3, 4).contiguous(), label=label, index=index, readable=True,
                    error='')

    def eval_items(self, name: str, label: int, index: int, data: Optional[bytes] = None) -> Iterator[Dict]:
        """The items of one video for a stream of them: its one item (a timeline's :class:`WindowItems` gives
        several)."""
        yield self.eval_item(name, label, index, data)

    def unreadable_eval_item(self, name: str, reason: str, index: int, label: int = -1) -> Dict[str, torch.Tensor]:
        """A video that cannot be evaluated: zero views, ``readable=False`` and the reason, which evaluation counts
        and leaves out of the accuracy."""
        _logger.warning(f'unreadable video {name}: {reason}')
        size = self.transform.size
        views = torch.zeros(self.sampler.num_clips * self.transform.num_crops, 3, self.sampler.num_frames, size, size,
                            dtype=torch.uint8)
        return dict(video=views, label=label, index=index, readable=False, error=reason)


def unreadable_line(e: VideoReadError) -> str:
    """An unreadable video as a training item names it: ``name: reason`` on one line."""
    return f'{e.path}: {" ".join(e.reason.split())}'


def item_seed(*parts) -> int:
    """A 62-bit seed from integers (e.g. the run's seed, the epoch, a key's hash), the same on every platform."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(2))


class VideoDataset(ClipItems, Dataset):
    """Clips of the videos in a :class:`VideoList`, or any table of videos with its ``__len__``, ``video(index) ->
    (name, bytes or None, label)``, ``name(index)`` and ``class_names`` (e.g. a Hugging Face dataset,
    :class:`tps_timm.data.hf.HfVideoTable`): the items of :class:`ClipItems`.

    An item may be asked for as ``(index, seed)`` (:class:`tps_timm.data.SeededRandomSampler`): the seed, drawn in the
    main process, fixes every random choice, so the clips do not depend on the worker count. An unreadable training
    video is replaced by another one drawn at random; when ``max_retries`` replacements fail too, the item is
    zero-filled (the loop stops the run on it).
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
        super().__init__(sampler, transform, train, backend, max_retries, repeated_aug)
        if not len(videos):
            raise ValueError('the video list is empty')
        self.videos = videos

    @property
    def class_names(self):
        return self.videos.class_names

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, index: int, rng: np.random.Generator) -> Tuple[torch.Tensor, int]:
        """uint8 ``(clips, T, C, H, W)`` of video ``index``, and its label."""
        name, data, label = self.videos.video(index)
        return self.decode(name, rng, data), label

    def __getitem__(self, item: Union[int, Tuple[int, int]]):
        index, seed = item if isinstance(item, tuple) else (item, None)
        if not self.train:
            try:  # a table's row may be unusable before any decoding (e.g. no video in it)
                name, data, label = self.videos.video(index)
            except VideoReadError as e:
                return self.unreadable_eval_item(e.path, e.reason, index)
            return self.eval_item(name, label, index, data)
        if seed is None:  # no seed from the sampler: the worker's torch seeding drives all randomness
            seed = int(torch.randint(2 ** 62, ()).item())
        rng = np.random.default_rng(seed)
        unreadable = []
        for _ in range(self.max_retries + 1):
            try:
                clips, label = self.load(index, rng)
                clip = clips[0]
                break
            except VideoReadError as e:
                _logger.debug(f'replacing unreadable video {e.path}: {e.reason}')  # the training loop reports them
                unreadable.append(unreadable_line(e))
                index = int(rng.integers(len(self)))
        else:  # not one readable video in a row of draws
            return self.failed_train_item(unreadable)
        return (*self.augment(clip, label, random.Random(seed)), '\n'.join(unreadable))


def median_video_seconds(videos, count: int = 64) -> Optional[float]:
    """The median duration of up to ``count`` videos of a source, from their headers: of a table (a list, a Hugging
    Face table) evenly spread over it, of shards (or a streamed dataset) the first ones. None when none states one
    (e.g. frame folders)."""
    found = []
    if hasattr(videos, 'video'):
        picks = sorted({i * len(videos) // count for i in range(count)}) if len(videos) > count else range(len(videos))
        samples = ((lambda i=i: videos.video(i)[:2]) for i in picks)
    else:
        samples = ((lambda name=name, sample=sample: videos.sample_video(name, sample)[:2])
                   for shard in range(videos.num_shards)
                   for name, sample in videos.shard_samples(shard, lambda exn: True))
    for sample in samples:
        try:
            name, data = sample()
            seconds = video_seconds(name, data)
        except Exception as e:  # a row without a usable video, unreadable: training itself reports those
            _logger.debug(f'no duration: {e}')
            continue
        if seconds:
            found.append(seconds)
        if len(found) == count:
            break
    return float(np.median(found)) if found else None
