"""Classify videos: ``python -m tps_timm.predict VIDEO|FOLDER|LIST [...] --model MODEL [--output top5.csv]``.

Prints the top-k classes with probabilities per video (or writes them as CSV / JSON), using the model's config for
frames, sampling, size, mean/std and label names. Folders are searched for videos; list files name one per line.
MODEL is a timm name, ``hf-hub:``/``local-dir:`` (weights included), a ``model/`` folder, or an exported ``.onnx`` /
``.pt2`` file.
"""
import argparse
import csv
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Union

import torch

from .cli import add_clip_args, add_model_args, add_test_view_args, compile_from_args, create_model_or_exit, \
    label_names_for, model_brings_weights, parse_with_hparams, resolve_video_cfg, set_clip_size
from .data import find_videos, read_class_names
from .evaluate import video_outputs

Prediction = Union[List, str]  # [(class name, probability), ...] or the reason a video is unreadable


@torch.no_grad()
def predict(model, paths: Sequence[str], video_cfg: Dict, class_names: List[str], top_k: int = 5,
            backend: Optional[str] = None, batch_size: int = 1, workers: int = 0,
            progress: bool = False) -> Dict[str, Prediction]:
    """Top-k (name, probability) per video, in order; an unreadable video maps to its error message."""
    out = {}
    for path, probs, error in video_outputs(model, paths, video_cfg, batch_size, workers, backend, progress=progress,
                                            desc='predict'):
        if probs is None:
            out[path] = error
            continue
        top = probs.topk(min(top_k, probs.numel()))
        out[path] = [(class_names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return out


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
    parser = argparse.ArgumentParser(prog='python -m tps_timm.predict', description=__doc__.split('\n\n')[0])
    parser.add_argument('videos', nargs='+', help='video files, frame folders, folders of videos or list files')
    add_model_args(parser)
    parser.add_argument('--class-names', default=None, help='class names file (default: the model config)')
    parser.add_argument('--data-root', default='', help='folder the paths of list files are relative to')
    add_clip_args(parser)
    add_test_view_args(parser)
    parser.add_argument('--top-k', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=1, help='videos per batch')
    parser.add_argument('--workers', type=int, default=0, help='loader processes')
    parser.add_argument('--output', default=None, help='write the predictions to this .csv or .json file')
    args = parse_with_hparams(parser, argv)
    try:
        names = read_class_names(args.class_names) if args.class_names else []
    except OSError as e:
        parser.error(f'--class-names {args.class_names}: {e.strerror or e}')
    model = create_model_or_exit(parser, args, None if model_brings_weights(args) else len(names) or None)
    if not model.num_classes:
        parser.error(f'{args.model} gives embeddings, not classes (exported with --features): embed with '
                     f'python -m tps_timm.embed')
    video_cfg = resolve_video_cfg(args, model)
    set_clip_size(model, video_cfg)
    paths = find_videos(args.videos, args.data_root)
    results = predict(compile_from_args(args, model), paths, video_cfg, label_names_for(model, names), args.top_k,
                      args.video_backend, args.batch_size, args.workers, progress=args.output is not None)
    failed = sum(isinstance(r, str) for r in results.values())
    if args.output:
        write_predictions(args.output, results)
        print(f'wrote the top-{args.top_k} of {len(results)} videos to {args.output} ({failed} unreadable)')
    else:
        for path, result in results.items():
            print(path)
            if isinstance(result, str):
                print(f'  unreadable: {result}')
                continue
            for name, prob in result:
                print(f'  {prob:7.2%}  {name}')
    if failed == len(results):
        sys.exit(1)


if __name__ == '__main__':
    main()
