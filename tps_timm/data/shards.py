"""Videos in WebDataset tar shards (``--dataset wds/PATTERN``): the shard list, its ``_info.json``, and the training
and evaluation datasets that stream the shards through the same sampling and transforms as a list's videos.

A sample is the files of one key in a tar: the video (``KEY.mp4``, ``KEY.webm``, ...) and its label, ``KEY.cls``
(the integer as text) or ``KEY.json`` (``{"label": int}`` and/or ``{"label_name": str}``). ``_info.json`` beside the
shards, in timm's layout (``{"splits": {"train": {"filenames": [...], "shard_lengths": [...], "num_samples": N}}}``,
plus our ``class_names``), gives an epoch's length; ``python -m tps_timm.data.prepare --format wds`` writes both
(``python -m tps_timm.data.shard_info`` the file for shards made elsewhere).

Training (:class:`ShardedTrainClips`): every epoch the shards are shuffled from (seed, epoch), the same on every
rank, dealt to the ranks and then to each rank's loader workers (samples are dealt instead where there are fewer
shards than takers); a shuffle buffer mixes samples within a worker; and each sample's augmentation is seeded from
(seed, epoch, ``shard:key``), so a sample gets the same clip whatever the worker count. Every rank yields the
same number of batches (workers cycle through their shards until their share is full), so no rank waits at the
end of an epoch. Evaluation (:class:`ShardedEvalClips`) reads every sample exactly once across all ranks and
workers. Samples that cannot be used (undecodable, no label, a label out of range, a shard that cannot be read)
are named by shard and key and counted, as unreadable list videos are.
"""
import hashlib
import json
import logging
import multiprocessing
import os
import random
import tarfile
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .annotations import VIDEO_EXTENSIONS
from .dataset import ClipItems, item_seed, unreadable_line
from .video_io import VideoReadError

__all__ = ['INFO_FILE', 'WDS_PREFIX', 'ShardSource', 'is_sharded', 'SampleError', 'ShardedEvalClips',
           'ShardedTrainClips', 'collate_eval_items', 'expand_shards', 'open_shards', 'sample_video', 'write_info',
           'write_json_atomic']

_logger = logging.getLogger(__name__)

WDS_PREFIX = 'wds/'
INFO_FILE = '_info.json'
VIDEO_SUFFIXES = tuple(ext[1:] for ext in VIDEO_EXTENSIONS)
_READ_BUFFER = 1 << 20  # bytes per read of a shard (WebDataset's default 8 KiB: ~60 reads per video)


class SampleError(ValueError):
    """A shard sample that cannot be used: no video, no label, or a label that is not a class."""


def _webdataset():
    """The webdataset package, or an ImportError that says how to install it."""
    try:
        import webdataset
    except ImportError:
        raise ImportError('wds/ sources need the webdataset package: pip install "tps-timm[wds]"') from None
    return webdataset


def is_local(url: str) -> bool:
    return '://' not in url and not url.startswith('pipe:')


def is_sharded(source) -> bool:
    """Whether ``source`` is read as shards (WebDataset, a streaming Hugging Face split), not by random access."""
    return hasattr(source, 'shard_samples')


def expand_shards(pattern: str) -> List[str]:
    """The shards of ``pattern``: a brace pattern (``train-{000000..000255}.tar``), WebDataset's ``::``-separated
    list, a folder (its ``.tar`` files, sorted), one ``.tar``, or URLs WebDataset opens (``pipe:``, ``https://``,
    ``s3://`` via a pipe).

    Raises:
        ValueError: No shards, or local shards that do not exist (all of them named, up to 10).
    """
    expand_urls = _webdataset().shardlists.expand_urls
    if is_local(pattern) and os.path.isdir(pattern):
        urls = sorted(os.path.join(pattern, f) for f in os.listdir(pattern) if f.endswith('.tar'))
        if not urls:
            raise ValueError(f'{pattern}: a folder without .tar shards')
        return urls
    urls = list(expand_urls(pattern))
    if not urls:
        raise ValueError(f'{pattern}: no shards')
    missing = [url for url in urls if is_local(url) and not os.path.isfile(url)]
    if missing:
        shown = ', '.join(missing[:10]) + (f' and {len(missing) - 10} more' if len(missing) > 10 else '')
        raise ValueError(f'{pattern}: {len(missing)} of its {len(urls)} shards do not exist: {shown}')
    return urls


