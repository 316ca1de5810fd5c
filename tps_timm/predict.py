"""Classify videos: ``python -m tps_timm.predict VIDEO [VIDEO ...] --model NAME [--checkpoint PATH]``.

Prints the top-5 classes with probabilities per video, using the model's pretrained config for frames, sampling,
size, mean/std and label names.
"""
import argparse
import sys
from typing import Dict, List, Optional, Sequence

import torch

from .cli import add_model_args, create_model_from_args, label_names_for, parse_with_hparams, resolve_video_cfg
from .data import BACKENDS, ClipEvalTransform, ClipSampler, VideoReadError, load_clip, normalize_clip, \
    read_class_names


@torch.no_grad()
def predict(model, paths: Sequence[str], video_cfg: Dict, class_names: List[str], top_k: int = 5,
            backend: Optional[str] = None) -> Dict[str, List]:
    """Top-k (name, probability) per video; an unreadable video maps to its error message."""
    sampler = ClipSampler(video_cfg['num_frames'], video_cfg['frame_interval'], video_cfg['num_clips'],
                          video_cfg['sampling'])
    transform = ClipEvalTransform(video_cfg['img_size'], video_cfg['img_size'], video_cfg['num_crops'])
    model.eval()
    out = {}
    for path in paths:
        try:
            frames, _ = load_clip(path, lambda n: sampler(n), backend, video_cfg['img_size'])
        except VideoReadError as e:
            out[path] = e.reason
            continue
        clips = torch.from_numpy(frames).permute(0, 1, 4, 2, 3)
        views = torch.cat([transform(clip) for clip in clips]).permute(0, 2, 1, 3, 4)
        probs = model(normalize_clip(views, video_cfg['mean'], video_cfg['std'])).softmax(-1).mean(0)
        top = probs.topk(min(top_k, probs.numel()))
        out[path] = [(class_names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m tps_timm.predict', description=__doc__.split('\n\n')[0])
    parser.add_argument('videos', nargs='+', help='video files or frame folders')
    add_model_args(parser)
    parser.add_argument('--class-names', default=None, help='class names file (default: the model config)')
    parser.add_argument('--num-frames', type=int, default=None)
    parser.add_argument('--frame-interval', type=int, default=None)
    parser.add_argument('--sampling', choices=('dense', 'uniform'), default=None)
    parser.add_argument('--img-size', type=int, default=None)
    parser.add_argument('--num-clips', type=int, default=None)
    parser.add_argument('--num-crops', type=int, choices=(1, 3), default=None)
    parser.add_argument('--video-backend', choices=BACKENDS, default=None)
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
