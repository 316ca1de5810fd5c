"""The training loader, as train.py and ``python -m tps_timm.data.throughput`` build it from the same flags.

Workers: one decoder thread and one torch thread each (more threads per worker only contend with the other workers),
persistent across epochs, ``--prefetch-factor`` batches ahead each, pinned memory when the batches go to a GPU.
Every item carries a seed drawn in the main process, so the clips depend on the seed and the epoch, not on the
number of workers. ``--repeated-aug N`` decodes a video once and makes N differently augmented clips of it.
"""
import argparse
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data._utils.collate import default_collate

from .annotations import VideoList
from .dataset import VideoDataset
from .flips import flip_label_map
from .rand_augment import ClipRandAugment
from .sampling import ClipSampler
from .transforms import ClipTrainTransform, rand_augment_hparams

__all__ = ['SeededRandomSampler', 'available_cpus', 'batch_rand_augment', 'build_train_loader', 'collate_clips',
           'default_workers', 'train_short_side']


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
    """Batch repeated-augmentation items ``(clips (N, C, T, H, W), labels (N,), ...)`` into ``(B * N, ...)``; what
    follows the labels (the unreadable videos an item replaced) is collated as it is.

    ``default_collate`` writes the batch once, into the shared memory a worker hands over; flattening is a view.
    """
    clips, labels, *rest = default_collate(items)
    return (clips.flatten(0, 1), labels.flatten(0, 1), *rest)


def train_short_side(args: argparse.Namespace, img_size: int) -> int:
    """The short side frames are resized to before cropping: ``--short-side``, else 256/224 of the crop."""
    return args.short_side or round(img_size * 256 / 224)


def loader_kwargs(workers: int, pin_memory: bool, prefetch_factor: Optional[int], persistent: bool = True) -> Dict:
    """DataLoader settings shared by the training and validation loaders."""
    kwargs = dict(num_workers=workers, pin_memory=pin_memory, persistent_workers=persistent and workers > 0)
    if workers > 0:
        kwargs['prefetch_factor'] = prefetch_factor
    return kwargs


def batch_rand_augment(args: argparse.Namespace, img_size: int) -> Optional[ClipRandAugment]:
    """The RandAugment the training loop applies to the batch (``--aa`` with ``--aa-on-batch``), else None: the
    workers apply it (``build_train_loader``)."""
    return ClipRandAugment(args.aa, rand_augment_hparams(img_size)) if args.aa and args.aa_on_batch else None


def build_train_loader(args: argparse.Namespace, video_cfg: Dict, videos: VideoList,
                       flip_pairs: Sequence[Tuple[str, str]] = (), pin_memory: bool = False) -> DataLoader:
    """The training DataLoader of train.py's flags (``build_train_parser``) and the resolved clip settings.

    ``--batch-size`` counts clips. With ``--repeated-aug N`` a batch holds ``batch_size / N`` videos, N clips each,
    and an epoch draws ``len(videos) / N`` videos: the same clips and steps per epoch as without, so epochs,
    the learning-rate schedule and the batch size keep their meaning, from a third of the decoding at N = 3.
    With ``--aa-on-batch`` the workers leave RandAugment to the training loop (``ClipRandAugment`` on the batch).
    """
    repeats = args.repeated_aug
    if repeats < 1:
        raise ValueError(f'--repeated-aug must be at least 1, got {repeats}')
    if args.batch_size % repeats:
        raise ValueError(f'--batch-size {args.batch_size} must be a multiple of --repeated-aug {repeats}')
    if len(videos.samples) < repeats:
        raise ValueError(f'--repeated-aug {repeats} needs at least {repeats} training videos')
    sampler = ClipSampler(video_cfg['num_frames'], video_cfg['frame_interval'], 1, video_cfg['sampling'])
    size = video_cfg['img_size']
    transform = ClipTrainTransform(size, train_short_side(args, size), tuple(args.scale), tuple(args.ratio),
                                   args.hflip, flip_label_map(flip_pairs, videos.class_names),
                                   None if args.aa_on_batch else args.aa)
    dataset = VideoDataset(videos, sampler, transform, train=True, backend=args.video_backend, repeated_aug=repeats)
    loader = DataLoader(dataset, batch_size=args.batch_size // repeats, drop_last=True,
                        sampler=SeededRandomSampler(len(dataset), len(dataset) // repeats, args.seed),
                        collate_fn=collate_clips if repeats > 1 else default_collate,
                        **loader_kwargs(args.workers, pin_memory, args.prefetch_factor))
    if len(loader) == 0:
        raise ValueError(f'{len(dataset)} training videos make no full batch of --batch-size {args.batch_size}'
                         + (f' with --repeated-aug {repeats}' if repeats > 1 else ''))
    return loader
