"""How many training clips per second the loader delivers on your data: size ``--workers`` against the model.

    python -m tps_timm.throughput --hparams hparams/k400.yaml --data-root /data/k400 \\
        --train-list /data/k400/train.csv [--workers N] [--clips N] [--repeated-aug N] [--json OUT]
    python -m tps_timm.throughput --hparams hparams/k400.yaml --dataset 'wds/k400/train-{000000..000239}.tar'

The loader is train.py's, built from the same flags and recipe (``--workers 0``: in this process). It prints the
clips/s of the whole loader and per worker, and where one clip's time goes in one process: decoding, augmentation
and collation, and the workers that would keep one H100 busy (``H100_CLIPS_PER_S``): a GPU trains faster than one
worker loads.
"""
import argparse
import json
import random
import time
from typing import Dict, Optional, Sequence

import numpy as np

from .cli import build_train_parser, command_line_dests, create_model_and_clip, load_source, parse_with_hparams, \
    positive_int, prefer_command_line_sources, refuse_two_sources, resolve_demo_data, train_loader_from_args
from .data import ClipRandAugment, ShardedTrainClips, VideoReadError, batch_rand_augment, load_video_list, \
    resolve_flip_pairs
from .data.loader import shutdown_workers

__all__ = ['measure_loader', 'measure_split', 'main']

# clips/s one H100 trains at (bf16, batch 8, 32 x 224 clips), as the loader issue (12) reported them: not measured
# by this repo's benchmarks yet (benchmarks/bench.py --compile on a GPU gives the figures of yours)
H100_CLIPS_PER_S = {'TPS-Swin-T compiled': 206, 'TPS-Swin-T eager': 128, 'TPS-Swin-B': 77}


def measure_loader(loader, clips: int, progress: bool = True) -> Dict[str, float]:
    """Clips/s of ``loader`` over at least ``clips`` clips after its first batch (worker start-up, reported apart)."""
    from tqdm import tqdm
    start = time.perf_counter()
    first, seen, epoch = None, 0, 0
    epochs = loader.dataset if isinstance(loader.dataset, ShardedTrainClips) else loader.sampler
    try:
        with tqdm(total=clips, desc='loading', unit='clip', disable=not progress) as bar:
            while seen < clips:
                epochs.set_epoch(epoch)
                for batch, *_ in loader:
                    if first is None:
                        first = time.perf_counter()
                        continue
                    seen += len(batch)
                    bar.update(len(batch))
                    if seen >= clips:
                        break
                epoch += 1
    finally:
        shutdown_workers(loader)  # they ignore SIGTERM (see build_train_loader): not left to the interpreter's exit
    end = time.perf_counter()
    return dict(clips_per_s=seen / (end - first), clips=seen, first_batch_s=first - start)