@dataclass
class ShardSource:
    """A ``wds/`` source: its shards, the samples an epoch holds, per-shard counts when known, and class names."""
    spec: str
    urls: List[str]
    num_samples: Optional[int]  # None: not known (evaluation reads the shards to their end)
    shard_lengths: Dict[str, int] = field(default_factory=dict)  # by shard URL
    class_names: List[str] = field(default_factory=list)
    info: Optional[str] = None  # the _info.json it was described by

    @property
    def num_classes(self) -> int:
        """The classes its names give (0 without names: the model's count then applies)."""
        return len(self.class_names)

    @property
    def num_videos(self) -> Optional[int]:
        return self.num_samples

    def check_labels(self, num_classes: int) -> None:
        """Nothing to check before reading: each sample's label is checked as it is read (counted if bad)."""

    @property
    def num_shards(self) -> int:
        return len(self.urls)

    def shard_length(self, shard: int) -> Optional[int]:
        """The samples of a shard, when ``_info.json`` or a count gave them."""
        return self.shard_lengths.get(self.urls[shard])

    def shard_samples(self, shard: int, handler: Callable[[Exception], bool]) -> Iterator[Tuple[str, Dict]]:
        """``(name, sample)`` of one shard, ``name`` being ``shard file:key``; ``handler`` gets the errors of a shard
        that cannot be opened or read (and lets the stream go on)."""
        url = self.urls[shard]
        tariterators = _webdataset().tariterators  # WebDataset's tarfile_samples, with a larger read buffer
        streams = tariterators.url_opener([dict(url=url)], handler=handler, bufsize=_READ_BUFFER)
        files = tariterators.tar_file_expander(streams, handler=handler)
        for sample in tariterators.group_by_keys(files, handler=handler):
            yield f'{os.path.basename(url)}:{sample["__key__"]}', sample

    def sample_video(self, name: str, sample: Dict, num_classes: Optional[int] = None
                     ) -> Tuple[str, Optional[bytes], int]:
        """``(name to decode, video bytes, label)`` of a sample (:func:`sample_video`)."""
        return (name, *sample_video(sample, self.class_names, num_classes))


def _read_json(url: str) -> Optional[dict]:
    """A JSON file by path or URL (via WebDataset's ``gopen``), or None when there is none."""
    try:
        if is_local(url):
            if not os.path.isfile(url):
                return None
            with open(url, encoding='utf-8') as f:
                return json.load(f)
        from webdataset import gopen
        with gopen(url) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{url}: not valid JSON ({e})') from None
    except Exception:  # e.g. no such object behind a URL: as if there were no info file
        return None


def _split_of(info: dict, urls: Sequence[str], path: str) -> Dict[str, int]:
    """The lengths of the shards ``urls`` in the split of ``info`` that lists every one of them (by file name)."""
    names = [os.path.basename(url) for url in urls]
    splits = info.get('splits')
    if not isinstance(splits, dict):
        raise ValueError(f'{path}: no "splits" mapping (timm\'s layout: {{"splits": {{"train": {{"filenames": [...], '
                         f'"shard_lengths": [...], "num_samples": N}}}}}})')
    for split, entry in splits.items():
        try:
            lengths = dict(zip(entry['filenames'], (int(n) for n in entry['shard_lengths']), strict=True))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'{path}: split {split!r} needs "filenames" and "shard_lengths" of the same length '
                             f'({type(e).__name__}: {e})') from None
        if all(name in lengths for name in names):
            return {url: lengths[name] for url, name in zip(urls, names)}
    unlisted = [n for n in names if not any(n in (e.get('filenames') or ()) for e in splits.values())]
    raise ValueError(f'{path}: no split lists all {len(names)} shards (not listed: {", ".join(unlisted[:5])}'
                     f'{" ..." if len(unlisted) > 5 else ""}): write it again with prepare --merge, or give the '
                     f'epoch length with --train-num-samples / --val-num-samples')


