"""Videos in Hugging Face datasets: ``--dataset hfds/NAME_OR_PATH`` (map-style, read like a list: random access,
exact epochs) and ``hfids/NAME_OR_PATH`` (streaming, read like WebDataset shards: the dataset's shards dealt to
ranks and loader workers), as timm names them.

NAME_OR_PATH is a Hub dataset (cached, or offline with ``HF_HUB_OFFLINE=1``), a folder written by
``save_to_disk``, or a local folder of data files ``load_dataset`` reads. The video column (``--input-key``; default:
the first ``Video`` feature, else ``video``) holds a ``Video`` feature, the file's bytes, or a path; the label column
(``--target-key``, default ``label``) an integer, and its ``ClassLabel`` feature, when it has one, gives the class
names. The split is ``--train-split`` / ``--val-split`` (``--split`` for the evaluation tools).
"""
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .shards import SampleError, check_label

__all__ = ['HF_PREFIXES', 'HfStreamSource', 'HfVideoTable', 'open_hf_dataset']

HFDS_PREFIX, HFIDS_PREFIX = 'hfds/', 'hfids/'
HF_PREFIXES = (HFDS_PREFIX, HFIDS_PREFIX)
_STREAM_SHARDS = 64  # shards a saved (map-style) dataset is streamed in: enough for 8 ranks x 8 workers


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError('hfds/ and hfids/ sources need the datasets package: pip install "tps-timm[hfds]"') from None
    return datasets


def _load(path: str, split: str, streaming: bool) -> Tuple[object, Optional[int]]:
    """The split of a saved dataset, a local folder or a Hub dataset (map-style, or streaming), and its rows when
    known."""
    datasets = _datasets()
    if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in ('dataset_dict.json',
                                                                                    'state.json')):
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f'no split {split!r} (it has {", ".join(loaded)})')
            loaded = loaded[split]
        rows = len(loaded)
        return (loaded.to_iterable_dataset(num_shards=max(1, min(rows, _STREAM_SHARDS))) if streaming else loaded,
                rows)
    try:
        loaded = datasets.load_dataset(path, split=split, streaming=streaming)
    except ValueError as e:  # e.g. an unknown split: datasets names the ones there are
        raise ValueError(' '.join(str(e).split())) from None
    except Exception as e:  # not found, offline without a cache, ...: one line naming the kind of failure
        raise ValueError(f'{type(e).__name__}: {" ".join(str(e).split())[:300]}') from None
    if not streaming:
        return loaded, len(loaded)
    split_info = (getattr(loaded.info, 'splits', None) or {}).get(split)  # the dataset card's count, if any
    return loaded, getattr(split_info, 'num_examples', None) or None


def _columns(features, input_key: Optional[str], target_key: str) -> Tuple[str, List[str]]:
    """The video column and the class names of a dataset's features (errors name the columns there are)."""
    datasets = _datasets()
    columns = list(features)
    if input_key is None:
        input_key = next((c for c, f in features.items() if isinstance(f, datasets.Video)), 'video')
    for flag, key in (('--input-key', input_key), ('--target-key', target_key)):
        if key not in features:
            raise ValueError(f'no column {key!r} ({flag}); the columns are {", ".join(columns)}')
    label = features[target_key]
    return input_key, list(label.names) if isinstance(label, datasets.ClassLabel) else []


def _row_video(row: Dict, input_key: str, target_key: str, name: str, num_classes: Optional[int]
               ) -> Tuple[str, Optional[bytes], int]:
    """``(name to decode, bytes or None, label)`` of a row: a Video feature's dict, bytes, or a path."""
    value = row[input_key]
    if isinstance(value, dict):  # a Video feature read without decoding: {'path': ..., 'bytes': ...}
        data, path = value.get('bytes'), value.get('path')
        if data is None and not path:
            raise SampleError(f'column {input_key!r} holds neither bytes nor a path')
        video = (path or name, data) if data is not None else (path, None)
    elif isinstance(value, (bytes, bytearray)):
        video = (name, bytes(value))
    elif isinstance(value, str):
        video = (value, None)
    else:
        raise SampleError(f'column {input_key!r} holds {type(value).__name__}, not a video (a Video feature, bytes or '
                          f'a path)')
    label = row[target_key]
    if label is None or isinstance(label, bool) or not isinstance(label, int):
        raise SampleError(f'no label (column {target_key!r} holds {label!r})')
    check_label(label, num_classes)
    return (*video, label)


