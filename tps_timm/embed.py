"""Per-video embeddings: a video model as an encoder.

    python -m tps_timm.embed --model MODEL --input FOLDER_OR_LIST [...] --output OUT.npy|OUT.parquet
        [--num-clips N] [--batch-size B] [--workers N] [--normalize]

A row per video (``--dataset wds/PATTERN``: per ``shard:key``): its path and the pooled embedding (the classifier's
input), averaged over ``--num-clips`` clips of one centre crop, L2-normalised with ``--normalize``. ``.npy`` files
hold a structured array (fields ``path`` and ``embedding``; ``np.load`` reads it); ``.parquet`` files (pyarrow) the
columns ``path`` and ``embedding``. A run on a large folder is resumable: rows already in OUT are kept and their
videos skipped; every ``--save-every`` videos go to a shard beside OUT, merged into it at the end. Unreadable
videos are listed (and written to ``OUT.unreadable.txt``); past ``--max-unreadable`` of the videos the command
exits non-zero, after writing OUT. Under torchrun / accelerate launch each process embeds its share, and OUT is the
file one process writes.
MODEL is any model ``predict`` takes; an exported one must have been exported with ``--features``.
"""
import glob
import os
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .clip import ClipConfig

if TYPE_CHECKING:
    from .data import ShardSource

__all__ = ['read_embeddings', 'write_embeddings', 'embed_videos', 'main']


def _shards(path: str) -> List[str]:
    return sorted(glob.glob(glob.escape(path) + '.part*.npy'))


def _read_file(path: str) -> Dict[str, np.ndarray]:
    if path.endswith('.parquet'):
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        return {p: np.asarray(e, dtype=np.float32) for p, e in zip(table['path'].to_pylist(),
                                                                  table['embedding'].to_pylist())}
    rows = np.load(path, allow_pickle=False)
    return {str(p): e for p, e in zip(rows['path'], rows['embedding'])}


def read_embeddings(path: str) -> Dict[str, np.ndarray]:
    """``{video path: embedding}`` of an embeddings file and of the shards an unfinished run left beside it."""
    rows = _read_file(path) if os.path.exists(path) else {}
    for shard in _shards(path):
        rows.update(_read_file(shard))
    return rows