def count_samples(url: str) -> int:
    """The videos in one shard, from its tar headers (no member is read)."""
    keys = set()
    if is_local(url):
        with tarfile.open(url) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    else:
        from webdataset import gopen
        with gopen(url) as stream, tarfile.open(fileobj=stream, mode='r|*') as tar:
            names = [m.name for m in tar if m.isfile()]
    for name in names:
        key, _, suffix = os.path.basename(name).partition('.')
        if suffix.lower() in VIDEO_SUFFIXES:
            keys.add(os.path.join(os.path.dirname(name), key))
    return len(keys)


def open_shards(spec: str, num_samples: Optional[int] = None, class_names: Sequence[str] = (),
                scan: bool = True, split: Optional[str] = None) -> ShardSource:
    """The :class:`ShardSource` of ``spec`` (``wds/PATTERN`` or the pattern itself).

    The epoch length is ``num_samples`` when given, else the shards' ``_info.json`` (beside the first shard), else,
    with ``scan`` (training needs it), a count of local shards' tar headers (logged with its time: an
    ``_info.json`` saves it), else not known. A folder holding several splits (as ``prepare`` writes them) gives
    the shards of ``split`` in its ``_info.json`` (or of its only split).

    Raises:
        ValueError: Missing shards, an ``_info.json`` that does not describe them, or no epoch length for remote
            shards.
    """
    pattern = spec[len(WDS_PREFIX):] if spec.startswith(WDS_PREFIX) else spec
    urls = expand_shards(pattern)
    is_folder = is_local(pattern) and os.path.isdir(pattern)
    folder = pattern if is_folder else os.path.dirname(urls[0])
    info_path = os.path.join(folder, INFO_FILE) if is_local(folder) else f'{folder}/{INFO_FILE}'
    info = _read_json(info_path) if not urls[0].startswith('pipe:') else None
    lengths: Dict[str, int] = {}
    if info is not None:
        if is_folder:  # the folder's shards of one split
            urls = [os.path.join(folder, name) for name in _folder_split(info, split, info_path)]
        try:
            lengths = _split_of(info, urls, info_path)
        except ValueError:
            if num_samples is None:
                raise
            _logger.warning(f'{info_path} does not list the shards of {pattern}: its counts are not used')
        class_names = list(class_names) or list(info.get('class_names') or [])
    if num_samples is None and lengths:
        num_samples = sum(lengths.values())
    elif num_samples is None and scan:
        remote = [url for url in urls if not is_local(url)]
        if remote:
            raise ValueError(f'{len(remote)} shards are not local files (e.g. {remote[0]}), and counting them would '
                             f'read every byte: put an {INFO_FILE} beside them (python -m tps_timm.data.shard_info '
                             f'writes one for local copies) or give --train-num-samples')
        start = time.perf_counter()
        lengths = {url: count_samples(url) for url in urls}
        num_samples = sum(lengths.values())
        _logger.warning(f'{pattern}: no {INFO_FILE}: counted {num_samples} samples in {len(urls)} shards in '
                        f'{time.perf_counter() - start:.1f} s (python -m tps_timm.data.shard_info writes the file that '
                        f'saves this)')
    if num_samples is not None and num_samples < 1:
        raise ValueError(f'{pattern}: the shards hold no samples')
    return ShardSource(spec, urls, num_samples, lengths, list(class_names), info_path if info else None)


def _folder_split(info: dict, split: Optional[str], path: str) -> List[str]:
    """The shard files of ``split`` in a folder's ``_info.json`` (of its only split when it has one)."""
    splits = info.get('splits') or {}
    if split not in splits and len(splits) == 1:
        split = next(iter(splits))
    if split not in splits:
        raise ValueError(f'{path} holds the splits {", ".join(splits) or "(none)"}: name one '
                         f'(--train-split / --val-split / --split), or give the shards as a pattern')
    return list(splits[split].get('filenames') or [])


