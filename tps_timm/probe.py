"""Linear probe and k-NN on ``embed`` outputs: how well a model's pooled features separate the classes of a set.

    python -m tps_timm.probe --train-embeddings TRAIN.npy|.parquet --train-list train.txt
        --val-embeddings VAL.npy|.parquet --val-list val.txt [--data-root ROOT] [--class-names classes.txt]
        [--max-missing FRACTION] [--epochs N] [--lr LR] [--weight-decay WD] [--knn-k 20] [--seed 0]
        [--output head.safetensors] [--model MODEL_FOLDER --output-model OUT_FOLDER] [--results-file results.json]

The lists are list files (``relative/path label`` per line); a video's label goes to the embedding row of its path
as ``embed`` resolved it (``--data-root`` joined to the relative path: give the ``--data-root`` of the embed run);
a list video without a row is an error, unless ``--max-missing`` allows some (unreadable when embedded).
The linear probe is a multinomial logistic regression fitted by full-batch L-BFGS on the CPU, on features
standardised with the training mean and std; the k-NN classifier votes with the ``--knn-k`` most cosine-similar
training rows, each weighted by ``exp(similarity / 0.07)`` (the DINO protocol). Both report top-1 / top-5 on the
validation set. ``--output`` saves the head (``weight`` (C, F), ``bias`` (C,), the label names in the metadata) with
the standardisation folded in: it applies to the raw pooled features. ``--model FOLDER --output-model OUT`` puts the
head on that model folder's backbone and writes a model folder of the probe's classes, with FOLDER's clip settings:
``timm.create_model('local-dir:OUT', pretrained=True)`` then classifies videos (embeddings made with ``--normalize``
cannot be turned into a model head: embed without it).
"""
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['LabelledFeatures', 'LinearProbe', 'load_split', 'fit_linear_probe', 'head_logits', 'knn_scores',
           'topk_accuracy', 'is_normalized', 'save_head', 'read_head', 'load_model_folder', 'write_probe_model', 'main']

KNN_TEMPERATURE = 0.07  # DINO's
_SHOWN = 3  # names quoted in an error


@dataclass
class LabelledFeatures:
    """The embedding rows of a list's videos: ``features`` (N, F), ``labels`` (N,), ``paths`` (the resolved paths),
    and the list's videos that had no row (``missing``)."""
    features: np.ndarray
    labels: np.ndarray
    paths: List[str]
    missing: List[str]

    @property
    def width(self) -> int:
        return int(self.features.shape[1])


def _examples(names: Sequence[str]) -> str:
    return ', '.join(names[:_SHOWN]) + (', ...' if len(names) > _SHOWN else '')


def load_split(embeddings: str, list_file: str, data_root: str = '', num_classes: Optional[int] = None,
               max_missing: float = 0.0) -> LabelledFeatures:
    """The labelled embedding rows of the videos of ``list_file``.

    Args:
        embeddings: An ``embed`` output (.npy or .parquet).
        list_file: ``relative/path label`` per line.
        data_root: Folder the list's paths are relative to (the ``--data-root`` of the embed run).
        num_classes: The number of classes: a label outside 0..num_classes-1 is an error (None: any label >= 0).
        max_missing: The fraction of the list's videos that may have no row (e.g. unreadable when embedded); they
            are left out.

    Raises:
        ValueError: the one-line reason the rows and the list do not fit together.
    """
    from .data import read_list_file
    from .embed import read_embeddings
    if not os.path.isfile(embeddings):
        raise ValueError(f'{embeddings}: no such embeddings file')
    try:
        videos = read_list_file(list_file, data_root)
    except OSError as e:
        raise ValueError(f'{list_file}: {e.strerror or e}') from None
    if not videos.samples:
        raise ValueError(f'{list_file}: no videos in it')
    for (path, label), origin in zip(videos.samples, videos.origins):
        if label < 0 or (num_classes is not None and label >= num_classes):
            classes = f'the {num_classes} classes (labels 0..{num_classes - 1})' if num_classes else 'a class'
            raise ValueError(f'{origin}: label {label} of {os.path.basename(path)} is not one of {classes}')
    rows = read_embeddings(embeddings)
    if not rows:
        raise ValueError(f'{embeddings}: no embedding rows in it')
    found = [(rows.get(path), path, label) for path, label in videos.samples]
    if any(row is None for row, _, _ in found):  # the same file named another way (./videos/a.mp4, an absolute root)
        by_norm = {os.path.normpath(os.path.abspath(p)): row for p, row in rows.items()}
        found = [(by_norm.get(os.path.normpath(os.path.abspath(path))) if row is None else row, path, label)
                 for row, path, label in found]
    missing = [path for row, path, _ in found if row is None]
    if len(missing) == len(found):
        raise ValueError(f'none of the {len(found)} videos of {list_file} has a row in {embeddings}: the list names '
                         f'e.g. {found[0][1]}, the rows e.g. {next(iter(rows))}: give the --data-root of the embed run')
    if len(missing) > max_missing * len(found):
        raise ValueError(f'{len(missing)} of the {len(found)} videos of {list_file} have no row in {embeddings} '
                         f'({_examples(missing)}): embed them (or allow some with --max-missing)')
    kept = [(row, path, label) for row, path, label in found if row is not None]
    widths = sorted({int(np.asarray(row).size) for row, _, _ in kept})
    if len(widths) > 1:
        raise ValueError(f'{embeddings}: rows of different widths ({", ".join(map(str, widths))})')
    features = np.stack([np.asarray(row, dtype=np.float32).reshape(-1) for row, _, _ in kept])
    labels = np.asarray([label for _, _, label in kept], dtype=np.int64)
    return LabelledFeatures(features, labels, [path for _, path, _ in kept], missing)


