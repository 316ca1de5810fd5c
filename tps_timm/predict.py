"""Classify videos: ``python -m tps_timm.predict VIDEO [VIDEO ...] --model NAME [--checkpoint PATH]``.

Prints the top-5 classes with probabilities per video, using the model's pretrained config for frames, sampling,
size, mean/std and label names.
"""
import argparse
import sys
from typing import Dict, List, Optional, Sequence

import torch

from .cli import add_clip_args, add_model_args, add_test_view_args, create_model_from_args, label_names_for, \
    parse_with_hparams, resolve_video_cfg
from .data import VideoList, normalize_clip, read_class_names
from .evaluate import eval_dataset


@torch.no_grad()
def predict(model, paths: Sequence[str], video_cfg: Dict, class_names: List[str], top_k: int = 5,
            backend: Optional[str] = None) -> Dict[str, List]:
    """Top-k (name, probability) per video; an unreadable video maps to its error message."""
    videos = eval_dataset(VideoList([(path, 0) for path in paths]), video_cfg, video_cfg['num_clips'],
                          video_cfg['num_crops'], backend=backend)
    model.eval()
    out = {}
    for path, item in zip(paths, videos):
        if not item['readable']:
            out[path] = item['error']
            continue
        probs = model(normalize_clip(item['video'], video_cfg['mean'], video_cfg['std'])).softmax(-1).mean(0)
        top = probs.topk(min(top_k, probs.numel()))
        out[path] = [(class_names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m tps_timm.predict', description=__doc__.split('\n\n')[0])
    parser.add_argument('videos', nargs='+', help='video files or frame folders')
    add_model_args(parser)
    parser.add_argument('--class-names', default=None, help='class names file (default: the model config)')
    add_clip_args(parser)
    add_test_view_args(parser)
    args = parse_with_hparams(parser, argv)
    names = read_class_names(args.class_names) if args.class_names else []
    model = create_model_from_args(args, num_classes=len(names) or None)
    results = predict(model, args.videos, resolve_video_cfg(args, model), label_names_for(model, names),
                      backend=args.video_backend)
    failed = 0
    for path, result in results.items():
        print(path)
        if isinstance(result, str):
            print(f'  unreadable: {result}')
            failed += 1
            continue
        for name, prob in result:
            print(f'  {prob:7.2%}  {name}')
    if failed == len(results):
        sys.exit(1)


if __name__ == '__main__':
    main()
