#!/usr/bin/env python3
"""Evaluate a TPS video model: multi-view testing (clips x crops), top-1/top-5/mean class accuracy.

    python validate.py --model tps_swin_tiny --checkpoint model.safetensors --data-root /data/k400 \\
        --val-list val.csv --dataset-format kinetics --num-clips 4 --num-crops 3 --results-file results.json
    accelerate launch validate.py --hparams hparams/k400.yaml --checkpoint ...
"""
import argparse
import csv
import json
import logging
import os
import sys
from typing import Optional, Sequence

import torch

import tps_timm  # noqa: F401  (registers the models)
from tps_timm.cli import ArgumentParser, add_data_args, add_dataset_arg, add_demo_args, add_hf_args, add_model_args, \
    add_test_view_args, add_unreadable_arg, build_train_parser, check_launch, command_line_dests, compile_from_args, \
    create_model_and_clip, load_source, make_accelerator, model_brings_weights, parse_with_hparams, positive_int, \
    prefer_command_line_sources, refuse_two_sources, resolve_demo_data, use_model_folder
from tps_timm.data import TooManyUnreadable, check_unreadable, load_video_list, missing_videos
from tps_timm.evaluate import eval_dataset, evaluate, warn_sample_count
from tps_timm.onnx_model import ExportedVideoModel
from tps_timm.training import prepare_loader


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog='validate.py', description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument('--val-list', required=False, default=None, help='validation split annotation file')
    add_dataset_arg(parser, '--dataset', 'the videos to evaluate, in place of --val-list')
    parser.add_argument('--val-num-samples', type=positive_int, default=None, metavar='N',
                        help='samples in the --dataset shards (default: their _info.json), checked after the pass')
    add_hf_args(parser)
    # a training recipe's validation source and split (its `dataset` is the training source: never evaluated here)
    parser.add_argument('--val-dataset', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--val-split', default=None, help=argparse.SUPPRESS)
    add_demo_args(parser)
    add_unreadable_arg(parser)
    add_test_view_args(parser)
    parser.add_argument('--amp', action='store_true', help='bf16 autocast (CUDA)')
    parser.add_argument('--test-short-side', '--short-side', type=positive_int, default=None,
                        help='short side the frames are resized to before the test crops (default: the crop size, '
                             'the authors\' test protocol; a recipe\'s short_side is the training resize)')
    parser.add_argument('--results-file', default=None, help='write the metrics to this .json or .csv file')
    return parser


def write_results(path: str, metrics: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith('.csv'):
        with open(path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(metrics))
            writer.writeheader()
            writer.writerow({k: ';'.join(v) if isinstance(v, list) else v for k, v in metrics.items()})
    else:
        with open(path, 'w') as f:
            json.dump(metrics, f, indent=2)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    parser = build_parser()
    args = parse_with_hparams(parser, argv, shared_with=build_train_parser())  # recipes hold training keys too
    check_launch(parser.prog)  # before any work: a launch that cannot give the processes asked for
    given = command_line_dests(parser, argv)
    if given & {'data_root', 'val_list', 'dataset'} and 'demo_data' not in given:
        args.demo_data = None  # the user's data on the command line wins over a recipe's demo switch
    if 'dataset' not in given:
        args.dataset = args.val_dataset  # from a recipe: its validation source
    if 'split' not in given and args.val_split:
        args.split = args.val_split
    prefer_command_line_sources(args, given, (('val_list', 'dataset'),))
    use_model_folder(args, given)
    resolve_demo_data(args, progress=False)
    refuse_two_sources(parser, args, (('val_list', 'dataset', 'the videos to evaluate'),))
    if not (args.val_list or args.dataset):
        parser.error('--val-list or --dataset is required (in the command line or the --hparams file)')
    if args.dataset:
        videos = load_source(parser, '--dataset', args.dataset, args.val_num_samples, args.class_names,
                             split=args.split, input_key=args.input_key, target_key=args.target_key)
    else:
        try:
            videos = load_video_list(args.val_list, args.data_root, args.dataset_format, args.class_names)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        problem = missing_videos(videos, seed=args.seed)
        if problem:
            parser.error(f'--val-list {args.val_list}: {problem}')
    accelerator = make_accelerator(parser.prog, mixed_precision='bf16' if args.amp and torch.cuda.is_available()
                                   else 'no')
    # a trained model keeps its classifier: labels it does not have are an error below, not a new random head
    model, clip = create_model_and_clip(parser, args, None if model_brings_weights(args) else
                                        videos.num_classes or None)
    try:
        videos.check_labels(model.num_classes)  # before the pass, not after it
    except ValueError as e:
        parser.error(str(e))
    dataset = eval_dataset(videos, clip, args.test_short_side, args.video_backend, accelerator.process_index,
                           accelerator.num_processes, model.num_classes)
    loader = prepare_loader(accelerator, torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=False))
    model = compile_from_args(args, model)
    if not isinstance(model, ExportedVideoModel):  # an exported model runs on its own runtime
        model = accelerator.prepare(model)
    metrics = evaluate(model, loader, accelerator, clip.mean, clip.std, desc='validate')
    source = args.val_list or args.dataset
    # the last collective is done: a rank that exits with its process group alive can abort ("terminate called
    # without an active exception") as its gloo threads are torn down
    accelerator.end_training()
    num_clips, num_crops = clip.num_clips, clip.num_crops
    metrics.update(model=args.model, num_frames=clip.num_frames, num_clips=num_clips, num_crops=num_crops)
    if accelerator.is_main_process:
        warn_sample_count(dataset, metrics['num_videos'])
        print(f"top-1 {metrics['top1']:.2f}  top-5 {metrics['top5']:.2f}  mean class {metrics['mean_class_acc']:.2f}"
              f"  videos {metrics['num_videos']} (unreadable {metrics['unreadable']})  views {num_clips}x{num_crops}"
              f"  {metrics['clips_per_s']:.1f} clips/s")
        if args.results_file:
            write_results(args.results_file, metrics)
    try:  # after the results are written: they count the unreadable videos too
        check_unreadable(metrics['unreadable'], metrics['num_videos'], args.max_unreadable,
                         f'videos of {source}', metrics['unreadable_videos'])
    except TooManyUnreadable as e:
        sys.exit(f'{parser.prog}: error: {e}')
    return metrics


if __name__ == '__main__':
    main(sys.argv[1:])
