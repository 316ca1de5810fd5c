"""Convert a checkpoint into a Hub-ready folder: ``model.safetensors`` + timm ``config.json``.

Accepts everything the model family's ``checkpoint_filter_fn`` reads: for TPS-Swin (:mod:`tps_timm.tps_swin`) our own
weights, timm or Microsoft 2D Swin (inflated to video), and the authors' mmaction / ModelScope TPS checkpoints; for
TPS-ViT (:mod:`tps_timm.tps_vit`) our own weights and timm's image ViTs (inflated). The folder loads with
``timm.create_model('local-dir:OUT_DIR', pretrained=True)`` and can be pushed to the Hub as it is.

    python -m tps_timm.convert pytorch_model.pt out/tps_swin_tiny.k400 --model tps_swin_tiny --labels labels.txt
"""
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from .clip import SAMPLINGS
from .data import read_class_names

__all__ = ['load_checkpoint_file', 'checkpoint_format', 'checkpoint_filter_for', 'load_model_weights',
           'read_label_names', 'convert']


def load_checkpoint_file(path: str, trust_pickle: bool = False) -> Dict[str, Any]:
    """Read a safetensors file, a timm folder or a torch pickle; pickles may hold only tensors unless trusted."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / 'model.safetensors', p / 'pytorch_model.bin']
        p = next((c for c in candidates if c.is_file()), None)
        if p is None:
            raise FileNotFoundError(f'{path}: folder has neither model.safetensors nor pytorch_model.bin')
    if not p.is_file():
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    kind = checkpoint_format(str(p))
    if kind == 'safetensors':
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(p))
        except SafetensorError as e:
            raise ValueError(f'{path}: a corrupt or truncated .safetensors file ({e})') from e
    if kind is None:
        raise ValueError(f'{path} is not a checkpoint of any known format (safetensors, or a PyTorch file saved by '
                         f'torch.save)')
    try:
        return torch.load(p, map_location='cpu', weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise ValueError(f'{path}: a damaged PyTorch file ({e})') from e
        raise ValueError(
            f'{path} holds pickled Python objects besides tensors, which could run code when loaded. '
            f'If you trust its source, pass --trust-pickle (trust_pickle=True). Detail: {" ".join(str(e).split())}'
        ) from e
    except (RuntimeError, EOFError) as e:  # e.g. a truncated zip archive
        raise ValueError(f'{path}: a damaged PyTorch file ({type(e).__name__}: {e})') from e


def checkpoint_format(path: str) -> Optional[str]:
    """'safetensors' or 'torch' (a zip archive or a pickle, as ``torch.save`` writes) by the file's first bytes;
    None for anything else. A file that only ends in .safetensors counts as one (to be reported as damaged)."""
    with open(path, 'rb') as f:
        head = f.read(9)
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':  # torch.save's zip archive, or a pickle (protocol >= 2)
        return 'torch'
    if head[8:9] == b'{' or path.endswith('.safetensors'):  # an 8-byte header length, then the JSON header
        return 'safetensors'
    return None


def checkpoint_filter_for(model: torch.nn.Module):
    """The ``checkpoint_filter_fn`` of the model's family, from the module that defines its class (TPS-Swin,
    TPS-ViT), as timm passes each model file's own filter to ``build_model_with_cfg``."""
    import importlib
    module = importlib.import_module(type(model).__module__)
    if not hasattr(module, 'checkpoint_filter_fn'):
        raise ValueError(f'{type(model).__name__} has no checkpoint conversions (checkpoint_filter_fn in '
                         f'{module.__name__})')
    return module.checkpoint_filter_fn


def load_model_weights(model: torch.nn.Module, path: str, trust_pickle: bool = False) -> None:
    """Load any checkpoint the model's filter reads into ``model``; every weight must fit."""
    state_dict = checkpoint_filter_for(model)(load_checkpoint_file(path, trust_pickle=trust_pickle), model)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f'{path} does not fit the model: missing {missing[:8]}, unexpected {unexpected[:8]}')


def read_label_names(path: str) -> List[str]:
    """Class names from a JSON list / {index: name} dict, or a text file with one name per line."""
    if path.endswith('.json'):
        data = json.loads(Path(path).read_text(encoding='utf-8'))
        if isinstance(data, dict):
            return [data[k] for k in sorted(data, key=int)] if all(k.isdigit() for k in data) else \
                [k for k, _ in sorted(data.items(), key=lambda kv: int(kv[1]))]
        return [str(x) for x in data]
    return read_class_names(path)