def write_info(folder: str, split: str, lengths: Dict[str, int], class_names: Sequence[str] = ()) -> str:
    """Write (or update the ``split`` of) ``folder/_info.json`` for shards ``{file name: samples}``, atomically."""
    path = os.path.join(folder, INFO_FILE)
    info = _read_json(path) or {}
    info.setdefault('splits', {})[split] = dict(name=split, filenames=list(lengths),
                                                shard_lengths=list(lengths.values()),
                                                num_samples=sum(lengths.values()))
    if class_names:
        info['class_names'] = list(class_names)
    write_json_atomic(path, info)
    return path


def write_json_atomic(path: str, value) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file of this process and a rename: a reader finds
    the whole file or the one before, also when several processes write at once."""
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def sample_video(sample: Dict, class_names: Sequence[str] = (), num_classes: Optional[int] = None
                 ) -> Tuple[bytes, int]:
    """The video bytes and label of a WebDataset sample (a dict of suffix -> bytes).

    Raises:
        SampleError: No video member, no label, an unknown label name, or a label that is not a class.
    """
    suffix = next((s for s in sample if s in VIDEO_SUFFIXES), None)
    if suffix is None:
        raise SampleError(f'no video ({", ".join("." + s for s in VIDEO_SUFFIXES[:4])}, ...) among '
                          f'{", ".join("." + s for s in sample if not s.startswith("__"))}')
    if 'cls' in sample:
        text = sample['cls'].decode('utf-8', 'replace').strip()
        if not text.lstrip('-').isdigit():
            raise SampleError(f'.cls holds {text[:20]!r}, not a class index')
        label = int(text)
    elif 'json' in sample:
        try:
            meta = json.loads(sample['json'])
        except ValueError as e:
            raise SampleError(f'.json is not valid JSON ({e})') from None
        if isinstance(meta, dict) and isinstance(meta.get('label'), int):
            label = meta['label']
        elif isinstance(meta, dict) and meta.get('label_name') is not None:
            if meta['label_name'] not in class_names:
                raise SampleError(f'label_name {meta["label_name"]!r} is not among the {len(class_names)} class '
                                  f'names')
            label = list(class_names).index(meta['label_name'])
        else:
            raise SampleError('.json has neither "label" (int) nor "label_name"')
    else:
        raise SampleError('no label (KEY.cls or KEY.json)')
    check_label(label, num_classes)
    return sample[suffix], label


def check_label(label: int, num_classes: Optional[int]) -> None:
    """Raise a SampleError when ``label`` is not one of ``num_classes`` classes (None: any label)."""
    if num_classes is not None and not 0 <= label < num_classes:
        raise SampleError(f'label {label} is not a class of the model (0..{num_classes - 1})')


def collate_eval_items(items: List[Dict]) -> Dict:
    """Batch evaluation items as ``default_collate`` does; the ``skipped`` ones (name and index only) are listed
    under ``skipped`` as ``(name, index)`` pairs and left out of the tensors (a batch may hold only them)."""
    from torch.utils.data import default_collate
    skipped = [(item['name'], item['index']) for item in items if item.get('skipped')]
    kept = [item for item in items if not item.get('skipped')]
    batch = default_collate(kept) if kept else {}
    batch['skipped'] = skipped
    return batch


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode('utf-8'), digest_size=8).digest(), 'little') >> 2


def _worker() -> Tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class _ShardStream(IterableDataset):
    """What the two shard datasets share: the source, the clip items, this rank, the samples of a worker's share."""

    def __init__(self, source: ShardSource, items: ClipItems, rank: int = 0, world_size: int = 1,
                 num_classes: Optional[int] = None):
        if not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} is not in 0..{world_size - 1}')
        self.source = source
        self.items = items
        self.rank = rank
        self.world_size = world_size
        self.num_classes = num_classes
        self._shard_errors: List[Tuple[int, str]] = []  # (shard, what went wrong), until an item names them
        self._shard, self._reporting = 0, True

    @property
    def class_names(self) -> List[str]:
        return self.source.class_names

    @property
    def max_retries(self) -> int:
        return self.items.max_retries

    def _handler(self, exn: Exception) -> bool:
        """WebDataset's error handler: a shard that cannot be opened or read is skipped, and recorded by the one
        worker that reports it (several may read a shard: see ``_samples``)."""
        if self._reporting:
            where = next((a for a in reversed(exn.args) if isinstance(a, str) and a), 'a shard')
            message = str(exn.args[0]) if exn.args else type(exn).__name__
            self._shard_errors.append((self._shard, f'{where}: {type(exn).__name__}: '
                                                    f'{" ".join(message.split())[:200]}'))
            _logger.warning(f'unreadable shard data: {self._shard_errors[-1][1]}')
        return True

    def _rank_share(self, order: Sequence[int], workers: int) -> Tuple[List[int], bool, bool]:
        """How the shards in ``order`` are dealt: this rank's shards (every ``world_size``-th, or all of them when
        there are fewer shards than ranks: ``rank_split``, each rank keeps every n-th sample), and whether its workers
        share them sample by sample (``worker_split``: fewer of them than workers) instead of shard by shard."""
        rank_split = len(order) < self.world_size
        rank_shards = list(order) if rank_split else list(order)[self.rank::self.world_size]
        return rank_shards, rank_split, rank_split or len(rank_shards) < workers

    def _samples(self, order: Sequence[int], worker: int, workers: int) -> Iterator[Tuple]:
        """``(name, sample, shard, position in the shard)`` of one pass over this worker's share of the shards in
        ``order`` (:meth:`_rank_share`)."""
        world = self.world_size
        rank_shards, rank_split, worker_split = self._rank_share(order, workers)
        mine = list(enumerate(rank_shards))
        if not worker_split:
            mine = mine[worker::workers]
        seen_all = seen_rank = 0
        for position_in_rank, shard in mine:
            self._shard = shard  # a shard read by several takers is reported by one
            self._reporting = (not rank_split or shard % world == self.rank) and \
                (not worker_split or position_in_rank % workers == worker)
            count = 0
            for count, (name, sample) in enumerate(self.source.shard_samples(shard, self._handler), 1):
                if rank_split:
                    seen_all += 1
                    if (seen_all - 1) % world != self.rank:
                        continue
                if worker_split:
                    seen_rank += 1
                    if (seen_rank - 1) % workers != worker:
                        continue
                yield name, sample, shard, count - 1
            expected = self.source.shard_length(shard)
            if self._reporting and expected is not None and count != expected:
                _logger.warning(f'shard {shard} of {self.source.spec} holds {count} samples, {INFO_FILE} says '
                                f'{expected}: the epoch length it gives is off by the difference')

    def _shares(self, order: Sequence[int], workers: int) -> Optional[List[int]]:
        """The samples each worker of this rank finds in one pass over ``order`` (None: shard lengths unknown)."""
        lengths = {shard: self.source.shard_length(shard) for shard in order}
        if None in lengths.values():
            return None
        rank_shards, rank_split, worker_split = self._rank_share(order, workers)

        def split(total: int, parts: int, index: int) -> int:
            return total // parts + (index < total % parts)
        rank_total = split(sum(lengths.values()), self.world_size, self.rank) if rank_split else \
            sum(lengths[s] for s in rank_shards)
        if worker_split:
            return [split(rank_total, workers, w) for w in range(workers)]
        return [sum(lengths[s] for s in rank_shards[w::workers]) for w in range(workers)]

    def _video(self, name: str, sample: Dict) -> Tuple[str, Optional[bytes], int]:
        """``(name to decode, bytes or None, label)``; an unusable sample raises a VideoReadError naming it."""
        try:
            return self.source.sample_video(name, sample, self.num_classes)
        except SampleError as e:
            raise VideoReadError(name, str(e)) from None

    def _drain_shard_errors(self) -> List[Tuple[int, str]]:
        errors, self._shard_errors[:] = list(self._shard_errors), []
        return errors