@dataclass
class LinearProbe:
    """A fitted linear probe: logits ``weight @ ((x - mean) / std) + bias`` of raw features ``x``."""
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, features: np.ndarray) -> torch.Tensor:
        """The logits (N, C) of the raw ``features`` (N, F)."""
        x = torch.as_tensor(features, dtype=self.weight.dtype)
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(weight (C, F), bias (C,))`` of the same logits with the standardisation folded in: a head of the raw
        features, ``weight @ x + bias``."""
        weight = self.weight / self.std  # W (x - m) / s + b = (W / s) x + (b - (W / s) m)
        return weight, self.bias - weight @ self.mean


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 100, lr: float = 1.0,
                     weight_decay: float = 1e-3, seed: int = 0) -> LinearProbe:
    """Multinomial logistic regression on the ``features`` standardised with their mean and std, by full-batch
    L-BFGS on the CPU (float64 unless the rows are many); the same rows, settings and seed give the same probe.

    Args:
        features: (N, F) training rows.
        labels: (N,) classes in 0..num_classes-1.
        num_classes: C.
        epochs: L-BFGS iterations (each one pass over all rows, plus its line search's).
        lr: L-BFGS step size (1 with its strong-Wolfe line search).
        weight_decay: L2 penalty ``weight_decay / 2 * |W|^2`` (on the weights of the standardised features, not the
            bias) added to the mean cross-entropy.
        seed: Seeds the initial weights (the penalised problem is convex: it barely matters).
    """
    dtype = torch.float64 if features.size <= 1 << 24 else torch.float32  # float32 where float64 costs much memory
    x = torch.as_tensor(features, dtype=dtype)
    y = torch.as_tensor(labels, dtype=torch.long)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.ones_like(std))  # constant columns
    z = (x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (0.01 * torch.randn(num_classes, x.shape[1], generator=generator, dtype=dtype)).requires_grad_()
    bias = torch.zeros(num_classes, dtype=dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=lr, max_iter=epochs, history_size=20,
                                  line_search_fn='strong_wolfe', tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbe(weight.detach(), bias.detach(), mean, std)


def head_logits(weight: torch.Tensor, bias: torch.Tensor, features: np.ndarray) -> torch.Tensor:
    """The logits (N, C) of a head of raw features (:meth:`LinearProbe.folded`, :func:`read_head`) for ``features``
    (N, F)."""
    return torch.as_tensor(features, dtype=weight.dtype) @ weight.T + bias


def knn_scores(train_features: np.ndarray, train_labels: np.ndarray, features: np.ndarray, num_classes: int,
               k: int = 20, temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN votes (N, C) for ``features``: the ``k`` training rows of the highest cosine similarity s each
    give their class ``exp(s / temperature)`` (computed ``chunk`` rows at a time)."""
    train = torch.nn.functional.normalize(torch.as_tensor(train_features, dtype=torch.float32), dim=1)
    targets = torch.as_tensor(train_labels, dtype=torch.long)
    k = min(k, len(train))
    votes = []
    for start in range(0, len(features), chunk):
        query = torch.nn.functional.normalize(torch.as_tensor(features[start:start + chunk], dtype=torch.float32),
                                              dim=1)
        similarity, index = (query @ train.T).topk(k, dim=1)
        scores = torch.zeros(len(query), num_classes)
        votes.append(scores.scatter_add_(1, targets[index], (similarity / temperature).exp()))
    return torch.cat(votes) if votes else torch.zeros(0, num_classes)


def topk_accuracy(scores: torch.Tensor, labels: np.ndarray) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (%) of ``scores`` (N, C) for ``labels`` (N,)."""
    target = torch.as_tensor(labels, dtype=torch.long)[:, None]
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    return dict(top1=100 * (top[:, :1] == target).any(1).double().mean().item(),
                top5=100 * (top == target).any(1).double().mean().item())


def is_normalized(features: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether every row has an L2 norm of 1 (embeddings made with ``embed --normalize``)."""
    norms = np.linalg.norm(np.asarray(features, dtype=np.float64), axis=1)
    return bool(len(norms)) and bool(np.abs(norms - 1).max() <= tolerance)


def save_head(path: str, weight: torch.Tensor, bias: torch.Tensor, label_names: Optional[Sequence[str]] = None,
              normalized: bool = False) -> None:
    """Save a head as safetensors: ``weight`` (C, F), ``bias`` (C,) in float32; the metadata holds ``label_names``
    (a JSON list, empty without names), ``num_classes``, ``num_features`` and ``normalized`` (whether it applies to
    L2-normalised features)."""
    from safetensors.torch import save_file
    metadata = dict(label_names=json.dumps(list(label_names or [])), num_classes=str(weight.shape[0]),
                    num_features=str(weight.shape[1]), normalized=json.dumps(bool(normalized)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({'weight': weight.detach().float().contiguous(), 'bias': bias.detach().float().contiguous()}, path,
              metadata=metadata)


def read_head(path: str) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """``(weight, bias, label_names)`` of a head :func:`save_head` wrote."""
    from safetensors import safe_open
    with safe_open(path, framework='pt') as f:
        names = json.loads((f.metadata() or {}).get('label_names', '[]'))
        return f.get_tensor('weight'), f.get_tensor('bias'), names


def load_model_folder(folder: str) -> torch.nn.Module:
    """The model of a model folder (``local-dir:FOLDER`` also accepted), weights and clip settings included."""
    import timm

    import tps_timm  # noqa: F401  (registers the models)
    folder = folder[len('local-dir:'):] if folder.startswith('local-dir:') else folder
    if not os.path.isfile(os.path.join(folder, 'config.json')):
        raise ValueError(f'{folder}: not a model folder (no config.json)')
    return timm.create_model(f'local-dir:{folder}', pretrained=True).eval()


def _replaceable(folder: str) -> bool:
    """Whether ``folder`` may be replaced by a model folder: an empty folder or a model folder."""
    return os.path.isdir(folder) and (not os.listdir(folder) or os.path.isfile(os.path.join(folder, 'config.json')))


def write_probe_model(model: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor, out_dir: str,
                      label_names: Optional[Sequence[str]] = None, recipe: Optional[Dict[str, Any]] = None) -> Path:
    """Give ``model`` the head ``(weight, bias)`` (of its raw pooled features) as its classifier and save it as a
    model folder ``out_dir`` (written whole, then moved into place), keeping its clip settings.

    Its logits are then ``weight @ model.forward_head(model.forward_features(x), pre_logits=True) + bias``.
    ``recipe`` (the probe's settings) goes into the model card.
    """
    from .hub import save_hub_folder
    out = os.path.abspath(out_dir)
    if os.path.exists(out) and not _replaceable(out):
        raise ValueError(f'{out_dir} exists and is not a model folder: not replaced')
    if weight.shape[1] != model.num_features:
        raise ValueError(f'the head takes {weight.shape[1]} features, the model gives {model.num_features}')
    model.reset_classifier(weight.shape[0])
    classifier = model.get_classifier()
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    cfg = {k: v for k, v in model.pretrained_cfg.items() if k != 'label_names'}  # the backbone's classes
    model.pretrained_cfg = dict(cfg, num_classes=model.num_classes, tag=None, hf_hub_id=None, dataset=None)
    tmp = out + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    save_hub_folder(model, tmp, list(label_names) if label_names else None, folder=out, recipe=recipe)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return Path(out)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the probe and the k-NN; returns their results (what ``--results-file`` gets)."""
    from .cli import ArgumentParser, fraction, non_negative_int, positive_int
    from .data import read_class_names
    parser = ArgumentParser(prog='python -m tps_timm.probe', description=__doc__.split('\n\n')[0])
    parser.add_argument('--train-embeddings', required=True, help='embed output of the training videos')
    parser.add_argument('--train-list', required=True, help='list file of the training videos and their labels')
    parser.add_argument('--val-embeddings', required=True, help='embed output of the validation videos')
    parser.add_argument('--val-list', required=True, help='list file of the validation videos and their labels')
    parser.add_argument('--data-root', default='', help='folder the paths of the lists are relative to (the embed '
                                                        'run\'s --data-root)')
    parser.add_argument('--class-names', default=None, help='class names file (default: classes numbered by label)')
    parser.add_argument('--max-missing', type=fraction, default=0.0,
                        help='fraction of a list\'s videos that may have no embedding row (left out; default 0)')
    parser.add_argument('--epochs', type=positive_int, default=100, help='L-BFGS iterations of the linear probe')
    parser.add_argument('--lr', type=float, default=1.0, help='L-BFGS step size')
    parser.add_argument('--weight-decay', type=float, default=1e-3,
                        help='L2 penalty of the linear probe (on the standardised features)')
    parser.add_argument('--knn-k', type=positive_int, default=20, help='neighbours of the k-NN classifier')
    parser.add_argument('--seed', type=non_negative_int, default=0, help='seed of the probe\'s initial weights')
    parser.add_argument('--output', default=None, help='save the linear head (of the raw features) to this '
                                                       '.safetensors file')
    parser.add_argument('--model', default=None, help='the model folder the embeddings were made with (for '
                                                      '--output-model)')
    parser.add_argument('--output-model', default=None, help='write --model with the probe as its classifier to '
                                                             'this model folder')
    parser.add_argument('--results-file', default=None, help='write the accuracies to this JSON file')
    args = parser.parse_args(argv)
    if bool(args.model) != bool(args.output_model):
        parser.error('--model and --output-model go together')
    if args.weight_decay < 0:
        parser.error(f'--weight-decay must be 0 or more, got {args.weight_decay}')
    names: List[str] = []
    if args.class_names:
        try:
            names = read_class_names(args.class_names)
        except OSError as e:
            parser.error(f'--class-names {args.class_names}: {e.strerror or e}')
    try:
        train = load_split(args.train_embeddings, args.train_list, args.data_root, len(names) or None,
                           args.max_missing)
        val = load_split(args.val_embeddings, args.val_list, args.data_root, len(names) or None, args.max_missing)
    except ValueError as e:
        parser.error(str(e))
    if train.width != val.width:
        parser.error(f'--train-embeddings {args.train_embeddings} has rows of {train.width} features, '
                     f'--val-embeddings {args.val_embeddings} of {val.width}: embed both with the same model')
    num_classes = len(names) or 1 + int(max(train.labels.max(), val.labels.max()))
    normalized = is_normalized(train.features) or is_normalized(val.features)
    model = None
    if args.output_model:
        if os.path.exists(args.output_model) and not _replaceable(args.output_model):
            parser.error(f'--output-model {args.output_model} exists and is not a model folder: give a new folder')
        if os.path.realpath(args.output_model) == os.path.realpath(args.model.replace('local-dir:', '', 1)):
            parser.error('--output-model is the --model folder: give a new folder')
        if normalized:
            parser.error('--output-model: the embeddings are L2-normalised (embed --normalize), which the model\'s '
                         'classifier does not see: embed without --normalize to make a model of the probe')
        try:
            model = load_model_folder(args.model)
        except ValueError as e:
            parser.error(f'--model {e}')
        if model.num_features != train.width:
            parser.error(f'--model {args.model} gives {model.num_features} features, the embeddings have '
                         f'{train.width}: embed with that model')
    for split, what in ((train, 'training'), (val, 'validation')):
        if split.missing:
            print(f'{len(split.missing)} {what} videos without an embedding row left out ({_examples(split.missing)})')
    probe = fit_linear_probe(train.features, train.labels, num_classes, args.epochs, args.lr, args.weight_decay,
                             args.seed)
    linear = topk_accuracy(probe.logits(val.features), val.labels)
    knn = topk_accuracy(knn_scores(train.features, train.labels, val.features, num_classes, args.knn_k),
                        val.labels)
    results = dict(linear=linear, knn=dict(knn, k=min(args.knn_k, len(train.labels)), temperature=KNN_TEMPERATURE),
                   train_videos=len(train.labels), val_videos=len(val.labels), num_classes=num_classes,
                   num_features=train.width, normalized=normalized, epochs=args.epochs, lr=args.lr,
                   weight_decay=args.weight_decay, seed=args.seed)
    print(f'{len(train.labels)} training and {len(val.labels)} validation videos, {num_classes} classes, '
          f'{train.width} features')
    print(f"linear probe: top-1 {linear['top1']:.2f}  top-5 {linear['top5']:.2f}")
    print(f"k-NN (k={results['knn']['k']}): top-1 {knn['top1']:.2f}  top-5 {knn['top5']:.2f}")
    weight, bias = probe.folded()
    if args.output:
        save_head(args.output, weight, bias, names, normalized)
        print(f'wrote the head to {args.output}')
    if model is not None:
        recipe = dict(linear_probe_of=os.path.abspath(args.model), train_videos=len(train.labels),
                      epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                      val_top1=round(linear['top1'], 2), val_top5=round(linear['top5'], 2))
        out = write_probe_model(model, weight, bias, args.output_model, names, recipe)
        print(f"wrote {out}: timm.create_model('local-dir:{out}', pretrained=True) after `import tps_timm`")
    if args.results_file:
        os.makedirs(os.path.dirname(os.path.abspath(args.results_file)), exist_ok=True)
        with open(args.results_file, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
