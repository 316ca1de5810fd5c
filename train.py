#!/usr/bin/env python3
"""Train TPS video models (TPS-Swin, TPS-ViT) with Accelerate and timm's optimizers, schedulers, mixup, losses and EMA.

    python train.py                                        # the demo: generated videos, small model, CPU, minutes
    accelerate launch train.py --hparams hparams/k400.yaml --data-root /data/k400   # a paper recipe

Flags follow timm's train.py names; ``--hparams FILE`` (YAML of flag names) sets defaults that flags override.
Outputs go to ``--output/--experiment``: checkpoints (resumable with ``--resume auto``), summary.csv, TensorBoard
logs, the resolved config, and the final model as a Hub-ready folder (``--push-to-hub REPO_ID`` uploads it).
"""
import argparse
import copy
import dataclasses
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import yaml

import tps_timm  # noqa: F401  (registers the models)
from tps_timm.cli import build_train_parser, check_launch, command_line_dests, compile_from_args, \
    create_model_and_clip, load_source, make_accelerator, parse_with_hparams, prefer_command_line_sources, \
    refuse_two_sources, resolve_demo_data, source_num_classes, train_loader_from_args
from tps_timm.clip import ClipConfig
from tps_timm.data import ClipRandomErasing, HfStreamSource, HfVideoTable, ShardSource, TooManyUnreadable, VideoList, \
    batch_rand_augment, check_unreadable, is_sharded, load_video_list, median_video_seconds, missing_videos, \
    normalize_clip, resolve_flip_pairs
from tps_timm.data.loader import loader_kwargs
from tps_timm.evaluate import eval_dataset, evaluate, warn_sample_count
from tps_timm.hub import HubPushError, check_push_access, push_folder
from tps_timm.sharding import checkpoint_model_state, full_state_dict, is_sharded_model, shard_ema
from tps_timm.training import EXIT_PREEMPTED, Preempted, Recovery, TrainState, UnreadableCounter, \
    VideoMixup, append_summary, clear_preempted, copy_checkpoint_atomic, latest_checkpoint, new_run_dir, \
    optimizer_param_groups, prepare_loader, prune_checkpoints, replace_folder, save_checkpoint_atomic, write_preempted

ROOT = Path(__file__).resolve().parent
DEMO_HPARAMS = ROOT / 'hparams' / 'demo.yaml'
_logger = logging.getLogger('train')
Source = Union[VideoList, ShardSource, HfVideoTable, HfStreamSource]  # a list, or --dataset wds/, hfds/, hfids/


def build_parser() -> argparse.ArgumentParser:
    return build_train_parser(description=__doc__, prog='train.py')


def build_loaders(args, clip_cfg: ClipConfig, train_videos, val_videos, flip_pairs, accelerator, num_classes: int):
    pin_memory = accelerator.device.type == 'cuda'
    ranks = dict(rank=accelerator.process_index, world_size=accelerator.num_processes, num_classes=num_classes)
    train_loader = train_loader_from_args(args, clip_cfg, train_videos, flip_pairs, pin_memory, **ranks)
    val_loader = None
    if val_videos is not None:  # one view, resized as for training; validate.py does the full multi-view test
        val_set = eval_dataset(val_videos, clip_cfg.replace(num_clips=1, num_crops=1), clip_cfg.train_short_side,
                               args.video_backend, **ranks)
        val_loader = torch.utils.data.DataLoader(  # workers only while validating: not a second idle set
            val_set, batch_size=args.batch_size, shuffle=False,
            **loader_kwargs(args.workers, pin_memory, args.prefetch_factor, persistent=False))
    return train_loader, val_loader


