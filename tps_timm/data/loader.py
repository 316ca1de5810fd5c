"""The training loader, as train.py and ``python -m tps_timm.throughput`` build it.

Workers: one decoder thread and one torch thread each (more threads per worker only contend with the other workers),
persistent across epochs, ``prefetch_factor`` batches ahead each, pinned memory when the batches go to a GPU.
Every item carries a seed drawn in the main process, so the clips depend on the seed and the epoch, not on the
number of workers. ``repeated_aug=N`` decodes a video once and makes N differently augmented clips of it.
"""
import os
import signal
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data._utils.collate import default_collate

from ..clip import ClipConfig
from .annotations import VideoList
from .dataset import ClipItems, VideoDataset
from .flips import flip_label_map
from .rand_augment import ClipRandAugment
from .sampling import ClipSampler
from .shards import ShardedTrainClips, ShardSource, is_sharded
from .transforms import ClipTrainTransform, rand_augment_hparams

if TYPE_CHECKING:
    from .hf import HfStreamSource, HfVideoTable

__all__ = ['SeededRandomSampler', 'available_cpus', 'batch_rand_augment', 'build_train_loader', 'collate_clips',
           'default_workers', 'shutdown_workers']


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers and schedulers set), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def default_workers(processes: Optional[int] = None) -> int:
    """Loader workers per training process: the CPUs this process may use, shared by the processes on this machine
    (``LOCAL_WORLD_SIZE``, as ``accelerate launch`` / ``torchrun`` set it), one left for each process itself."""
    processes = processes or int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    return max(1, available_cpus() // processes - 1)


class SeededRandomSampler(Sampler[Tuple[int, int]]):
    """``(index, seed)`` pairs in a random order: ``num_samples`` distinct indices of ``num_items`` per epoch.

    The order and the per-item seeds follow from ``(seed, epoch)`` alone, in the main process, so an epoch's clips
    are the same whatever the number of workers, every process of a distributed run draws the same order to shard,
    and a resumed run replays its epochs. ``set_epoch`` sets the epoch (Accelerate's prepared loaders forward it);
    without it each pass takes the next epoch.
    """

    def __init__(self, num_items: int, num_samples: Optional[int] = None, seed: int = 0):
        self.num_items = num_items
        self.num_samples = num_items if num_samples is None else num_samples
        if not 0 < self.num_samples <= num_items:
            raise ValueError(f'num_samples must be in 1..{num_items}, got {self.num_samples}')
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        order = torch.randperm(self.num_items, generator=generator)[:self.num_samples]
        seeds = torch.randint(2 ** 62, (self.num_samples,), generator=generator)
        self.epoch += 1
        return iter(zip(order.tolist(), seeds.tolist()))

    def __len__(self) -> int:
        return self.num_samples


def collate_clips(items: List[Tuple]) -> Tuple:
    """Batch repeated-augmentation items ``(N clips (C, T, H, W), labels (N,), ...)`` into ``(B * N, ...)``; what
    follows the labels (the unreadable videos an item replaced) is collated as it is.

    ``default_collate`` writes each clip once, into the shared memory a worker hands over.
    """
    clips = default_collate([clip for item in items for clip in item[0]])
    labels = torch.cat([item[1] for item in items])
    return (clips, labels, *default_collate([item[2:] for item in items]))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)  # a preemption (SLURM), or Ctrl-C


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A loader worker's ``worker_init_fn``: the stop signals are the main process's (a cluster signals every process
    of a job, Ctrl-C the whole process group), which finishes its step and checkpoints while the workers keep
    feeding it; a worker that died of the signal would break that step."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def shutdown_workers(*loaders) -> None:
    """Stop the persistent workers of ``loaders`` now. They ignore SIGTERM, by which the interpreter's exit stops
    daemon processes: a process that exits with a loader still referenced (by the traceback of the exception it
    exits on) would wait for them for ever."""
    for loader in loaders:
        loader = getattr(loader, 'base_dataloader', loader)  # inside Accelerate's wrapper
        iterator = getattr(loader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()
            loader._iterator = None  # a next pass starts new ones


def loader_kwargs(workers: int, pin_memory: bool, prefetch_factor: Optional[int], persistent: bool = True) -> Dict:
    """DataLoader settings shared by the training and validation loaders. Their workers ignore the stop signals, and
    the workers' base seed comes from a generator of the loader's own, so that starting them draws nothing from the
    global random state (a run resumed mid-epoch continues from the saved one)."""
    kwargs = dict(num_workers=workers, pin_memory=pin_memory, persistent_workers=persistent and workers > 0,
                  worker_init_fn=ignore_stop_signals, generator=torch.Generator().manual_seed(0))
    if workers > 0:
        kwargs['prefetch_factor'] = prefetch_factor
    return kwargs


def batch_rand_augment(aa: Optional[str], on_batch: bool, img_size: int) -> Optional[ClipRandAugment]:
    """The RandAugment ``aa`` (a timm string) that the training loop applies to the batch when ``on_batch``, else
    None: the workers apply it (``build_train_loader``)."""
    return ClipRandAugment(aa, rand_augment_hparams(img_size)) if aa and on_batch else None


def build_train_loader(
        videos: Union[VideoList, ShardSource, 'HfVideoTable', 'HfStreamSource'],
        clip: ClipConfig,
        batch_size: int,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        flip_pairs: Sequence[Tuple[str, str]] = (),
        aa: Optional[str] = None,
        aa_on_batch: bool = False,
        repeated_aug: int = 1,
        seed: int = 0,
        workers: int = 0,
        prefetch_factor: Optional[int] = 2,
        pin_memory: bool = False,
        backend: Optional[str] = None,
        shuffle_buffer: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_classes: Optional[int] = None,
) -> DataLoader:
    """The training DataLoader: clips of ``clip`` (resized to ``clip.train_short_side``, then RandomResizedCrop),
    shuffled and augmented by ``seed`` and the epoch.

    Args:
        videos: The training videos and labels: a list or a map-style table, read by random access in an order
            drawn per epoch, or a sharded source (WebDataset, a streaming Hugging Face split) that each rank and
            worker streams its share of.
        clip: Frames, sampling and crop size.
        batch_size: Clips per batch. With ``repeated_aug=N`` a batch holds ``batch_size / N`` videos, N clips each,
            and an epoch draws ``len(videos) / N`` videos: the same clips and steps per epoch as without, so epochs,
            the learning-rate schedule and the batch size keep their meaning, from a third of the decoding at N = 3.
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect range.
        hflip: Horizontal flip probability.
        flip_pairs: Class names a flip swaps (``resolve_flip_pairs``).
        aa: timm RandAugment string; with ``aa_on_batch`` the workers leave it to the training loop
            (``batch_rand_augment``).
        repeated_aug: Differently augmented clips per decoded video.
        seed: Seed of the order and the augmentations.
        workers: Loader worker processes (0: in this process).
        prefetch_factor: Batches each worker prepares ahead.
        pin_memory: Pin the batches (for a GPU).
        backend: The video decoder tried first.
        shuffle_buffer: Shard sources: samples in each worker's shuffle buffer.
        rank: Shard sources: this process's rank (a list's loader is sharded by Accelerate instead).
        world_size: Shard sources: the number of processes.
        num_classes: Shard sources: the model's classes (samples with other labels are counted as unreadable).
    """
    if repeated_aug < 1:
        raise ValueError(f'--repeated-aug must be at least 1, got {repeated_aug}')
    if batch_size % repeated_aug:
        raise ValueError(f'--batch-size {batch_size} must be a multiple of --repeated-aug {repeated_aug}')
    if videos.num_videos is None:
        raise ValueError('the number of training videos is not known: give --train-num-samples')
    if videos.num_videos < repeated_aug:
        raise ValueError(f'--repeated-aug {repeated_aug} needs at least {repeated_aug} training videos')
    transform = ClipTrainTransform(clip.img_size, clip.train_short_side, tuple(scale), tuple(ratio), hflip,
                                   flip_label_map(flip_pairs, videos.class_names), None if aa_on_batch else aa)
    collate = collate_clips if repeated_aug > 1 else default_collate
    kwargs = loader_kwargs(workers, pin_memory, prefetch_factor)
    if is_sharded(videos):  # each rank and worker reads its own shards, seeded by the sample keys
        items = ClipItems(ClipSampler.for_clip(clip), transform, train=True, backend=backend, repeated_aug=repeated_aug)
        dataset = ShardedTrainClips(videos, items, batch_size // repeated_aug, seed, rank, world_size, shuffle_buffer,
                                    num_classes)
        return DataLoader(dataset, batch_size=batch_size // repeated_aug, collate_fn=collate, **kwargs)
    dataset = VideoDataset(videos, ClipSampler.for_clip(clip), transform, train=True, backend=backend,
                           repeated_aug=repeated_aug)
    loader = DataLoader(dataset, batch_size=batch_size // repeated_aug, drop_last=True,
                        sampler=SeededRandomSampler(len(dataset), len(dataset) // repeated_aug, seed),
                        collate_fn=collate, **kwargs)
    if len(loader) == 0:
        raise ValueError(f'{len(dataset)} training videos make no full batch of --batch-size {batch_size}'
                         + (f' with --repeated-aug {repeated_aug}' if repeated_aug > 1 else ''))
    return loader
