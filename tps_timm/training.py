"""Training pieces on top of timm: 5D mixup/cutmix, the authors' optimizer groups, run folders, checkpoint
bookkeeping (epoch and mid-epoch recovery checkpoints, preemption stops), and counting the unreadable videos a
training loader replaced."""
import csv
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from timm.data import Mixup

from .data.shards import write_json_atomic

__all__ = ['VideoMixup', 'optimizer_param_groups', 'TrainState', 'save_checkpoint_atomic', 'copy_checkpoint_atomic',
           'list_checkpoints', 'prune_checkpoints', 'append_summary', 'replace_folder', 'holds_run', 'new_run_dir',
           'UnreadableCounter', 'StopSignals', 'Recovery', 'Preempted', 'EXIT_PREEMPTED', 'latest_checkpoint',
           'checkpoint_info', 'write_preempted', 'clear_preempted']

_logger = logging.getLogger(__name__)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL of sysexits.h, "try again": the exit code of a run stopped by a signal
CHECKPOINT_INFO = 'checkpoint.json'  # written last into a checkpoint: its position and the size of every file
PREEMPTED_FILE = 'preempted.json'  # left in the run folder by a stopped run (launchers do not pass exit codes on)


def _pair_half_apart(x: torch.Tensor) -> torch.Tensor:
    """Reverse the second half of the batch, so that timm's partner of item i (B-1-i) becomes item i + B/2.

    Its own inverse. In a ``--repeated-aug N`` batch a video's N clips are adjacent, so items half a batch apart
    are always different videos once there are two; timm's pairing mixes the middle video's clips with each other
    whenever the batch holds an odd number of videos."""
    half = len(x) // 2
    return torch.cat([x[:half], x[half:].flip(0)])


class VideoMixup(Mixup):
    """timm's Mixup / CutMix for clips ``(B, C, T, H, W)``: one box for all frames of a clip.

    timm's cutmix slices ``x[:, :, y0:y1, x0:x1]``, which on 5D clips cuts time and height. Folding frames into
    channels gives timm the 4D ``(B, C*T, H, W)`` it expects, so its box covers the same region of every frame.
    Clip i is mixed with clip i + B/2 (timm: B-1-i), so repeated-augmentation views of one video never mix with each
    other; the batch keeps its order.
    """

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.ndim != 5:
            raise ValueError(f'expected clips (B, C, T, H, W), got shape {tuple(x.shape)}')
        batch, channels, frames, height, width = x.shape
        folded = _pair_half_apart(x.reshape(batch, channels * frames, height, width))
        folded, target = super().__call__(folded, _pair_half_apart(target))
        return _pair_half_apart(folded).view(batch, channels, frames, height, width), _pair_half_apart(target)


def optimizer_param_groups(model: torch.nn.Module, weight_decay: float, backbone_lr_mult: float = 1.0,
                           layer_decay: Optional[float] = None) -> List[Dict[str, Any]]:
    """Parameter groups for ``timm.optim.create_optimizer_v2``, as the authors configure AdamW.

    No weight decay on norms, biases and bias tables (``model.no_weight_decay()``); everything but the classifier
    learns at ``backbone_lr_mult`` x lr (0.1 in the reference configs), via timm's ``lr_scale``; optional layer decay.
    """
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay
    no_decay = model.no_weight_decay() if hasattr(model, 'no_weight_decay') else set()
    if layer_decay is not None:
        groups = param_groups_layer_decay(model, weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)
    else:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_decay)
    head = {id(p) for p in model.get_classifier().parameters()} if hasattr(model, 'get_classifier') else set()
    out = []
    for group in groups:
        for is_head in (False, True):
            params = [p for p in group['params'] if (id(p) in head) == is_head]
            if params:
                scale = group.get('lr_scale', 1.0) * (1.0 if is_head else backbone_lr_mult)
                out.append(dict(group, params=params, lr_scale=scale))
    return out