def train_one_epoch(epoch, model, loader, optimizer, scheduler, criterion, accelerator, state, clip_cfg, args,
                    recovery: Recovery, mixup=None, erasing=None, ema=None, rand_augment=None) -> Dict[str, float]:
    from tqdm import tqdm
    model.train()
    total_batches = len(loader)
    loader, start_batch = recovery.epoch_loader(loader, epoch)  # a resumed epoch continues at its next batch
    seen, start = 0, time.perf_counter()
    videos_per_batch = args.batch_size // args.repeated_aug
    unreadable = UnreadableCounter(accelerator, total_batches * videos_per_batch * accelerator.num_processes,
                                   args.max_unreadable, loader.dataset.max_retries, count=state.unreadable)
    bar = tqdm(loader, desc=f'epoch {epoch}', disable=args.no_progress or not accelerator.is_main_process,
               leave=False, total=total_batches, initial=start_batch)
    for batch_index, (clips, labels, replaced, *stream_position) in enumerate(bar, start_batch):
        unreadable.update(replaced)  # before the step: a run past --max-unreadable stops without training on it
        with accelerator.accumulate(model):
            if rand_augment is not None:  # --aa-on-batch: on the accelerator, one draw per clip, its own on each rank
                clips = rand_augment.augment_batch(
                    clips, random.Random(f'{args.seed}-{epoch}-{accelerator.process_index}-{batch_index}'))
            x = normalize_clip(clips, clip_cfg.mean, clip_cfg.std)
            if erasing is not None:
                x = erasing(x)
            target = labels
            if mixup is not None:
                x, target = mixup(x, labels)
            with accelerator.autocast():
                loss = criterion(model(x), target)
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.clip_grad:
                accelerator.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            state.step += 1
            scheduler.step_update(num_updates=state.step)
            if ema is not None:
                ema.update(accelerator.unwrap_model(model), step=state.step)
        seen += len(clips) * accelerator.num_processes
        lr = optimizer.param_groups[-1]['lr']
        clips_s = seen / (time.perf_counter() - start)
        bar.set_postfix(loss=f'{loss.item():.3f}', lr=f'{lr:.2e}', clips_s=f'{clips_s:.1f}')
        if accelerator.is_main_process and state.step % args.log_interval == 0:
            accelerator.log({'train/loss': loss.item(), 'train/lr': lr}, step=state.step)
        state.unreadable = unreadable.count  # kept by a recovery checkpoint
        recovery.after_batch(batch_index, loss.item(), stream_position[0] if stream_position else None,
                             last=batch_index + 1 == total_batches)  # may checkpoint, or stop the run
    state.unreadable = 0
    if unreadable.count and accelerator.is_main_process:
        _logger.warning(f'epoch {epoch}: {unreadable.count} unreadable training videos were replaced, e.g. '
                        + '; '.join(unreadable.examples))
    return dict(loss=recovery.epoch_loss(), clips_per_s=seen / (time.perf_counter() - start),
                unreadable=unreadable.count)


def run_dir(args) -> str:
    """The run's folder: ``--output/--experiment``, or for a new run (no ``--resume``) into a folder that holds a run,
    the next free numbered one, said in the first line."""
    named = os.path.join(args.output, args.experiment or args.model.replace('/', '_').replace(':', '_'))
    out_dir = named if args.resume else new_run_dir(named)
    if out_dir != named and int(os.environ.get('RANK', 0)) == 0:
        print(f'{named} holds an earlier run: this run writes to {out_dir} (--resume auto continues {named})')
    return out_dir


def check_args(parser, args) -> None:
    """Flag combinations that cannot work, refused before any work."""
    if args.export_best and args.export_ema:
        parser.error('--export-best and --export-ema: choose one (the best epoch is chosen by the non-EMA top-1)')
    if args.export_ema and not args.model_ema:
        parser.error('--export-ema needs --model-ema')
    if args.export_best and not (args.val_list or args.val_dataset):
        parser.error('--export-best needs validation videos (--val-list or --val-dataset) to choose the best epoch by')
    refuse_two_sources(parser, args, (('train_list', 'dataset', 'the train videos'),
                                      ('val_list', 'val_dataset', 'the val videos')))