def measure_split(dataset, collate, count: int, seed: int = 0, rand_augment: Optional[ClipRandAugment] = None
                  ) -> Dict[str, float]:
    """Milliseconds per clip spent decoding, augmenting and collating, over ``count`` items in this process
    (unreadable videos among them are counted, as ``split_unreadable``, and left out)."""
    rng = np.random.default_rng(seed)
    if isinstance(dataset, ShardedTrainClips):  # the first samples of the shards, decoded from their bytes
        videos, items = dataset.first_samples(count), dataset.items
    else:
        videos = [dataset.videos.video(int(i)) for i in rng.integers(len(dataset), size=count)]
        items = dataset
    seeds = rng.integers(2 ** 62, size=len(videos))
    decode = augment = 0.0
    outputs, unreadable = [], 0
    try:  # untimed: the first decode loads the decoder's libraries
        items.decode(videos[0][0], np.random.default_rng(0), videos[0][1])
    except (VideoReadError, IndexError):
        pass  # counted below
    for (name, data, label), item_seed in zip(videos, seeds.tolist()):
        start = time.perf_counter()
        try:
            clip = items.decode(name, np.random.default_rng(item_seed), data)[0]
        except VideoReadError:  # the loader replaces such a video; here it is left out of the timing
            unreadable += 1
            continue
        decoded = time.perf_counter()
        outputs.append(items.augment(clip, label, random.Random(item_seed)))
        augment += time.perf_counter() - decoded
        decode += decoded - start
    if not outputs:
        raise RuntimeError(f'none of the {count} videos drawn for the decode/augment split was readable')
    start = time.perf_counter()
    batch, _ = collate(outputs)
    collate_s = time.perf_counter() - start
    clips = len(outputs) * items.repeated_aug
    result = dict(decode_ms=1e3 * decode / clips, augment_ms=1e3 * augment / clips, collate_ms=1e3 * collate_s / clips,
                  split_unreadable=unreadable)
    if rand_augment is not None:  # --aa-on-batch: what the training loop adds, measured here on this CPU
        start = time.perf_counter()
        rand_augment.augment_batch(batch, random.Random(seed))
        result['aa_on_batch_ms_cpu'] = 1e3 * (time.perf_counter() - start) / clips
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = build_train_parser(description=__doc__, prog='python -m tps_timm.throughput')
    g = parser.add_argument_group('throughput')
    g.add_argument('--clips', type=positive_int, default=200, help='clips to load (after the first batch)')
    g.add_argument('--split-clips', type=positive_int, default=16,
                   help='clips timed one by one for the decode/augment split')
    g.add_argument('--json', default=None, metavar='OUT', help='also write the results to this JSON file')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = build_parser()
    args = parse_with_hparams(parser, argv)
    given = command_line_dests(parser, argv)
    if given & {'data_root', 'train_list', 'dataset'} and 'demo_data' not in given:
        args.demo_data = None  # the user's data on the command line wins over a recipe's demo switch
    prefer_command_line_sources(args, given, (('train_list', 'dataset'),))
    resolve_demo_data(args, progress=not args.no_progress)
    refuse_two_sources(parser, args, (('train_list', 'dataset', 'the videos'),))
    if not (args.train_list or args.dataset):
        parser.error('--train-list or --dataset (or --demo-data) is required')
    try:
        if args.dataset:
            videos = load_source(parser, '--dataset', args.dataset, args.train_num_samples, args.class_names, True,
                                 args.train_split, args.input_key, args.target_key)
        else:
            videos = load_video_list(args.train_list, args.data_root, args.dataset_format, args.class_names)
        num_classes = videos.num_classes or args.num_classes or 1  # the classes only check labels here
        _, clip = create_model_and_clip(parser, args, num_classes, weights=False)  # only its clip settings
        flip_pairs = resolve_flip_pairs(args.flip_label_map, videos.class_names) if args.hflip > 0 else []
        loader = train_loader_from_args(args, clip, videos, flip_pairs, num_classes=videos.num_classes or None)
    except (OSError, RuntimeError, ValueError) as e:
        parser.error(str(e))
    rand_augment = batch_rand_augment(args.aa, args.aa_on_batch, clip.img_size)
    print(f'{videos.num_videos} videos{" in shards" if args.dataset else ""}; clips of {clip.num_frames} frames '
          f'({clip.sampling}, {clip.img_size} px); batch {args.batch_size}; {args.workers} workers; '
          f'repeated-aug {args.repeated_aug}; RandAugment {args.aa or "off"}{" on the batch" if rand_augment else ""}')
    result = dict(workers=args.workers, batch_size=args.batch_size, repeated_aug=args.repeated_aug,
                  aa=args.aa, aa_on_batch=bool(rand_augment),
                  **measure_loader(loader, args.clips, not args.no_progress))
    result['clips_per_s_per_worker'] = result['clips_per_s'] / max(args.workers, 1)
    result.update(measure_split(loader.dataset, loader.collate_fn, args.split_clips, args.seed, rand_augment))
    print(f"{result['clips_per_s']:.1f} clips/s ({result['clips_per_s_per_worker']:.1f} per worker; first batch after "
          f"{result['first_batch_s']:.1f} s)")
    print(f"one clip in one process: decode {result['decode_ms']:.1f} ms, augment {result['augment_ms']:.1f} ms, "
          f"collate {result['collate_ms']:.2f} ms" + (f"; RandAugment on the batch {result['aa_on_batch_ms_cpu']:.1f} "
                                                     f"ms on this CPU" if rand_augment else ''))
    print('reference: one H100 trains (bf16, batch 8, 32 x 224 clips; other models and clip sizes differ):')
    for name, rate in H100_CLIPS_PER_S.items():
        print(f'  {name}: ~{rate} clips/s, {int(np.ceil(rate / result["clips_per_s_per_worker"]))} workers like these')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