class _HfSource:
    """What both kinds share: the dataset's split, its columns and class names."""

    def __init__(self, spec: str, split: str, dataset, input_key: Optional[str], target_key: str,
                 class_names: Sequence[str] = ()):
        self.spec = spec
        self.split = split
        self.input_key, names = _columns(dataset.features, input_key, target_key)
        self.target_key = target_key
        self.class_names = list(class_names) or names
        datasets = _datasets()
        if isinstance(dataset.features[self.input_key], datasets.Video):  # its bytes or path, decoded by us
            dataset = dataset.cast_column(self.input_key, datasets.Video(decode=False))
        self.dataset = dataset

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def video_of(self, row: Dict, name: str, num_classes: Optional[int] = None) -> Tuple[str, Optional[bytes], int]:
        return _row_video(row, self.input_key, self.target_key, name, num_classes)


class HfVideoTable(_HfSource):
    """A map-style split (``hfds/``): a video table for :class:`tps_timm.data.VideoDataset`, read like a list."""

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def num_videos(self) -> int:
        return len(self.dataset)

    def name(self, index: int) -> str:
        return f'{self.spec}[{self.split}][{index}]'

    def video(self, index: int) -> Tuple[str, Optional[bytes], int]:
        from .video_io import VideoReadError
        try:
            return self.video_of(self.dataset[index], self.name(index))
        except SampleError as e:
            raise VideoReadError(self.name(index), str(e)) from None

    def check_labels(self, num_classes: int) -> None:
        """Raise a ValueError naming the first row whose label is not a class of the model (the label column only)."""
        for index, label in enumerate(self.dataset[self.target_key]):
            if not isinstance(label, int) or not 0 <= label < num_classes:
                raise ValueError(f'{self.name(index)}: label {label!r} is not a class of the model, which has '
                                 f'{num_classes} classes (labels 0..{num_classes - 1})')



class HfStreamSource(_HfSource):
    """A streaming split (``hfids/``): a sharded source for :class:`tps_timm.data.ShardedTrainClips` and
    :class:`tps_timm.data.ShardedEvalClips`, which deal its shards (``n_shards``) to the ranks and loader workers as
    they deal tar shards."""

    def __init__(self, spec: str, split: str, dataset, input_key: Optional[str], target_key: str,
                 class_names: Sequence[str] = (), num_samples: Optional[int] = None):
        super().__init__(spec, split, dataset, input_key, target_key, class_names)
        self.num_samples = num_samples

    @property
    def num_videos(self) -> Optional[int]:
        return self.num_samples

    @property
    def num_shards(self) -> int:
        return self.dataset.n_shards

    def shard_length(self, shard: int) -> Optional[int]:
        """Not known before reading (a stream's shards are data files)."""
        return None

    def check_labels(self, num_classes: int) -> None:
        """Nothing to check before reading: each row's label is checked as it is read (counted if bad)."""

    def shard_samples(self, shard: int, handler: Callable[[Exception], bool]) -> Iterator[Tuple[str, Dict]]:
        """``(name, row)`` of one shard of the stream, ``name`` being ``SPLIT-SHARD:ROW``; a failure to read the
        shard goes to ``handler``, and the stream goes on with the next."""
        part = self.dataset.shard(num_shards=self.num_shards, index=shard)
        try:  # iter(), not iter(part): in a loader worker that would deal the shard to the workers once more
            for position, batch in enumerate(part.iter(batch_size=1)):
                yield f'{self.split}-{shard:05d}:{position}', {key: values[0] for key, values in batch.items()}
        except Exception as e:  # a corrupt or unreachable data file
            e.args = (*e.args, f'{self.spec} [{self.split}] shard {shard}')
            handler(e)

    def sample_video(self, name: str, row: Dict, num_classes: Optional[int] = None
                     ) -> Tuple[str, Optional[bytes], int]:
        return self.video_of(row, name, num_classes)



def open_hf_dataset(spec: str, split: str, input_key: Optional[str] = None, target_key: str = 'label',
                    class_names: Sequence[str] = (), num_samples: Optional[int] = None, streaming: bool = False):
    """The :class:`HfVideoTable` (``hfds/``) or :class:`HfStreamSource` (``hfids/``, or any with ``streaming``:
    batch jobs stream a map-style split too, each process its shards) of ``spec``'s ``split``.

    Raises:
        ValueError: An unknown dataset or split, or columns that are not there.
        ImportError: The ``datasets`` package is not installed.
    """
    path = spec[len(HFIDS_PREFIX if spec.startswith(HFIDS_PREFIX) else HFDS_PREFIX):]
    streaming = streaming or spec.startswith(HFIDS_PREFIX)
    dataset, rows = _load(path, split, streaming)
    if streaming:
        return HfStreamSource(spec, split, dataset, input_key, target_key, class_names, num_samples or rows)
    return HfVideoTable(spec, split, dataset, input_key, target_key, class_names)