@dataclass
class TrainState:
    """Loop position and results, saved with Accelerate's state."""
    epoch: int = -1  # last completed epoch
    step: int = 0  # optimizer updates so far
    best_top1: float = -1.0
    best_epoch: int = -1
    last_eval: Dict[str, float] = field(default_factory=dict)  # the last validation (EMA metrics as ema_*)
    best_eval: Dict[str, float] = field(default_factory=dict)  # the validation of the best epoch
    batch: int = 0  # in a recovery checkpoint: the batches of epoch ``epoch + 1`` trained
    unreadable: int = 0  # in a recovery checkpoint: the epoch's unreadable videos so far, all processes
    ranks: List[Dict[str, Any]] = field(default_factory=list)  # in a recovery checkpoint: each rank's loader state

    def state_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


_EPOCH_DIR = re.compile(r'^epoch_(\d+)$')
_RECOVERY_DIR = re.compile(r'^recovery_epoch_(\d+)_batch_(\d+)$')


def list_checkpoints(checkpoint_dir: str) -> List[str]:
    """``epoch_N`` folders under ``checkpoint_dir``, oldest first."""
    if not os.path.isdir(checkpoint_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(checkpoint_dir) if (m := _EPOCH_DIR.match(name))]
    return [os.path.join(checkpoint_dir, name) for _, name in sorted(found)]


