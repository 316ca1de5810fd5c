"""Classify videos: ``python -m tps_timm.predict VIDEO|FOLDER|LIST [...] --model MODEL [--output top5.csv]``.

Prints the top-k classes with probabilities per video (or writes them as CSV / JSON), using the model's config for
frames, sampling, size, mean/std and label names. ``--timeline`` gives each video's classes over time instead (windows
and segments, ``--plot`` draws them); ``--stream SOURCE`` classifies a live source as it plays; ``--explain OUT``
shows where the model looks (Grad-CAM). Folders are searched for videos; list files name one per line;
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
    add_unreadable_arg, check_launch, compile_from_args, create_model_and_clip, find_videos_or_exit, fraction, \
    label_names_for, load_source, make_accelerator, model_brings_weights, non_negative_float, non_negative_int, \
    parse_with_hparams, positive_float, positive_int
from .clip import ClipConfig
from .data import ShardSource, TooManyUnreadable, VideoReadError, check_unreadable, is_sharded, read_class_names, \
    window_seconds
from .evaluate import video_outputs
from .timeline import report_timelines, timeline_outputs, timeline_record

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


def build_parser() -> ArgumentParser:
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
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help='videos per batch (default 1); with --timeline, windows per batch (default 8)')
    parser.add_argument('--workers', type=non_negative_int, default=0, help='loader processes')
    parser.add_argument('--output', default=None, help='write the predictions to this .csv or .json file (--stream: '
                                                       'JSON lines, .jsonl)')
    add_unreadable_arg(parser)
    group = parser.add_argument_group('timelines of whole videos')
    group.add_argument('--timeline', action='store_true',
                       help='classes over time: windows of the model\'s clip duration every --stride, and segments')
    group.add_argument('--window', type=positive_float, default=None,
                       help='window seconds (default: dense sampling: frames x interval at the video\'s rate; '
                            'uniform: the median training-video duration in the model\'s config)')
    group.add_argument('--stride', type=positive_float, default=None, help='seconds between windows (default: half '
                                                                            'a window)')
    group.add_argument('--min-prob', type=fraction, default=0.0,
                       help='a window whose top class has a lower probability is background, in no segment')
    group.add_argument('--min-segment', type=non_negative_float, default=0.0,
                       help='seconds: shorter segments are given to their neighbours')
    group.add_argument('--plot', default=None, metavar='FILE.png|FOLDER',
                       help='draw each timeline (FOLDER/<video name>.png for several videos); needs matplotlib')
    group = parser.add_argument_group('live sources')
    group.add_argument('--stream', default=None, metavar='SOURCE',
                       help='classify a stream as it plays: a camera device (/dev/video0 with --stream-format v4l2), '
                            'an rtsp:// or http(s):// URL, - (standard input) or a named pipe; a video file is '
                            'played at its frame rate')
    group.add_argument('--stream-format', default=None, help='FFmpeg input format (e.g. v4l2, avfoundation, dshow)')
    group.add_argument('--stream-timeout', type=positive_float, default=10.0,
                       help='seconds without a frame after which a stream counts as stalled and the run ends')
    group = parser.add_argument_group('saliency')
    group.add_argument('--explain', default=None, metavar='OUT.mp4|OUT.gif',
                       help='write where the model looks for its top class (Grad-CAM over the frames) to OUT, and '
                            'a strip of 8 frames with their maps to OUT with .png')
    group.add_argument('--explain-class', default=None, metavar='NAME', help='explain this class, not the top one')
    group.add_argument('--explain-method', choices=('gradcam', 'hirescam'), default='gradcam',
                       help='gradcam: channels weighed by their mean gradient; hirescam: each position by its own')
    group.add_argument('--explain-stage', type=non_negative_int, default=None,
                       help='the stage (TPS-Swin) or block (TPS-ViT) whose maps are used (default: the last with at '
                            'least 4x4 maps at the clip size)')
    return parser


def _check_modes(parser: ArgumentParser, args) -> None:
    """One mode at a time, each with the inputs it reads; a plot drawable here."""
    modes = [flag for flag, on in (('--timeline', args.timeline), ('--stream', args.stream),
                                   ('--explain', args.explain)) if on]
    if len(modes) > 1:
        parser.error(f'{" and ".join(modes)} are separate modes: give one')
    if args.stream:
        if args.videos or args.dataset:
            parser.error('--stream reads its SOURCE: give no videos or --dataset with it')
    elif bool(args.videos) == bool(args.dataset):
        parser.error('give the videos (files, folders, lists) or --dataset, one of them')
    if args.timeline and args.output and not args.output.lower().endswith(('.json', '.csv')):
        parser.error(f'--output {args.output}: a timeline is written as .json or .csv')
    if args.explain:
        if args.dataset or len(args.videos) != 1:
            parser.error('--explain explains one video: give one video file')
        if not args.explain.lower().endswith(('.mp4', '.gif')):
            parser.error(f'--explain {args.explain}: write an .mp4 or a .gif')
    for flag, value in (('--plot', args.plot), ('--window', args.window), ('--stride', args.stride)):
        if value is not None and not (args.timeline or (args.stream and flag != '--plot')):
            parser.error(f'{flag} goes with --timeline' + (' or --stream' if flag != '--plot' else ''))
    if args.explain_class is not None or args.explain_stage is not None:
        if not args.explain:
            parser.error('--explain-class and --explain-stage go with --explain')
    if args.plot:
        from .plot import check_plotting
        problem = check_plotting()
        if problem:
            parser.error(f'--plot: {problem}')


def main(argv: Optional[Sequence[str]] = None) -> None:
    from accelerate.utils import gather_object

    from .onnx_model import ExportedVideoModel
    parser = build_parser()
    args = parse_with_hparams(parser, argv)
    check_launch(parser.prog)  # before any work: a launch that cannot give the processes asked for
    _check_modes(parser, args)
    try:
        names = read_class_names(args.class_names) if args.class_names else []
    except OSError as e:
        parser.error(f'--class-names {args.class_names}: {e.strerror or e}')
    if args.stream:
        videos = []
    elif args.dataset:
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
    if args.explain and isinstance(model, ExportedVideoModel):
        parser.error(f'--explain needs the PyTorch model (gradients): {args.model} is an exported file; give the '
                     f'model folder it was exported from')
    if args.timeline or args.stream:
        try:
            window_seconds(clip, 1.0, args.window)  # uniform clips need a recorded duration: said before any work
        except ValueError as e:
            parser.error(str(e))
    if not isinstance(model, ExportedVideoModel):
        model = model.to(accelerator.device)
    class_names = label_names_for(model, names)
    if args.explain:
        from .saliency import explain_video
        if len(videos) != 1:
            parser.error(f'--explain explains one video: {args.videos[0]} holds {len(videos)}')
        try:
            print(explain_video(model, videos[0], clip, class_names, args.explain, args.explain_class,
                                args.explain_stage, args.explain_method, args.video_backend))
        except (ValueError, VideoReadError) as e:
            parser.error(str(e))
        accelerator.end_training()
        return
    model = compile_from_args(args, model)
    if args.stream:
        from .stream import StreamEnded, classify_stream
        try:
            summary = classify_stream(model, args.stream, clip, class_names, window=args.window, stride=args.stride,
                                      stream_format=args.stream_format, timeout=args.stream_timeout,
                                      output=args.output, top_k=args.top_k)
        except StreamEnded as e:
            parser.error(str(e))
        print(summary, file=sys.stderr)
        accelerator.end_training()
        return
    sharded = is_sharded(videos)
    start = time.perf_counter()
    progress = args.output is not None and accelerator.is_main_process
    # in order: process i takes the i-th part of a list, or its share of the shards
    with contextlib.nullcontext(videos) if sharded else accelerator.split_between_processes(videos) as share:
        if args.timeline:
            rows = [(t.index, t.name, (timeline_record(t, class_names, args.top_k, args.min_prob, args.min_segment),
                                       torch.stack(t.probs).numpy() if t.probs else None, t.thumbnails))
                    for t in timeline_outputs(model, share, clip, args.window, args.stride, args.batch_size or 8,
                                              args.workers, progress, accelerator.process_index,
                                              accelerator.num_processes, thumbnails=bool(args.plot))]
        else:
            rows = predict_rows(model, share, clip, class_names, args.top_k, args.video_backend, args.batch_size or 1,
                                args.workers, progress, accelerator.process_index, accelerator.num_processes)
    if accelerator.num_processes > 1:
        rows = [row for part in gather_object([rows]) for row in part]  # in process order
    if sharded:
        rows.sort(key=lambda row: row[0])  # the shards' order, however they were dealt
    seconds = time.perf_counter() - start
    accelerator.end_training()
    if not accelerator.is_main_process:
        return
    if args.timeline:
        failed = report_timelines([row[2] for row in rows], class_names, seconds, args.output, args.plot)
        total = len(rows)
    else:
        results = {name: prediction for _, name, prediction in rows}
        failed = report_predictions(args, results, seconds)
        total = len(results)
    try:
        check_unreadable(len(failed), total, args.max_unreadable, 'videos', failed)
    except TooManyUnreadable as e:
        sys.exit(f'{parser.prog}: error: {e}')


def report_predictions(args, results: Dict[str, Prediction], seconds: float) -> List[str]:
    """Print or write the top-k of every video; returns the unreadable ones."""
    failed = [path for path, r in results.items() if isinstance(r, str)]
    if args.output:
        write_predictions(args.output, results)
        print(f'wrote the top-{args.top_k} of {len(results)} videos to {args.output} ({len(failed)} unreadable) in '
              f'{seconds:.1f} s ({len(results) / max(seconds, 1e-9):.1f} videos/s)')
        return failed
    for path, result in results.items():
        print(path)
        if isinstance(result, str):
            print(f'  unreadable: {result}')
            continue
        for name, prob in result:
            print(f'  {prob:7.2%}  {name}')
    return failed


if __name__ == '__main__':
    main()