def write_embeddings(path: str, rows: Dict[str, np.ndarray]) -> None:
    """Write ``{video path: embedding}`` to ``path`` (.npy or .parquet) through a temporary file and a rename."""
    tmp = f'{path}.tmp'
    paths = list(rows)
    embeddings = np.stack([rows[p] for p in paths]).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    if path.endswith('.parquet'):
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({'path': paths, 'embedding': list(embeddings)}), tmp)
    else:
        width = max((len(p) for p in paths), default=1)
        array = np.zeros(len(paths), dtype=[('path', f'<U{width}'), ('embedding', np.float32, embeddings.shape[1:])])
        array['path'], array['embedding'] = paths, embeddings
        with open(tmp, 'wb') as f:
            np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def embed_videos(model, paths: Union[Sequence[str], 'ShardSource'], clip: ClipConfig, output: str,
                 batch_size: int = 1, workers: int = 0, normalize: bool = False, save_every: int = 256,
                 backend: Optional[str] = None, progress: bool = True, accelerator=None) -> Dict[str, object]:
    """Embed the videos of ``paths`` (or of shards: a row per ``shard:key``) not yet in ``output`` into it; returns
    counts and the unreadable videos.

    Every ``save_every`` new rows go to a shard beside ``output`` (``OUT.partPPP-NNNNN.npy``), so that an interrupted
    run loses at most that many and the I/O stays linear; the shards are merged into ``output`` at the end, with the
    rows of ``paths`` in their order (of shards: in the shards' order; rows of other videos already there follow).
    With an ``accelerator`` of several processes, each embeds its share of the videos to do, and the main process
    merges: the same file as one process writes.
    """
    from .data import is_sharded
    from .evaluate import video_outputs
    start = time.perf_counter()
    index, processes = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    done = read_embeddings(output)
    sharded = is_sharded(paths)
    if sharded:  # each process reads its share of the shards; the rows done before are not decoded again
        todo, order = None, {}
        rows_out = video_outputs(model, paths, clip, batch_size, workers, backend, features=True,
                                 progress=progress and index == 0, desc='embed', rank=index, world_size=processes,
                                 skip=done)
    else:
        todo = [p for p in paths if p not in done]
        share = todo[len(todo) * index // processes:len(todo) * (index + 1) // processes]
        rows_out = video_outputs(model, share, clip, batch_size, workers, backend, features=True,
                                 progress=progress and index == 0, desc='embed')
    unreadable: List[str] = []
    pending: Dict[str, np.ndarray] = {}
    prefix = f'{output}.part{index:03d}-'
    next_shard = len(glob.glob(glob.escape(prefix) + '*.npy'))
    for path, embedding, error, position in rows_out:
        if sharded:
            order[path] = position
        if embedding is None:
            if error is not None:  # None: embedded before
                unreadable.append(f'{path}\t{" ".join(error.split())}')
            continue
        if normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=0)
        pending[path] = embedding.numpy()
        if len(pending) >= save_every:
            write_embeddings(f'{prefix}{next_shard:05d}.npy', pending)
            pending, next_shard = {}, next_shard + 1
    if pending:
        write_embeddings(f'{prefix}{next_shard:05d}.npy', pending)
    if accelerator is not None and processes > 1:
        from accelerate.utils import gather_object
        gathered = gather_object([(unreadable, order if sharded else {})])  # every process's, in process order
        unreadable = [line for part, _ in gathered for line in part]
        order = {name: position for _, part in gathered for name, position in part.items()}
        accelerator.wait_for_everyone()  # every shard written before the merge
    if sharded:  # the samples in the shards' order, unreadable ones left out
        bad = {line.split('\t')[0] for line in unreadable}
        paths = [name for name in sorted(order, key=order.get) if name not in bad]
        todo = [name for name in paths if name not in done]
    rows = len(done) + len(todo) - (0 if sharded else len(unreadable))
    if index == 0:
        found = read_embeddings(output)
        order = [p for p in paths if p in found] + [p for p in found if p not in set(paths)]
        write_embeddings(output, {p: found[p] for p in order})
        rows = len(order)
        for shard in _shards(output):
            os.remove(shard)
        if unreadable:
            with open(f'{output}.unreadable.txt', 'w', encoding='utf-8') as f:
                f.write('\n'.join(unreadable) + '\n')
    return dict(embedded=len(todo) - (0 if sharded else len(unreadable)), skipped=len(paths) - len(todo),
                unreadable=unreadable, rows=rows, videos=len(paths) + (len(unreadable) if sharded else 0),
                seconds=time.perf_counter() - start)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from .cli import ArgumentParser, add_clip_args, add_dataset_arg, add_hf_args, add_model_args, add_unreadable_arg, \
        check_launch, create_model_and_clip, find_videos_or_exit, load_source, make_accelerator, non_negative_int, \
        parse_with_hparams, positive_int
    from .data import TooManyUnreadable, check_unreadable
    from .onnx_model import ExportedVideoModel
    parser = ArgumentParser(prog='python -m tps_timm.embed', description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    parser.add_argument('--input', nargs='+', default=None, help='video files, folders of videos or list files')
    add_dataset_arg(parser, '--dataset', 'the videos, in place of --input (a row per shard:key)')
    add_hf_args(parser)
    parser.add_argument('--data-root', default='', help='folder the paths of list files are relative to')
    parser.add_argument('--output', required=True, help='embeddings file: .npy or .parquet')
    add_clip_args(parser)
    parser.add_argument('--num-clips', '--clips', type=positive_int, default=None,
                        help='clips averaged per video, one centre crop each (default: the model\'s test clips)')
    parser.add_argument('--normalize', action='store_true', help='L2-normalise each embedding')
    parser.add_argument('--batch-size', type=positive_int, default=1, help='videos per batch')
    parser.add_argument('--workers', type=non_negative_int, default=0, help='loader processes')
    parser.add_argument('--save-every', type=positive_int, default=256, help='videos per shard saved while running')
    add_unreadable_arg(parser)
    parser.add_argument('--no-progress', action='store_true')
    args = parse_with_hparams(parser, argv)
    check_launch(parser.prog)  # before any work: a launch that cannot give the processes asked for
    if not args.output.endswith(('.npy', '.parquet')):
        parser.error(f'--output {args.output}: an embeddings file ends with .npy or .parquet')
    if args.output.endswith('.parquet'):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            parser.error('--output .parquet needs pyarrow: pip install "tps-timm[export]" (or write .npy)')
    if bool(args.input) == bool(args.dataset):
        parser.error('give --input or --dataset, one of them')
    paths = load_source(parser, '--dataset', args.dataset, split=args.split, input_key=args.input_key,
                        target_key=args.target_key, streaming=True) if args.dataset else \
        find_videos_or_exit(parser, args.input, args.data_root, '--input ')
    accelerator = make_accelerator(parser.prog)
    model, clip = create_model_and_clip(parser, args)
    if isinstance(model, ExportedVideoModel) and model.metadata['output'] != 'features':
        parser.error(f'{args.model} was exported with logits: export it with --features to embed with it')
    clip = clip.replace(num_crops=1)
    if not isinstance(model, ExportedVideoModel):
        model = model.to(accelerator.device)
    result = embed_videos(model, paths, clip, args.output, args.batch_size, args.workers, args.normalize,
                          args.save_every, args.video_backend, progress=not args.no_progress, accelerator=accelerator)
    accelerator.end_training()
    if not accelerator.is_main_process:
        return
    for line in result['unreadable']:
        print(f'unreadable: {line}', file=sys.stderr)
    rate = result['embedded'] / max(result['seconds'], 1e-9)
    print(f"{args.output}: {result['rows']} videos ({result['embedded']} embedded now, {result['skipped']} already "
          f"there, {len(result['unreadable'])} unreadable) in {result['seconds']:.1f} s ({rate:.1f} videos/s)")
    try:
        check_unreadable(len(result['unreadable']), result['videos'], args.max_unreadable, 'videos',  # earlier ones too
                         [line.split('\t')[0] for line in result['unreadable']])
    except TooManyUnreadable as e:
        sys.exit(f'{parser.prog}: error: {e}')


if __name__ == '__main__':
    main()