def append_summary(path: str, row: Dict[str, Any]) -> None:
    """Add one epoch's row to ``summary.csv``, rewriting the header when the row brings new columns.

    timm's ``update_summary`` writes its header with the first row only, so validation columns that first appear at
    a later epoch (``--eval-interval``) would land under no header; epochs without them are left blank here.
    """
    rows: List[Dict[str, Any]] = []
    if os.path.exists(path):
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f) if r.get('epoch') != str(row['epoch'])]  # a resumed epoch: replaced
    rows.append(row)
    columns = list(dict.fromkeys(key for r in rows for key in r))
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval='')
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def replace_folder(tmp: str, final: str) -> None:
    """Move a completely written ``tmp`` folder to ``final``, replacing what was there."""
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def save_checkpoint_atomic(accelerator, checkpoint_dir: str, name: str, info: Optional[Dict[str, Any]] = None) -> str:
    """``accelerator.save_state`` into a temporary folder, then rename: a killed run never leaves half a checkpoint.

    ``checkpoint.json`` goes in last, with ``info`` and the size of every file, so that a checkpoint damaged after
    the fact (a copy cut short, a full disk) is recognised too (:func:`latest_checkpoint`)."""
    final = os.path.join(checkpoint_dir, name)
    tmp = final + '.tmp'
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    files = _file_sizes(tmp)
    if accelerator.num_processes > 1:  # each process sees its own files whole (a shared folder may lag elsewhere)
        from accelerate.utils import gather_object
        files = {}
        for seen in gather_object([_file_sizes(tmp)]):
            for name, size in seen.items():
                files[name] = max(size, files.get(name, 0))
    if accelerator.is_main_process:
        write_json_atomic(os.path.join(tmp, CHECKPOINT_INFO), dict(info or {}, files=files, time=time.time()))
        replace_folder(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _file_sizes(folder: str) -> Dict[str, int]:
    return {os.path.relpath(os.path.join(d, f), folder): os.path.getsize(os.path.join(d, f))
            for d, _, names in os.walk(folder) for f in names}


def checkpoint_position(folder: str) -> Optional[Tuple[int, int]]:
    """(epoch, batch) a checkpoint folder continues at, from its name (``.tmp`` aside): ``epoch_N`` at (N + 1, 0),
    ``recovery_epoch_E_batch_B`` at (E, B); None for other folders (``best``)."""
    name = os.path.basename(folder.rstrip(os.sep)).removesuffix('.tmp')
    if m := _EPOCH_DIR.match(name):
        return int(m.group(1)) + 1, 0
    if m := _RECOVERY_DIR.match(name):
        return int(m.group(1)), int(m.group(2))
    return None


def checkpoint_info(folder: str) -> Dict[str, Any]:
    """A checkpoint's ``checkpoint.json`` (empty for one without: written before it existed, or not finished)."""
    try:
        with open(os.path.join(folder, CHECKPOINT_INFO)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def checkpoint_problem(folder: str) -> Optional[str]:
    """Why a checkpoint folder cannot be resumed from, or None."""
    if folder.endswith('.tmp'):
        return 'it was being written when the run was stopped'
    info = checkpoint_info(folder)
    if not info:  # epoch folders of runs before checkpoint.json are taken as they are
        if _EPOCH_DIR.match(os.path.basename(folder)) and os.path.isfile(os.path.join(folder, 'model.safetensors')):
            return None
        return f'it has no readable {CHECKPOINT_INFO} (not finished)'
    for relative, size in info.get('files', {}).items():
        path = os.path.join(folder, relative)
        if not os.path.isfile(path):
            return f'{relative} is missing'
        if os.path.getsize(path) != size:
            return f'{relative} holds {os.path.getsize(path)} bytes, not {size}'
    return None


def latest_checkpoint(checkpoint_dir: str) -> Tuple[Optional[str], List[str]]:
    """The checkpoint ``--resume auto`` takes: the one furthest on of the epoch and recovery checkpoints that is
    whole, and a line for each one further on that is not (killed while being written, or damaged since)."""
    if not os.path.isdir(checkpoint_dir):
        return None, []
    found = [(position, not name.endswith('.tmp'), os.path.join(checkpoint_dir, name))
             for name in os.listdir(checkpoint_dir) if (position := checkpoint_position(name))]
    skipped = []
    for _, _, folder in sorted(found, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append(f'{folder} was skipped: {problem}')
    return None, skipped


def copy_checkpoint_atomic(src: str, dst: str) -> None:
    """Copy a checkpoint folder (e.g. to ``best``) through a temporary folder and a rename."""
    tmp = dst + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    replace_folder(tmp, dst)


def prune_checkpoints(checkpoint_dir: str, keep_last: int, keep: Optional[str] = None) -> None:
    """Delete all but the newest ``keep_last`` epoch folders, never ``keep`` (the best)."""
    folders = list_checkpoints(checkpoint_dir)
    for folder in folders[:max(len(folders) - keep_last, 0)]:
        if keep is None or os.path.abspath(folder) != os.path.abspath(keep):
            shutil.rmtree(folder)


_RUN_FILES = ('args.yaml', 'summary.csv', 'checkpoints', 'model', 'tensorboard')


def holds_run(folder: str) -> bool:
    """Whether ``folder`` holds (part of) a train.py run: its config, summary, checkpoints, model or logs."""
    return any(os.path.exists(os.path.join(folder, name)) for name in _RUN_FILES)


def new_run_dir(folder: str) -> str:
    """``folder`` for a new run, or, when it holds a run already, the first of ``folder-1``, ``folder-2``, ... that
    does not, as timm's ``get_outdir(..., inc=True)`` does: a new run never writes into another run's files."""
    candidate, number = folder, 0
    while holds_run(candidate):
        number += 1
        candidate = f'{folder.rstrip(os.sep)}-{number}'
    return candidate


class UnreadableCounter:
    """The unreadable videos a training loader replaced in one epoch, counted over all processes.

    The loader's items name the videos they replaced (``path: reason`` lines, see
    :class:`tps_timm.data.VideoDataset`). ``update`` raises :class:`tps_timm.data.TooManyUnreadable` on every process
    at the same step as soon as the epoch's share of unreadable draws is sure to pass ``max_fraction``, or an item
    found no readable video in ``max_retries + 1`` draws. One small all-reduce per step with several processes.
    """

    def __init__(self, accelerator, epoch_videos: int, max_fraction: float, max_retries: int, count: int = 0):
        self.accelerator = accelerator
        self.epoch_videos = epoch_videos  # the videos an epoch draws, all processes together
        self.max_fraction = max_fraction
        self.max_retries = max_retries
        self.count = count  # a resumed epoch's: those before the stop
        self.examples: List[str] = []  # this process's first few

    def update(self, unreadable: Sequence[str]) -> None:
        import torch

        from .data import TooManyUnreadable, check_unreadable
        lines = [line for item in unreadable for line in item.split('\n') if line]
        failed = sum(item.count('\n') + 1 > self.max_retries for item in unreadable if item)
        self.examples += [line for line in dict.fromkeys(lines) if line not in self.examples][:3 - len(self.examples)]
        counts: Tuple[int, int] = (len(lines), failed)
        if self.accelerator.num_processes > 1:
            counts = tuple(self.accelerator.reduce(torch.tensor(counts, device=self.accelerator.device),
                                                   reduction='sum').tolist())
        self.count += counts[0]
        if counts[1]:
            raise TooManyUnreadable(f'{self.max_retries + 1} training videos drawn in a row were unreadable: '
                                    f'{"; ".join(self.examples) or "(named by another process)"}')
        # sure to pass: even if every video still to come is readable, the epoch's share is too large
        check_unreadable(self.count, self.epoch_videos + self.count, self.max_fraction, 'training videos drawn',
                         self.examples)


def prepare_loader(accelerator, loader):
    """``accelerator.prepare(loader)``, but for a shard dataset, which deals its shards to the ranks itself: its
    batches only go to the device (and mark the end of the epoch for gradient accumulation), Accelerate's own
    wrapper with one process, rather than being split again or dispatched from the main process."""
    from accelerate.data_loader import prepare_data_loader

    from .data import ShardedEvalClips, ShardedTrainClips
    if not isinstance(loader.dataset, (ShardedTrainClips, ShardedEvalClips)):
        return accelerator.prepare(loader)
    return prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0, put_on_device=True,
                               dispatch_batches=False, non_blocking=accelerator.dataloader_config.non_blocking)


class Preempted(Exception):
    """A stop signal reached the run: every rank stopped after the same step, and ``checkpoint`` continues it."""

    def __init__(self, signal_name: str, checkpoint: str):
        super().__init__(f'{signal_name}: stopped; --resume auto continues from {checkpoint}')
        self.signal_name = signal_name
        self.checkpoint = checkpoint


class StopSignals:
    """SIGTERM, SIGUSR1 (a cluster's notice before it preempts or ends a job) and SIGINT (Ctrl-C) while training:
    noted when they arrive, acted on by the training loop after a step (:class:`Recovery`), where every rank agrees.
    A second signal changes nothing: a checkpoint being written is finished first. A context manager; the
    handlers before it come back at its end."""

    def __init__(self):
        self.received: List[int] = []  # the signals' numbers, as they came
        self._said = 0  # of them, those logged
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> 'StopSignals':
        from .data.loader import STOP_SIGNALS
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            self._previous = {sig: signal.signal(sig, self._note) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _note(self, signum: int, frame) -> None:
        self.received.append(signum)  # only noted: writing to a stream the interrupted code was writing could fail

    def agreed(self, accelerator) -> Optional[str]:
        """The name of the signal any rank has received, else None: a collective where there are several. The
        signals that came since the last call are logged here."""
        for signum in self.received[self._said:]:
            name = signal.Signals(signum).name
            _logger.warning(f'{name} received again: the run is already stopping, after its recovery checkpoint'
                            if self._said else f'{name} received: stopping after this step, with a recovery '
                            f'checkpoint')
            self._said += 1
        received = self.received[0] if self.received else 0
        if accelerator.num_processes > 1:
            received = int(accelerator.gather(torch.tensor([received], device=accelerator.device)).max())
        return signal.Signals(received).name if received else None


class Recovery:
    """A run's mid-epoch checkpoints: every ``interval`` optimizer steps (``--recovery-interval``, 0: never) and when
    a stop signal arrives, written as ``recovery_epoch_E_batch_B`` beside the epoch checkpoints, the newest kept;
    and, for a run resumed from one, where the loader of the resumed epoch continues.

    With a list the resumed epoch skips the trained batches (Accelerate's ``skip_first_batches``, by index: nothing
    decoded) and every random state continues from the saved one, so the run goes on as if never stopped. A shard
    loader's workers replay their streams to the position of the last item the training loop took from each
    (:meth:`tps_timm.data.ShardedTrainClips.resume_epoch`): every sample of the epoch once.

    Args:
        accelerator: The run's accelerator (its registered objects are what a checkpoint holds).
        checkpoint_dir: The run's checkpoint folder.
        state: The run's :class:`TrainState` (registered for checkpointing).
        interval: Optimizer steps between recovery checkpoints (0: only on a stop signal).
        workers: The training loader's workers (a shard loader's position is per worker).

    A context manager for the training: :class:`StopSignals` are noted while it lasts, and at its end the loaders'
    persistent workers are stopped (they ignore SIGTERM, by which an exiting interpreter would stop them).
    """

    def __init__(self, accelerator, checkpoint_dir: str, state: TrainState, interval: int, workers: int):
        self.accelerator = accelerator
        self.checkpoint_dir = checkpoint_dir
        self.state = state
        self.interval = interval
        self.workers = workers
        self.signals = StopSignals()
        self.epoch = 0
        self.epoch_batches = 0  # of the epoch in progress, on each process
        self._loaders: List[Any] = []  # the training loader, and a resumed epoch's own while it lasts
        self.positions: Dict[int, Tuple[int, int]] = {}  # shard loaders: (taken, yielded) of each worker
        self.loss_sum, self.batches = 0.0, 0  # this rank's losses of the epoch so far

    def __enter__(self) -> 'Recovery':
        self.signals.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        from .data.loader import shutdown_workers
        self.signals.__exit__(*exc)
        shutdown_workers(*self._loaders)
        self._loaders = []

    def resumes(self, epoch: int) -> bool:
        """Whether ``epoch`` continues a recovery checkpoint's (its random state is the saved one, not reseeded)."""
        return self.state.batch > 0 and epoch == self.state.epoch + 1

    def check_resume(self, loader) -> None:
        """A ValueError naming the difference when the resumed checkpoint's loader position cannot be continued
        with these processes and workers."""
        if not self.state.batch:
            return
        saved = self.state.ranks
        if len(saved) != self.accelerator.num_processes:
            raise ValueError(f'the recovery checkpoint was written by {len(saved)} processes, this run has '
                             f'{self.accelerator.num_processes}: launch as many, or resume from an epoch checkpoint')
        if saved[0].get('epoch_batches', len(loader)) != len(loader):
            raise ValueError(f'the recovery checkpoint\'s epoch had {saved[0]["epoch_batches"]} batches per process, '
                             f'this run\'s has {len(loader)} (another --batch-size or training set?): resume from an '
                             f'epoch checkpoint')
        if _is_shard_loader(loader) and saved[0].get('workers') != loader.num_workers:
            raise ValueError(f'the recovery checkpoint\'s shard loader had --workers {saved[0].get("workers")}, this '
                             f'run {loader.num_workers}: a worker\'s position in its shards needs the same count')

    def epoch_loader(self, loader, epoch: int) -> Tuple[Any, int]:
        """The loader of ``epoch`` and the batches of it already trained (0 unless it resumes a checkpoint's)."""
        from .data.loader import shutdown_workers
        self.epoch, self.positions, self.loss_sum, self.batches = epoch, {}, 0.0, 0
        self.epoch_batches = len(loader)
        shutdown_workers(*[other for other in self._loaders if other is not loader])  # a resumed epoch's
        self._loaders = [loader]
        if not self.resumes(epoch):
            return loader, 0
        done, mine = self.state.batch, self.state.ranks[self.accelerator.process_index]
        self.state.batch, self.state.ranks = 0, []
        self.loss_sum, self.batches = mine['loss_sum'], mine['batches']
        if _is_shard_loader(loader):
            self.positions = {int(w): tuple(p) for w, p in mine['positions'].items()}
            loader.dataset.resume_epoch(epoch, self.positions)
            return loader, done
        skipping = self.accelerator.skip_first_batches(loader, done)
        skipping.set_epoch(epoch)
        self._loaders.append(skipping)
        return skipping, done

    def after_batch(self, batch_index: int, loss: float, stream_position: Optional[torch.Tensor], last: bool) -> None:
        """After each batch: note the loader position; after an optimizer step, stop when a signal was agreed on
        (:class:`Preempted`), and write the interval's checkpoint when due (not at an epoch's end: an epoch
        checkpoint follows)."""
        self.loss_sum, self.batches = self.loss_sum + loss, self.batches + 1
        if stream_position is not None:  # (B, 3): worker, taken, yielded of each item; the last is the newest
            worker, taken, produced = stream_position[-1].tolist()
            self.positions[worker] = (taken, produced)
        if not self.accelerator.sync_gradients:
            return
        stopping = self.signals.agreed(self.accelerator)
        if stopping:
            raise Preempted(stopping, self.save(batch_index + 1))
        if self.interval and self.state.step % self.interval == 0 and not last:
            self.save(batch_index + 1)

    def after_epoch(self, checkpoint: str) -> None:
        """After an epoch's checkpoint: stop (:class:`Preempted`) when a signal came during the epoch's end."""
        stopping = self.signals.agreed(self.accelerator)
        if stopping:
            raise Preempted(stopping, checkpoint)

    def save(self, batches: int) -> str:
        """A recovery checkpoint after ``batches`` batches of the current epoch; older recovery checkpoints go."""
        from accelerate.utils import gather_object
        start = time.perf_counter()
        mine = dict(positions=self.positions, workers=self.workers, loss_sum=self.loss_sum, batches=self.batches,
                    epoch_batches=self.epoch_batches)
        self.state.batch, self.state.ranks = batches, gather_object([mine])
        try:
            name = f'recovery_epoch_{self.epoch}_batch_{batches}'
            folder = save_checkpoint_atomic(self.accelerator, self.checkpoint_dir, name, dict(
                epoch=self.epoch, batch=batches, step=self.state.step, processes=self.accelerator.num_processes))
        finally:
            self.state.batch, self.state.ranks = 0, []
        if self.accelerator.is_main_process:  # the older ones go, and any a killed run left half written
            for other in os.listdir(self.checkpoint_dir):
                if _RECOVERY_DIR.match(other.removesuffix('.tmp')) and other != name:
                    shutil.rmtree(os.path.join(self.checkpoint_dir, other), ignore_errors=True)
            _logger.info(f'recovery checkpoint {folder} ({time.perf_counter() - start:.1f} s)')
        return folder

    def epoch_loss(self) -> float:
        """The mean training loss of the epoch, all processes (resumed epochs: the stopped run's batches too)."""
        mean = torch.tensor(self.loss_sum / max(self.batches, 1), device=self.accelerator.device)
        return self.accelerator.reduce(mean, reduction='mean').item()


def _is_shard_loader(loader) -> bool:
    from .data import ShardedTrainClips
    return isinstance(loader.dataset, ShardedTrainClips)


def write_preempted(out_dir: str, stop: Preempted) -> str:
    """``preempted.json`` in the run folder: the signal and the checkpoint, for a requeue wrapper that cannot see
    the exit code (``accelerate launch`` and torchrun exit 1 whatever their processes' code)."""
    path = os.path.join(out_dir, PREEMPTED_FILE)
    write_json_atomic(path, dict(signal=stop.signal_name, checkpoint=stop.checkpoint, exit_code=EXIT_PREEMPTED,
                           time=time.time()))
    return path


def clear_preempted(out_dir: str) -> None:
    """A run that starts again is no longer a stopped one."""
    try:
        os.remove(os.path.join(out_dir, PREEMPTED_FILE))
    except FileNotFoundError:
        pass