def parse_args(argv: Optional[Sequence[str]]) -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The flags over the recipe (the demo recipe when neither a recipe nor data is given), checked before any
    work: the launch and the upload access."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.split('=')[0] in ('--hparams', '--train-list', '--dataset') for a in argv):
        argv = ['--hparams', str(DEMO_HPARAMS), *argv]  # no recipe and no data (or --demo-data): the built-in demo
    parser = build_parser()
    args = parse_with_hparams(parser, argv)
    check_launch(parser.prog)  # a launch that cannot give the processes asked for
    given = command_line_dests(parser, argv)
    if given & {'data_root', 'train_list', 'val_list', 'dataset', 'val_dataset'} and 'demo_data' not in given:
        args.demo_data = None  # the user's data on the command line wins over a recipe's demo switch
    prefer_command_line_sources(args, given, (('train_list', 'dataset'), ('val_list', 'val_dataset')))
    if args.push_to_hub:  # a run is not wasted on an upload that cannot happen
        try:
            check_push_access(args.push_to_hub)
        except HubPushError as e:
            parser.error(str(e))
    return parser, args


def load_splits(parser, args) -> Tuple[Source, Optional[Source]]:
    """The training and validation videos: lists (``--demo-data`` fills them) or shards (``--dataset``,
    ``--val-dataset``), refused in one line when unreadable or when their videos are missing, and the flag
    combinations that need them checked."""
    resolve_demo_data(args, progress=not args.no_progress)
    if not (args.train_list or args.dataset):
        parser.error('--train-list or --dataset (or --demo-data) is required')
    check_args(parser, args)  # after the demo set filled --val-list
    try:
        columns = dict(input_key=args.input_key, target_key=args.target_key)
        train_videos = load_source(parser, '--dataset', args.dataset, args.train_num_samples, args.class_names,
                                   train=True, split=args.train_split, **columns) if args.dataset else \
            load_video_list(args.train_list, args.data_root, args.dataset_format, args.class_names)
        val_videos = load_source(parser, '--val-dataset', args.val_dataset, args.val_num_samples,
                                 args.class_names, split=args.val_split, **columns) if args.val_dataset else \
            load_video_list(args.val_list, args.data_root, args.dataset_format, args.class_names) \
            if args.val_list else None
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    for flag, videos in (('--train-list', train_videos), ('--val-list', val_videos)):
        problem = missing_videos(videos, seed=args.seed) if isinstance(videos, VideoList) else None
        if problem:
            parser.error(f'{flag} {getattr(args, flag[2:].replace("-", "_"))}: {problem}')
    return train_videos, val_videos


def model_for_data(parser, args, train_videos: Source, val_videos: Optional[Source]):
    """The model sized for the training videos, its clip settings, and the class pairs a flip swaps."""
    for name, value in (('drop_rate', args.drop), ('drop_path_rate', args.drop_path)):
        if value is not None:
            args.model_kwargs[name] = value
    num_classes = train_videos.num_classes if isinstance(train_videos, VideoList) else \
        source_num_classes(parser, '--dataset', train_videos, args.num_classes)
    model, clip_cfg = create_model_and_clip(parser, args, num_classes=num_classes)
    try:
        for videos in (train_videos, val_videos):
            if videos is not None:
                videos.check_labels(model.num_classes)
        flip_pairs = resolve_flip_pairs(args.flip_label_map, train_videos.class_names) if args.hflip > 0 else []
    except ValueError as e:
        parser.error(str(e))
    if train_videos.num_classes and model.num_classes != train_videos.num_classes:
        parser.error(f'the model has {model.num_classes} classes, the training videos {train_videos.num_classes}')
    args.flip_label_map = [list(pair) for pair in flip_pairs]  # resolved: args.yaml records the pairs themselves
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model, clip_cfg, flip_pairs