def convert(
        src: str,
        out_dir: str,
        model_name: str = 'tps_swin_tiny',
        num_classes: Optional[int] = None,
        label_names: Optional[Sequence[str]] = None,
        trust_pickle: bool = False,
        model_args: Optional[Dict[str, Any]] = None,
        pretrained_cfg: Optional[Dict[str, Any]] = None,
) -> Path:
    """Convert ``src`` to a Hub-ready folder ``out_dir`` for ``model_name`` and return its path.

    ``num_classes`` defaults to the checkpoint's classifier (or the label count); the classifier is dropped when its
    size differs from ``num_classes`` (e.g. inflating an ImageNet Swin into a 400-class video model).
    """
    import timm

    from .hub import save_hub_folder

    raw = load_checkpoint_file(src, trust_pickle=trust_pickle)
    model_args = dict(model_args or {})
    probe = timm.create_model(model_name, num_classes=0, **model_args)
    state_dict = checkpoint_filter_for(probe)(raw, probe)
    classifier = probe.pretrained_cfg.get('classifier', 'head.fc')  # 'head.fc' (TPS-Swin), 'head' (TPS-ViT)
    head = state_dict.get(f'{classifier}.weight')
    if num_classes is None:
        num_classes = head.shape[0] if head is not None else len(label_names) if label_names else 0
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(f'{len(label_names)} label names given for {num_classes} classes')  # before any work
    if head is not None and head.shape[0] != num_classes:
        print(f'dropping the checkpoint classifier ({head.shape[0]} classes) for a new one with {num_classes}',
              file=sys.stderr)
        state_dict.pop(f'{classifier}.weight'), state_dict.pop(f'{classifier}.bias', None)
    overlay = dict(pretrained_cfg or {})
    model = timm.create_model(model_name, num_classes=num_classes, pretrained_cfg_overlay=overlay, **model_args)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.startswith(f'{classifier}.')]
    if missing or unexpected:
        raise ValueError(f'{src} does not fit {model_name}: missing {missing[:8]}, unexpected {unexpected[:8]}')
    return save_hub_folder(model, out_dir, label_names, model_args, base_model=None)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from timm.utils import ParseKwargs

    from .cli import ArgumentParser
    parser = ArgumentParser(prog='python -m tps_timm.convert', description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint file (.pth/.pt/.bin/.safetensors) or timm folder')
    parser.add_argument('out_dir', help='folder to write model.safetensors and config.json to')
    parser.add_argument('--model', default='tps_swin_tiny', help='architecture, e.g. tps_swin_base')
    parser.add_argument('--num-classes', type=int, default=None, help='classifier size (default: from checkpoint)')
    parser.add_argument('--labels', default=None, help='class names: text file (one per line) or JSON list/dict')
    parser.add_argument('--max-temporal-tokens', type=int, default=None,
                        help='temporal extent of the bias tables (default 16: 32 frames; longer clips resample it)')
    parser.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                        help='architecture arguments, e.g. embed_dim=32 depths="(2,2,2,2)" patch_size="(1,4,4)"')
    parser.add_argument('--num-frames', type=int, default=None, help='input frames per clip to record in the config')
    parser.add_argument('--sampling', choices=SAMPLINGS, default=None, help='frame sampling to record')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow arbitrary pickled objects in SRC (only for files you trust)')
    args = parser.parse_args(argv)
    model_args = dict(args.model_kwargs)
    if args.max_temporal_tokens:
        model_args['max_temporal_tokens'] = args.max_temporal_tokens
    cfg = {k: v for k, v in dict(num_frames=args.num_frames, sampling=args.sampling).items() if v is not None}
    try:
        labels = read_label_names(args.labels) if args.labels else None
        out = convert(args.src, args.out_dir, args.model, args.num_classes, labels, args.trust_pickle, model_args, cfg)
    except (FileNotFoundError, ValueError, RuntimeError, TypeError) as e:  # TypeError: a bad --model-kwargs
        parser.exit(2, f'error: {e}\n')
    print(f"wrote {out}; load it with timm.create_model('local-dir:{out}', pretrained=True) after `import tps_timm`")


if __name__ == '__main__':
    main()
