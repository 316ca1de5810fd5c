"""Training pieces on top of timm: 5D mixup/cutmix, the authors' optimizer groups, run folders, checkpoint
bookkeeping, and counting the unreadable videos a training loader replaced."""
import csv
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from timm.data import Mixup

__all__ = ['VideoMixup', 'optimizer_param_groups', 'TrainState', 'save_checkpoint_atomic', 'copy_checkpoint_atomic',
           'list_checkpoints', 'prune_checkpoints', 'append_summary', 'replace_folder', 'holds_run', 'new_run_dir',
           'UnreadableCounter']


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

    def state_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


_EPOCH_DIR = re.compile(r'^epoch_(\d+)$')


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


def save_checkpoint_atomic(accelerator, checkpoint_dir: str, name: str) -> str:
    """``accelerator.save_state`` into a temporary folder, then rename: a killed run never leaves half a checkpoint."""
    final = os.path.join(checkpoint_dir, name)
    tmp = final + '.tmp'
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(tmp, final)
    accelerator.wait_for_everyone()
    return final


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

    def __init__(self, accelerator, epoch_videos: int, max_fraction: float, max_retries: int):
        self.accelerator = accelerator
        self.epoch_videos = epoch_videos  # the videos an epoch draws, all processes together
        self.max_fraction = max_fraction
        self.max_retries = max_retries
        self.count = 0
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
