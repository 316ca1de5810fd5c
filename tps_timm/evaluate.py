"""Multi-view video inference, shared by validate.py, train.py, predict and embed: outputs averaged over clips x
crops, per video."""
import contextlib
import logging
import time
from typing import Collection, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch

from .clip import ClipConfig
from .data import ClipEvalTransform, ClipItems, ClipSampler, ShardedEvalClips, ShardSource, VideoDataset, VideoList, \
    is_sharded, normalize_clip

__all__ = ['eval_dataset', 'video_metrics', 'evaluate', 'video_outputs', 'warn_sample_count', 'model_device']

_logger = logging.getLogger(__name__)


def eval_dataset(videos: Union[VideoList, ShardSource], clip: ClipConfig, short_side: Optional[int] = None,
                 backend: Optional[str] = None, rank: int = 0, world_size: int = 1,
                 num_classes: Optional[int] = None, skip: Collection[str] = ()
                 ) -> Union[VideoDataset, ShardedEvalClips]:
    """The test views of ``clip`` (``num_clips`` clips x ``num_crops`` crops) of every video, after a short-side
    resize to ``short_side`` (default: the crop size, the authors' test protocol). Shards are read by each rank
    (``rank`` of ``world_size``) for its share, leaving the samples named in ``skip`` undecoded; a list's dataset is
    sharded by Accelerate."""
    sampler = ClipSampler.for_clip(clip, clip.num_clips)
    transform = ClipEvalTransform(clip.img_size, short_side, clip.num_crops)
    if is_sharded(videos):
        return ShardedEvalClips(videos, ClipItems(sampler, transform, backend=backend), rank, world_size, num_classes,
                                skip)
    return VideoDataset(videos, sampler, transform, backend=backend)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for an exported model, which has none)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def warn_sample_count(dataset, num_videos: int, flag: str = '--dataset') -> None:
    """Say when an evaluation of shards read another number of samples than their ``_info.json`` (or
    ``--val-num-samples``) gives."""
    source = getattr(dataset, 'source', None)
    expected = getattr(source, 'num_samples', None)
    if expected is not None and num_videos != expected:
        given_by = getattr(source, 'info', None) or 'the given count'
        _logger.warning(f'{flag} {source.spec}: {num_videos} samples read, but {given_by} gives {expected}')


def video_metrics(probs: torch.Tensor, labels: torch.Tensor, readable: torch.Tensor) -> Dict[str, float]:
    """Top-1 / top-5 / mean class accuracy (%) and cross-entropy over the readable videos, and the counts."""
    ok = readable.bool()
    probs, labels = probs[ok], labels[ok]
    result = dict(num_videos=int(readable.numel()), unreadable=int((~ok).sum()), evaluated=int(ok.sum()))
    if not len(labels):
        return dict(result, loss=float('nan'), top1=0.0, top5=0.0, mean_class_acc=0.0)
    top = probs.topk(min(5, probs.shape[1]), dim=1).indices
    hit1 = top[:, 0] == labels
    per_class = [hit1[labels == c].float().mean() for c in labels.unique()]
    nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean().item()  # of the view-averaged softmax
    return dict(result, loss=nll, top1=100 * hit1.float().mean().item(),
                top5=100 * (top == labels[:, None]).any(1).float().mean().item(),
                mean_class_acc=100 * torch.stack(per_class).mean().item())


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, accelerator, mean: Sequence[float], std: Sequence[float],
             desc: str = 'eval', progress: bool = True) -> Dict[str, float]:
    """Evaluate ``model`` on a loader of eval items (:func:`eval_dataset`), across all Accelerate processes.

    Each video's views go through the model together. A list's results are gathered batch by batch (Accelerate
    shards the list evenly and drops its padding: no video counted twice or dropped at the end of the set); shards
    give each rank its own number of videos, so their results are gathered once at the end, and the model runs
    unwrapped meanwhile (a DDP forward is a collective). ``unreadable_videos`` names the unreadable ones.
    """
    from accelerate.utils import gather_object
    from tqdm import tqdm
    sharded = isinstance(loader.dataset, ShardedEvalClips)
    if sharded:
        model = accelerator.unwrap_model(model)
    model.eval()
    probs_all, labels_all, readable_all, unreadable = [], [], [], []
    views_seen, num_views = 0, 0
    start = time.perf_counter()
    batches = iter(tqdm(loader, desc=desc, disable=not (progress and accelerator.is_main_process), leave=False))
    with contextlib.closing(batches):  # an error stops the workers here: they ignore SIGTERM (loader_kwargs)
        for batch in batches:
            video = batch['video'].to(accelerator.device)
            num_videos, num_views = video.shape[:2]
            with accelerator.autocast():
                logits = model(normalize_clip(video.flatten(0, 1), mean, std))
            probs = logits.float().softmax(-1).view(num_videos, num_views, -1).mean(1)
            labels, readable = batch['label'], batch['readable']
            if sharded:
                unreadable += [name for name, ok in zip(batch['name'], readable.tolist()) if not ok]
            else:
                probs, labels, readable, index = accelerator.gather_for_metrics(
                    (probs, labels, readable, batch['index']))
                unreadable += index[~readable.bool()].tolist()
            probs_all.append(probs.cpu())
            labels_all.append(labels.cpu())
            readable_all.append(readable.cpu())
            views_seen += len(labels) * num_views
    parts = [torch.cat(p) if p else torch.zeros(0) for p in (probs_all, labels_all, readable_all)]
    if sharded and accelerator.num_processes > 1:  # every rank's videos, once: the shards are dealt, not padded
        gathered = gather_object([(*parts, unreadable, views_seen, num_views)])
        parts = [torch.cat([g[i] for g in gathered if len(g[i])] or [parts[i]]) for i in range(3)]
        unreadable = [name for g in gathered for name in g[3]]
        views_seen, num_views = sum(g[4] for g in gathered), max(g[5] for g in gathered)
    elapsed = time.perf_counter() - start
    probs = parts[0].reshape(len(parts[1]), -1) if len(parts[1]) else torch.zeros(0, 1)  # nothing read: no videos
    metrics = video_metrics(probs, parts[1].long(), parts[2].bool())
    metrics['clips_per_s'] = views_seen / max(elapsed, 1e-9)
    metrics['views'] = num_views
    metrics['unreadable_videos'] = sorted(unreadable) if sharded else \
        [loader.dataset.videos.name(i) for i in sorted(unreadable)]  # in the list's order
    return metrics