class ShardedTrainClips(_ShardStream):
    """Training items (those of :class:`~tps_timm.data.dataset.ClipItems`) from shards, ``videos_per_batch`` videos
    per batch, the same number of batches on every rank: ``len(self)`` videos of this rank per epoch. A worker whose
    share ends before its quota starts it again; one whose share holds more leaves the rest for the next epoch (a few
    samples of an epoch, with known shard lengths less than a batch per worker).

    Args:
        source: The shards.
        items: How a video becomes an item (a training ``ClipItems``).
        videos_per_batch: Videos per batch on each rank (the batch size / ``repeated_aug``).
        seed: Seed of the shard order, the shuffle buffer and every sample's augmentation.
        rank: This process's rank.
        world_size: The number of processes.
        shuffle_buffer: Samples in the shuffle buffer of each worker (0: shard order only).
        num_classes: The model's classes (samples with other labels are counted as unreadable).
    """

    def __init__(self, source: ShardSource, items: ClipItems, videos_per_batch: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = 0, num_classes: Optional[int] = None):
        super().__init__(source, items, rank, world_size, num_classes)
        if source.num_samples is None:
            raise ValueError(f'{source.spec}: training needs the number of samples: give --train-num-samples')
        self.videos_per_batch = videos_per_batch
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self._epoch = multiprocessing.Value('i', 0)  # persistent workers see set_epoch through shared memory
        self._resume: Tuple[int, Dict[int, Tuple[int, int]]] = (-1, {})  # see resume_epoch
        if self.steps_per_epoch < 1:
            raise ValueError(f'{source.num_samples} samples make no full batch of {videos_per_batch} videos on each '
                             f'of {world_size} processes')

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on every rank: an epoch draws ``num_samples / repeated_aug`` videos, as for a list."""
        return self.source.num_samples // self.items.repeated_aug // (self.videos_per_batch * self.world_size)

    def __len__(self) -> int:
        return self.steps_per_epoch * self.videos_per_batch

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def resume_epoch(self, epoch: int, positions: Dict[int, Tuple[int, int]]) -> None:
        """Continue ``epoch`` where a stopped run left it: each worker's ``(samples taken, items yielded)``, as the
        last item it gave the training loop said (an item's ``position``). Set before the loader's workers start;
        a worker's stream is the same one replayed, its taken samples read again but not decoded."""
        self._resume = (epoch, dict(positions))

    def shard_order(self, epoch: int, repeat: int = 0) -> List[int]:
        """The shards in epoch ``epoch``'s order (pass ``repeat`` of a worker that cycles): the same on every rank
        and worker."""
        order = list(range(self.source.num_shards))
        random.Random(item_seed(self.seed, epoch, repeat)).shuffle(order)
        return order

    def worker_quotas(self, order: Sequence[int], workers: int) -> List[int]:
        """The samples each loader worker of this rank yields in an epoch whose shards come in ``order``: the rank's
        ``steps_per_epoch`` batches dealt to its workers by the samples their shares hold when the shard lengths are
        known (so that few samples repeat or go unseen), else evenly."""
        steps, per_batch = self.steps_per_epoch, self.videos_per_batch
        shares = self._shares(order, workers)
        if shares is None:
            return [(steps // workers + (w < steps % workers)) * per_batch for w in range(workers)]
        batches = [share // per_batch for share in shares]
        while sum(batches) < steps:  # the fullest partial batches first: the fewest samples drawn twice
            w = max(range(workers), key=lambda i: (shares[i] - batches[i] * per_batch, -i))
            batches[w] += 1
        while sum(batches) > steps:
            batches[max(range(workers), key=lambda i: (batches[i], -i))] -= 1
        return [b * per_batch for b in batches]

    def sample_seed(self, epoch: int, name: str) -> int:
        """The seed of every random choice for sample ``name`` (``shard:key``) in ``epoch``."""
        return item_seed(self.seed, epoch, _key_hash(name))

    def first_samples(self, count: int) -> List[Tuple[str, Optional[bytes], int]]:
        """``(name to decode, video bytes or None, label)`` of the first ``count`` usable samples in shard order (for
        measurements)."""
        found = []
        for shard in range(self.source.num_shards):
            for name, sample in self.source.shard_samples(shard, self._handler):
                try:
                    found.append(self._video(name, sample))
                except VideoReadError:
                    continue
                if len(found) == count:
                    return found
        return found

    def __iter__(self) -> Iterator[Tuple]:
        wds = _webdataset()
        epoch = self._epoch.value
        worker, workers = _worker()
        quota = self.worker_quotas(self.shard_order(epoch), workers)[worker]
        shuffle_rng = random.Random(item_seed(self.seed, epoch, self.rank, worker))

        def passes():  # a worker cycles through its share until its quota is full
            for repeat in range(1 << 30):
                empty = True
                one_pass = self._samples(self.shard_order(epoch, repeat), worker, workers)
                if self.shuffle_buffer > 1:  # within a pass: each pass gives every sample of the share once
                    one_pass = wds.shuffle(bufsize=self.shuffle_buffer, initial=self.shuffle_buffer,
                                           rng=shuffle_rng)(one_pass)
                for sample in one_pass:
                    empty = False
                    yield sample
                if empty:
                    errors = '; '.join(error for _, error in self._drain_shard_errors()[:3])
                    raise RuntimeError(f'loader worker {worker} of rank {self.rank} found no samples in its share of '
                                       f'{self.source.spec}' + (f': {errors}' if errors else ''))
        stream = passes()
        resume_epoch, positions = self._resume
        taken, produced = positions.get(worker, (0, 0)) if resume_epoch == epoch else (0, 0)
        for _ in range(taken):  # what the stopped run's training loop had from this worker
            next(stream)
        self._drain_shard_errors()  # reported by the stopped run
        unreadable = []
        while produced < quota:  # checked before a sample is taken: no pass is begun only to be left
            name, sample, _, _ = next(stream)
            taken += 1
            seed = self.sample_seed(epoch, name)
            try:
                video, data, label = self._video(name, sample)
                clip = self.items.decode(video, np.random.default_rng(seed), data)[0]
            except VideoReadError as e:
                unreadable += [error for _, error in self._drain_shard_errors()] + [unreadable_line(e)]
                if len(unreadable) > self.items.max_retries:
                    produced += 1
                    yield (*self.items.failed_train_item(unreadable), torch.tensor((worker, taken, produced)))
                    unreadable = []
                continue
            unreadable += [error for _, error in self._drain_shard_errors()]
            produced += 1
            yield (*self.items.augment(clip, label, random.Random(seed)), '\n'.join(unreadable),
                   torch.tensor((worker, taken, produced)))
            unreadable = []


class ShardedEvalClips(_ShardStream):
    """Evaluation items (dicts of :class:`~tps_timm.data.dataset.ClipItems`, or a timeline's windows of
    :class:`~tps_timm.data.windows.WindowItems`, with ``name`` = ``shard:key``) of every sample once across all ranks
    and workers, in shard order within a worker; ``index`` orders them as the shards
    do (shard position x 2**32 + position in the shard). It has no length: a rank's share is known only once read
    (progress bars count batches).

    Samples named in ``skip`` (e.g. embedded by an earlier run) are not decoded: their items hold only ``name``,
    ``index`` and ``skipped=True`` (:func:`collate_eval_items` keeps them out of the batch).
    """

    def __init__(self, source: ShardSource, items: ClipItems, rank: int = 0, world_size: int = 1,
                 num_classes: Optional[int] = None, skip: Collection[str] = ()):
        super().__init__(source, items, rank, world_size, num_classes)
        self.skip = frozenset(skip)

    def __iter__(self) -> Iterator[Dict]:
        worker, workers = _worker()
        for name, sample, shard, position in self._samples(range(self.source.num_shards), worker, workers):
            yield from self._shard_error_items()
            index = shard << 32 | position
            if name in self.skip:
                yield dict(name=name, index=index, skipped=True)
                continue
            try:
                video, data, label = self._video(name, sample)
            except VideoReadError as e:
                yield dict(self.items.unreadable_eval_item(name, e.reason, index), name=name)
                continue
            for item in self.items.eval_items(video, label, index, data):  # one, or a timeline's windows
                yield dict(item, name=name)
        yield from self._shard_error_items()  # e.g. the last shard was truncated

    def _shard_error_items(self) -> Iterator[Dict]:
        """An unreadable item for each shard error since the last item, indexed after that shard's samples."""
        for shard, error in self._drain_shard_errors():
            name, _, reason = error.partition(': ')
            yield dict(self.items.unreadable_eval_item(name, reason, shard << 32 | 0xFFFFFFFF), name=name)