def training_parts(args, model, device: torch.device):
    """timm's optimizer, EMA, mixup / cutmix, loss and random erasing, as the flags set them."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3
    groups = optimizer_param_groups(model, args.weight_decay, args.backbone_lr_mult, args.layer_decay)
    opt_kwargs = {k: v for k, v in dict(eps=args.opt_eps, betas=args.opt_betas).items() if v is not None}
    optimizer = create_optimizer_v2(groups, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum, **opt_kwargs)
    ema = ModelEmaV3(model, decay=args.model_ema_decay) if args.model_ema else None
    mixup = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup = VideoMixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                           switch_prob=args.mixup_switch_prob, mode=args.mixup_mode, label_smoothing=args.smoothing,
                           num_classes=model.num_classes)
    criterion = SoftTargetCrossEntropy() if mixup else \
        LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing > 0 else torch.nn.CrossEntropyLoss()
    erasing = ClipRandomErasing(args.reprob, args.remode, device=str(device)) if args.reprob > 0 else None
    return optimizer, ema, mixup, criterion, erasing


def resume_from(parser, accelerator, resume: Optional[str], checkpoint_dir: str, state: TrainState) -> None:
    """Load ``--resume`` (a checkpoint folder, or ``auto``: the furthest-on whole one of this run's, if any)."""
    if resume == 'auto':  # the main process chooses: another may see a shared folder a moment late
        from accelerate.utils import broadcast_object_list
        resume, skipped = broadcast_object_list([latest_checkpoint(checkpoint_dir)])[0] \
            if accelerator.num_processes > 1 else latest_checkpoint(checkpoint_dir)
        for line in skipped:
            accelerator.print(line)
        if resume is None and skipped:  # starting afresh would overwrite them
            parser.error(f'--resume auto: no whole checkpoint in {checkpoint_dir} (see above); give --resume '
                         f'FOLDER, or move the folder away to start afresh')
    if resume:
        if not os.path.isdir(resume):
            parser.error(f'--resume: no checkpoint folder {resume}')
        accelerator.load_state(resume)
        where = f'epoch {state.epoch + 1} after batch {state.batch}' if state.batch else f'epoch {state.epoch} done'
        accelerator.print(f'resumed from {resume}: {where}, step {state.step}')


def write_run_args(out_dir: str, args, clip_cfg: ClipConfig) -> None:
    """``args.yaml``: every flag as this run resolved it (the clip settings too), usable as a ``--hparams`` recipe."""
    os.makedirs(out_dir, exist_ok=True)
    values = {**vars(args), **clip_cfg.to_flags()}
    with open(os.path.join(out_dir, 'args.yaml'), 'w') as f:
        yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}, f, sort_keys=True)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast_object_list
    from timm.scheduler import create_scheduler_v2

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    logging.getLogger('accelerate').setLevel(logging.WARNING)  # its per-file checkpoint messages
    parser, args = parse_args(argv)
    out_dir = run_dir(args)
    train_videos, val_videos = load_splits(parser, args)
    accelerator = make_accelerator(
        parser.prog, gradient_accumulation_steps=args.grad_accum_steps, mixed_precision=args.mixed_precision,
        log_with='tensorboard', project_config=ProjectConfiguration(project_dir=out_dir, logging_dir=out_dir),
        dataloader_config=DataLoaderConfiguration(non_blocking=True))  # with pinned batches: copies overlap compute
    if accelerator.num_processes > 1:  # the main process's choice of folder, should another have seen it made
        out_dir = broadcast_object_list([out_dir])[0]
        accelerator.project_configuration.set_directories(out_dir)
    checkpoint_dir, model_dir = os.path.join(out_dir, 'checkpoints'), os.path.join(out_dir, 'model')
    model, clip_cfg, flip_pairs = model_for_data(parser, args, train_videos, val_videos)
    if flip_pairs:
        accelerator.print('a flip swaps: ' + '; '.join(f'{a} <-> {b}' for a, b in flip_pairs))
    try:
        train_loader, val_loader = build_loaders(args, clip_cfg, train_videos, val_videos, flip_pairs, accelerator,
                                                 model.num_classes)
        rand_augment = batch_rand_augment(args.aa, args.aa_on_batch, clip_cfg.img_size)
    except ValueError as e:
        parser.error(str(e))
    optimizer, ema, mixup, criterion, erasing = training_parts(args, model, accelerator.device)

    if args.torchcompile and not args.compile_cache:  # shared by the runs under --output: reruns start warm too
        args.compile_cache = os.path.join(args.output, 'compile_cache')
    # FSDP: no rank holds whole weights after prepare; the main process keeps an unsharded copy to export into
    export_template = copy.deepcopy(model) if is_sharded_model(accelerator) and accelerator.is_main_process else None
    if is_sharded_model(accelerator) and val_videos is not None and is_sharded(val_videos):
        parser.error('--val-dataset shards give each process its own number of batches, which a sharded model '
                     '(FSDP) cannot evaluate: validate with --val-list, or after training with validate.py')
    model = compile_from_args(args, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema_state = shard_ema(accelerator, ema) if ema is not None else None  # sharded like the model under FSDP
    train_loader = prepare_loader(accelerator, train_loader)
    # The prepared loader's length is this process's share: with drop_last, accelerate drops an incomplete round of
    # batches, so len / num_processes would count one update too many when the batches do not divide evenly.
    updates_per_epoch = math.ceil(len(train_loader) / args.grad_accum_steps)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    if val_loader is not None:
        val_loader = prepare_loader(accelerator, val_loader)
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema_state)
    if args.resume:
        resume_from(parser, accelerator, args.resume, checkpoint_dir, state)
    recovery = Recovery(accelerator, checkpoint_dir, state, args.recovery_interval, args.workers)
    try:
        recovery.check_resume(train_loader)
    except ValueError as e:
        parser.error(f'--resume: {e}')
    if state.epoch + 1 >= num_epochs and os.path.isfile(os.path.join(model_dir, 'config.json')):
        accelerator.print(f'nothing to train: epoch {state.epoch} was the last; {model_dir} is left as it is')
        accelerator.end_training()
        return finish(accelerator, args, state, out_dir, model_dir)
    if accelerator.is_main_process:
        write_run_args(out_dir, args, clip_cfg)
        clear_preempted(out_dir)
    accelerator.init_trackers('tensorboard')

    try:
        with recovery:  # stop signals are noted, and the loader workers stopped at its end
            run_epochs(model, ema, train_loader, val_loader, optimizer, scheduler, criterion, accelerator, state,
                       clip_cfg, args, mixup, erasing, rand_augment, num_epochs, checkpoint_dir, out_dir, recovery)
    except TooManyUnreadable as e:  # raised on every process at the same step, or after the same validation
        accelerator.end_training()
        sys.exit(f'{parser.prog}: error: epoch {state.epoch + 1}: {e}' if accelerator.is_main_process else 1)
    except Preempted as e:  # every process, after the same step and the checkpoint
        if accelerator.is_main_process:
            write_preempted(out_dir, e)
            print(f'{parser.prog}: {e}; exit code {EXIT_PREEMPTED}', file=sys.stderr, flush=True)
        accelerator.wait_for_everyone()  # the file is there before any launcher returns
        accelerator.end_training()  # (it ends the process group: after the last collective)
        sys.exit(EXIT_PREEMPTED)
    exported, ema_model = accelerator.unwrap_model(model), ema.module if ema is not None else None
    if is_sharded_model(accelerator):  # every process takes part in gathering the weights to export
        weights = full_state_dict(accelerator, ema.module if args.export_ema else model)
        if accelerator.is_main_process:
            export_template.load_state_dict(weights)
            exported, ema_model = export_template, export_template if ema is not None else None
    accelerator.end_training()
    if accelerator.is_main_process:
        export_model(exported, ema_model, args, clip_cfg, train_videos, val_videos, state, checkpoint_dir, model_dir)
    return finish(accelerator, args, state, out_dir, model_dir)