@torch.no_grad()
def video_outputs(model: torch.nn.Module, videos: Union[Sequence[str], ShardSource], clip: ClipConfig,
                  batch_size: int = 1, workers: int = 0, backend: Optional[str] = None, features: bool = False,
                  progress: bool = True, desc: str = 'videos', rank: int = 0, world_size: int = 1,
                  skip: Collection[str] = ()) -> Iterator[Tuple[str, Optional[torch.Tensor], Optional[str], int]]:
    """``(name, output, error, index)`` per video, in order, read by a batched loader: the softmax (or, with
    ``features``, the pooled embedding) averaged over the clips x crops of ``clip``; ``output`` is None and ``error``
    says why for an unreadable video.

    ``videos`` are paths (``index``: the position; the caller splits them across processes), or shards, of which
    rank ``rank`` of ``world_size`` reads its share (``index`` orders the samples as the shards do; ``skip`` names
    samples not to decode, which come back with neither output nor error). ``model`` may also be an exported model
    (``tps_timm.onnx_model``).
    """
    from tqdm import tqdm

    from .data import VideoList, collate_eval_items
    sharded = is_sharded(videos)
    if not sharded and not videos:  # e.g. a process whose share is empty, or nothing left to embed
        return
    dataset = eval_dataset(videos if sharded else VideoList([(path, 0) for path in videos]), clip, backend=backend,
                           rank=rank, world_size=world_size, skip=skip)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False,
                                         collate_fn=collate_eval_items)
    model.eval()
    device = model_device(model)
    names = (lambda batch: batch['name']) if sharded else (lambda batch: [videos[i] for i in batch['index']])
    with tqdm(total=None if sharded else len(videos), desc=desc, disable=not progress, leave=False) as bar:
        for batch in loader:
            for name, index in batch['skipped']:
                yield name, None, None, index
            if 'video' not in batch:
                continue
            video = batch['video']
            num_videos, num_views = video.shape[:2]
            clips = normalize_clip(video.flatten(0, 1).to(device), clip.mean, clip.std)
            if features and hasattr(model, 'forward_head'):
                out = model.forward_head(model.forward_features(clips), pre_logits=True)
            else:
                out = model(clips)
                out = out if features else out.float().softmax(-1)
            out = out.float().view(num_videos, num_views, -1).mean(1).cpu()
            for i, (name, index) in enumerate(zip(names(batch), batch['index'].tolist())):
                readable = bool(batch['readable'][i])
                yield name, out[i] if readable else None, '' if readable else batch['error'][i], index
            bar.update(num_videos)
