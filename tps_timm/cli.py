"""Command-line helpers shared by train.py, validate.py and predict: YAML hparams, model and data set-up."""
import argparse
from typing import Any, Dict, List, Optional, Sequence

import yaml

__all__ = ['parse_with_hparams', 'add_data_args', 'add_clip_args', 'add_test_view_args', 'add_model_args',
           'create_model_from_args', 'resolve_video_cfg']


def parse_with_hparams(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
                       shared_with: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse ``argv`` with ``--hparams FILE`` (YAML of flag names) as defaults; command-line flags win.

    Keys that are flags of ``shared_with`` (a sibling script reading the same recipe) are ignored; others are errors.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--hparams', default=None)
    known, _ = pre.parse_known_args(argv)
    if known.hparams:
        with open(known.hparams, encoding='utf-8') as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            parser.error(f'{known.hparams}: expected a mapping of flag names to values')
        dests = {a.dest for a in parser._actions}
        values = {k.replace('-', '_'): v for k, v in values.items()}
        if shared_with is not None:
            values = {k: v for k, v in values.items() if k in dests or k not in {a.dest for a in shared_with._actions}}
        unknown = sorted(k for k in values if k not in dests)
        if unknown:
            parser.error(f'{known.hparams}: unknown keys {unknown}')
        parser.set_defaults(**values)
    else:
        values = {}
    args = parser.parse_args(argv)
    for key, value in values.items():  # mappings (e.g. model_kwargs): command-line entries add to the file's
        if isinstance(value, dict) and isinstance(getattr(args, key), dict) and getattr(args, key) is not value:
            setattr(args, key, {**value, **getattr(args, key)})
    return args


def add_model_args(parser: argparse.ArgumentParser) -> None:
    from timm.utils import ParseKwargs
    group = parser.add_argument_group('model')
    group.add_argument('--hparams', default=None, help='YAML file whose keys are flag names (flags override it)')
    group.add_argument('--model', default='tps_swin_tiny', help='timm model name, hf-hub:... or local-dir:...')
    group.add_argument('--pretrained', action='store_true', help='load the pretrained weights of --model')
    group.add_argument('--checkpoint', default=None, help='weights to load: our checkpoints, safetensors, folders, '
                                                         'timm / Microsoft Swin or the authors\' TPS checkpoints')
    group.add_argument('--trust-pickle', action='store_true', help='allow pickled objects in --checkpoint')
    group.add_argument('--num-classes', type=int, default=None, help='classifier size (default: data or model)')
    group.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                       help='extra model arguments, e.g. embed_dim=32 depths="(1,1,1,1)"')
    group.add_argument('--seed', type=int, default=0, help='random seed (model init, sampling, augmentation)')
    group.add_argument('--torchcompile', action='store_true', help='torch.compile the model')


def add_data_args(parser: argparse.ArgumentParser) -> None:
    from .data import DATASET_FORMATS
    group = parser.add_argument_group('data')
    group.add_argument('--data-root', default='', help='folder the annotation paths are relative to')
    group.add_argument('--dataset-format', default='list', choices=DATASET_FORMATS,
                       help='annotation format of the split files')
    group.add_argument('--class-names', default=None,
                       help='class names: names file (list/kinetics), labels.json (sthv2), labels CSV (sthv1), '
                            'vocab JSON (diving48)')
    add_clip_args(group)
    group.add_argument('--batch-size', type=int, default=8)
    group.add_argument('--workers', type=int, default=2)


def add_clip_args(parser) -> None:
    """How a clip is read: frames, sampling, size, decoder (defaults: the model's pretrained config)."""
    from .data import BACKENDS
    parser.add_argument('--num-frames', type=int, default=None, help='frames per clip (default: model config)')
    parser.add_argument('--frame-interval', type=int, default=None, help='dense sampling stride (default: config)')
    parser.add_argument('--sampling', choices=('dense', 'uniform'), default=None, help='default: model config')
    parser.add_argument('--img-size', type=int, default=None, help='crop size (default: model config)')
    parser.add_argument('--video-backend', choices=BACKENDS, default=None, help='default: decord if installed')


def add_test_view_args(parser) -> None:
    """Test views per video (defaults: the model's pretrained config)."""
    parser.add_argument('--num-clips', type=int, default=None, help='clips per video (default: model config)')
    parser.add_argument('--num-crops', type=int, choices=(1, 3), default=None, help='crops per clip (default: config)')


def create_model_from_args(args: argparse.Namespace, num_classes: Optional[int] = None):
    """The model named by ``--model`` with ``--pretrained`` / ``--checkpoint`` weights and ``--model-kwargs``."""
    import timm
    from accelerate.utils import set_seed

    from .convert import load_model_weights
    set_seed(args.seed)  # the same initial weights in every process and run
    kwargs: Dict[str, Any] = dict(args.model_kwargs or {})
    classes = args.num_classes if args.num_classes is not None else num_classes
    if classes is not None:
        kwargs['num_classes'] = classes
    model = timm.create_model(args.model, pretrained=args.pretrained, **kwargs)
    if args.checkpoint:
        load_model_weights(model, args.checkpoint, trust_pickle=args.trust_pickle)
    return model


def resolve_video_cfg(args: argparse.Namespace, model) -> Dict[str, Any]:
    """Clip settings: flags where given, else the model's pretrained config."""
    cfg = model.pretrained_cfg
    return dict(
        num_frames=args.num_frames or cfg.get('num_frames', 32),
        frame_interval=args.frame_interval or cfg.get('frame_interval', 2),
        sampling=args.sampling or cfg.get('sampling', 'dense'),
        img_size=args.img_size or cfg.get('input_size', (3, 224, 224))[-1],
        mean=tuple(cfg.get('mean', (0.485, 0.456, 0.406))),
        std=tuple(cfg.get('std', (0.229, 0.224, 0.225))),
        num_clips=getattr(args, 'num_clips', None) or cfg.get('test_num_clips', 1),
        num_crops=getattr(args, 'num_crops', None) or cfg.get('test_num_crops', 1),
    )


def label_names_for(model, class_names: List[str]) -> List[str]:
    names = class_names or list(model.pretrained_cfg.get('label_names') or [])
    return names if len(names) == model.num_classes else [f'class {i}' for i in range(model.num_classes)]