def run_epochs(model, ema, train_loader, val_loader, optimizer, scheduler, criterion, accelerator, state, clip_cfg,
               args, mixup, erasing, rand_augment, num_epochs: int, checkpoint_dir: str, out_dir: str,
               recovery: Recovery) -> None:
    """The epochs still to train: train, validate, checkpoint, summarise, log."""
    from accelerate.utils import set_seed
    for epoch in range(state.epoch + 1, num_epochs):
        if not recovery.resumes(epoch):  # a resumed epoch continues the random state its checkpoint saved
            set_seed(args.seed + epoch)  # each epoch's randomness depends on the epoch only: resumes replay it
        train_loader.set_epoch(epoch)  # the clips: order and augmentation seeds (SeededRandomSampler)
        train_metrics = train_one_epoch(epoch, model, train_loader, optimizer, scheduler, criterion, accelerator,
                                        state, clip_cfg, args, recovery, mixup, erasing, ema, rand_augment)
        last = epoch == num_epochs - 1
        eval_metrics = {}  # this epoch's only: an epoch without validation records none
        if val_loader is not None and ((epoch + 1) % args.eval_interval == 0 or last):
            eval_metrics = evaluate(model, val_loader, accelerator, clip_cfg.mean, clip_cfg.std, 'val',
                                    not args.no_progress)
            if ema is not None:
                ema_metrics = evaluate(ema.module, val_loader, accelerator, clip_cfg.mean, clip_cfg.std, 'val ema',
                                       not args.no_progress)
                eval_metrics.update({f'ema_{k}': v for k, v in ema_metrics.items()})
            if epoch == state.epoch + 1 or last:  # said once, and at the end
                warn_sample_count(val_loader.dataset, eval_metrics['num_videos'], '--val-dataset')
            check_unreadable(eval_metrics['unreadable'], eval_metrics['num_videos'], args.max_unreadable,
                             f'validation videos of {args.val_list or args.val_dataset}',
                             eval_metrics['unreadable_videos'])
            eval_metrics = {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float))}
        state.epoch = epoch
        improved = bool(eval_metrics) and eval_metrics['top1'] > state.best_top1
        if improved:
            state.best_top1, state.best_epoch, state.best_eval = eval_metrics['top1'], epoch, eval_metrics
        if eval_metrics:
            state.last_eval = eval_metrics
        lr = optimizer.param_groups[-1]['lr']
        saved = save_checkpoint_atomic(accelerator, checkpoint_dir, f'epoch_{epoch}')
        if accelerator.is_main_process:
            if improved:
                copy_checkpoint_atomic(saved, os.path.join(checkpoint_dir, 'best'))
            prune_checkpoints(checkpoint_dir, args.checkpoint_hist)
            append_summary(os.path.join(out_dir, 'summary.csv'),
                           {'epoch': epoch, **{f'train_{k}': v for k, v in train_metrics.items()}, 'lr': lr,
                            **{f'eval_{k}': v for k, v in eval_metrics.items()}})
            accelerator.log({'train/epoch_loss': train_metrics['loss'],
                             **{f'val/{k}': v for k, v in eval_metrics.items()}}, step=state.step)
            msg = f"epoch {epoch}: train loss {train_metrics['loss']:.4f}, {train_metrics['clips_per_s']:.1f} clips/s"
            if eval_metrics:
                msg += f", val top-1 {eval_metrics['top1']:.2f} top-5 {eval_metrics['top5']:.2f}"
            accelerator.print(msg)
        recovery.after_epoch(saved)  # a signal during validation or the checkpoint: stop here


