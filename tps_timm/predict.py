"""Classify videos: ``python -m tps_timm.predict VIDEO|FOLDER|LIST [...] --model MODEL [--output top5.csv]``.

Prints the top-k classes with probabilities per video (or writes them as CSV / JSON), using the model's config for
frames, sampling, size, mean/std and label names. Folders are searched for videos; list files name one per line;
``--dataset wds/PATTERN`` reads WebDataset shards (a video per ``shard:key``). Under torchrun / accelerate launch each
process predicts its share, and the output is the file one process writes.
MODEL is a timm name, ``hf-hub:``/``local-dir:`` (weights included), a ``model/`` folder, or an exported ``.onnx`` /
``.pt2`` file.
"""
import contextlib
import csv
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from .cli import ArgumentParser, add_clip_args, add_dataset_arg, add_hf_args, add_model_args, add_test_view_args, \
    add_unreadable_arg, check_launch, compile_from_args, create_model_and_clip, find_videos_or_exit, label_names_for, \
    load_source, make_accelerator, model_brings_weights, non_negative_int, parse_with_hparams, positive_int
from .clip import ClipConfig
from .data import ShardSource, TooManyUnreadable, check_unreadable, is_sharded, read_class_names
from .evaluate import video_outputs

Prediction = Union[List, str]  # [(class name, probability), ...] or the reason a video is unreadable


@torch.no_grad()
def predict_rows(model, videos: Union[Sequence[str], ShardSource], clip: ClipConfig, class_names: List[str],
                 top_k: int = 5, backend: Optional[str] = None, batch_size: int = 1, workers: int = 0,
                 progress: bool = False, rank: int = 0, world_size: int = 1) -> List[Tuple[int, str, Prediction]]:
    """``(index, video, prediction)`` per video, in order: the top-k (name, probability), or for an unreadable
    video its error message. Of shards, rank ``rank`` of ``world_size`` predicts its share (``index`` orders all)."""
    rows = []
    for name, probs, error, index in video_outputs(model, videos, clip, batch_size, workers, backend,
                                                   progress=progress, desc='predict', rank=rank,
                                                   world_size=world_size):
        if probs is None:
            rows.append((index, name, error))
            continue
        top = probs.topk(min(top_k, probs.numel()))
        rows.append((index, name, [(class_names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]))
    return rows


def predict(model, videos: Union[Sequence[str], ShardSource], clip: ClipConfig, class_names: List[str],
            top_k: int = 5, backend: Optional[str] = None, batch_size: int = 1, workers: int = 0,
            progress: bool = False) -> Dict[str, Prediction]:
    """Top-k (name, probability) per video, in order; an unreadable video maps to its error message."""
    return {name: prediction for _, name, prediction in predict_rows(model, videos, clip, class_names, top_k, backend,
                                                                     batch_size, workers, progress)}


def write_predictions(path: str, results: Dict[str, Prediction]) -> None:
    """Top-k per video as CSV (``video, rank, class, probability``, or ``video, error``) or JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith('.json'):
        payload = {video: r if isinstance(r, str) else [dict(label=n, probability=p) for n, p in r]
                   for video, r in results.items()}
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(payload, f, indent=2)
        return
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['video', 'rank', 'label', 'probability', 'error'])
        for video, result in results.items():
            if isinstance(result, str):
                writer.writerow([video, '', '', '', result])
            for rank, (name, prob) in enumerate([] if isinstance(result, str) else result, 1):
                writer.writerow([video, rank, name, f'{prob:.6f}', ''])


def main(argv: Optional[Sequence[str]] = None) -> None:
    from accelerate.utils import gather_object

    from .onnx_model import ExportedVideoModel
    parser = ArgumentParser(prog='python -m tps_timm.predict', description=__doc__.split('\n\n')[0])
    parser.add_argument('videos', nargs='*', help='video files, frame folders, folders of videos or list files')
    add_dataset_arg(parser, '--dataset', 'the videos, in place of files and folders')
    add_hf_args(parser)
    add_model_args(parser)
    parser.add_argument('--class-names', default=None, help='class names file (default: the model config)')
    parser.add_argument('--data-root', default='', help='folder the paths of list files are relative to')
    add_clip_args(parser)
    add_test_view_args(parser)
    parser.add_argument('--top-k', type=positive_int, default=5)
    parser.add_argument('--batch-size', type=positive_int, default=1, help='videos per batch')
    parser.add_argument('--workers', type=non_negative_int, default=0, help='loader processes')
    parser.add_argument('--output', default=None, help='write the predictions to this .csv or .json file')
    add_unreadable_arg(parser)
    args = parse_with_hparams(parser, argv)
    check_launch(parser.prog)  # before any work: a launch that cannot give the processes asked for
    if bool(args.videos) == bool(args.dataset):
        parser.error('give the videos (files, folders, lists) or --dataset, one of them')
    try:
        names = read_class_names(args.class_names) if args.class_names else []
    except OSError as e:
        parser.error(f'--class-names {args.class_names}: {e.strerror or e}')
    if args.dataset:
        videos = load_source(parser, '--dataset', args.dataset, split=args.split, input_key=args.input_key,
                             target_key=args.target_key, streaming=True)  # each process streams its shards
        names = names or videos.class_names
    else:
        videos = find_videos_or_exit(parser, args.videos, args.data_root)
    accelerator = make_accelerator(parser.prog)
    model, clip = create_model_and_clip(parser, args, None if model_brings_weights(args) else len(names) or None)
    if not model.num_classes:
        parser.error(f'{args.model} gives embeddings, not classes (exported with --features): embed with '
                     f'python -m tps_timm.embed')
    if not isinstance(model, ExportedVideoModel):
        model = model.to(accelerator.device)
    model = compile_from_args(args, model)
    sharded = is_sharded(videos)
    start = time.perf_counter()
    # in order: process i takes the i-th part of a list, or its share of the shards
    with contextlib.nullcontext(videos) if sharded else accelerator.split_between_processes(videos) as share:
        rows = predict_rows(model, share, clip, label_names_for(model, names), args.top_k, args.video_backend,
                            args.batch_size, args.workers, args.output is not None and accelerator.is_main_process,
                            accelerator.process_index, accelerator.num_processes)
    if accelerator.num_processes > 1:
        rows = [row for part in gather_object([rows]) for row in part]  # in process order
    if sharded:
        rows.sort(key=lambda row: row[0])  # the shards' order, however they were dealt
    results = {name: prediction for _, name, prediction in rows}
    seconds = time.perf_counter() - start
    accelerator.end_training()
    if not accelerator.is_main_process:
        return
    failed = [path for path, r in results.items() if isinstance(r, str)]
    if args.output:
        write_predictions(args.output, results)
        print(f'wrote the top-{args.top_k} of {len(results)} videos to {args.output} ({len(failed)} unreadable) in '
              f'{seconds:.1f} s ({len(results) / max(seconds, 1e-9):.1f} videos/s)')
    else:
        for path, result in results.items():
            print(path)
            if isinstance(result, str):
                print(f'  unreadable: {result}')
                continue
            for name, prob in result:
                print(f'  {prob:7.2%}  {name}')
    try:
        check_unreadable(len(failed), len(results), args.max_unreadable, 'videos', failed)
    except TooManyUnreadable as e:
        sys.exit(f'{parser.prog}: error: {e}')


if __name__ == '__main__':
    main()