def finish(accelerator, args, state: TrainState, out_dir: str, model_dir: str) -> Dict:
    """The closing line, the upload, and the run's result."""
    result = dict(out_dir=out_dir, model_dir=model_dir, best_top1=state.best_top1, best_epoch=state.best_epoch,
                  step=state.step, **{f'val_{k}': v for k, v in state.last_eval.items()})
    if accelerator.is_main_process:
        top1 = f"{state.last_eval['top1']:.2f}%" if state.last_eval else 'n/a (no validation list)'
        best = f' (best {state.best_top1:.2f}% at epoch {state.best_epoch})' if state.best_epoch >= 0 else ''
        accelerator.print(f'done: final val top-1 {top1}{best}; outputs in {out_dir}, Hub-ready model in {model_dir}')
        if args.push_to_hub:
            try:
                accelerator.print(f'pushed to {args.push_to_hub}: {push_folder(model_dir, args.push_to_hub)}')
            except HubPushError as e:
                _logger.error(str(e))
                raise SystemExit(1)
    return result


def export_model(model, ema_model, args, clip_cfg: ClipConfig, train_videos, val_videos, state: TrainState,
                 checkpoint_dir: str, model_dir: str) -> None:
    """The chosen weights (last epoch, ``--export-best``, ``--export-ema``) as a Hub-ready folder, written whole
    before it replaces an older one; the card says which weights they are and what they were trained on.
    ``ema_model`` is the EMA's model (None without ``--model-ema``)."""
    from tps_timm.hub import save_hub_folder
    results = {k: v for k, v in state.last_eval.items() if not k.startswith('ema_')}
    if args.export_best and state.best_epoch >= 0:
        model.load_state_dict(checkpoint_model_state(os.path.join(checkpoint_dir, 'best')))
        weights = f'the best epoch by validation top-1 (epoch {state.best_epoch} of {args.epochs})'
        results = state.best_eval
    elif args.export_ema:
        model = ema_model
        weights = f'the EMA of the weights (decay {args.model_ema_decay}) after the last epoch ({state.epoch})'
        results = {k[4:]: v for k, v in state.last_eval.items() if k.startswith('ema_')}
    else:
        weights = f'the last epoch\'s ({state.epoch})'
        if ema_model is not None:
            weights += ('; the EMA model (--model-ema) was evaluated alongside but is not these weights '
                        '(--export-ema exports it)')
    # the time a uniform clip spans (a timeline's window): these training videos', not an earlier model's
    clip_cfg = dataclasses.replace(clip_cfg, train_video_seconds=median_video_seconds(train_videos))
    model.pretrained_cfg = dict(
        model.pretrained_cfg, **clip_cfg.pretrained_cfg_fields(), num_classes=model.num_classes,
        dataset=Path(args.hparams).stem if args.hparams else None,  # the recipe's
        tag=None, hf_hub_id=args.push_to_hub)  # not the base model's tag and repo: these weights are this run's
    recipe = {k: v for k, v in {**vars(args), **clip_cfg.to_flags()}.items()
              if k in ('epochs', 'lr', 'backbone_lr_mult', 'weight_decay', 'opt', 'sched', 'warmup_epochs',
                       'batch_size', 'smoothing', 'mixup', 'cutmix', 'aa', 'reprob', 'drop_path', 'num_frames',
                       'frame_interval', 'sampling', 'img_size', 'short_side', 'mixed_precision')}
    names = train_videos.class_names if len(train_videos.class_names) == model.num_classes else None
    training = dict(recipe=args.hparams, train_videos=train_videos.num_videos,
                    val_videos=val_videos.num_videos if val_videos is not None else 0,
                    synthetic=bool(args.demo_data), weights=weights)
    tmp = model_dir + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    save_hub_folder(model, tmp, names, repo_id=args.push_to_hub, folder=model_dir,
                    results=dict(results, num_clips=1, num_crops=1) if results else None, recipe=recipe,
                    training=training)
    replace_folder(tmp, model_dir)


if __name__ == '__main__':
    main()
