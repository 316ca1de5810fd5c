"""Command-line helpers shared by the scripts (train.py, validate.py, predict, embed, export, throughput): YAML
hparams, flags, and the mapping of parsed flags to the library's parameters. This is the one module whose functions
take an argparse namespace; the library below it takes explicit parameters."""
import argparse
import contextlib
import difflib
import logging
import os
import sys
import tarfile
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple

import yaml

if TYPE_CHECKING:
    from .clip import ClipConfig

_logger = logging.getLogger(__name__)

__all__ = ['ArgumentParser', 'positive_int', 'non_negative_int', 'positive_float', 'non_negative_float', 'fraction',
           'command_line_dests',
           'build_train_parser', 'parse_with_hparams', 'add_data_args', 'add_clip_args',
           'add_test_view_args', 'add_model_args', 'model_brings_weights', 'create_model_from_args',
           'create_model_or_exit', 'compile_from_args', 'set_clip_size', 'clip_config_from_args',
           'create_model_and_clip', 'train_loader_from_args', 'add_demo_args',
           'resolve_demo_data', 'add_dataset_arg', 'add_hf_args', 'load_source', 'prefer_command_line_sources',
           'refuse_two_sources',
           'source_num_classes',
           'add_unreadable_arg', 'find_videos_or_exit', 'check_launch', 'make_accelerator',
           'use_model_folder']


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE (see PROG --help)``, not the whole usage block (train.py
    has some 80 flags), so that a bad flag or recipe key reads as one line."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _int_at_least(low: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None
        if value < low:
            raise argparse.ArgumentTypeError(f'must be {what}, got {value}')
        return value
    parse.__name__ = 'int'  # argparse names the type in its messages
    return parse


positive_int = _int_at_least(1, 'at least 1')
non_negative_int = _int_at_least(0, '0 or more')


def _float_above(low: float, inclusive: bool, what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
        if not (value >= low if inclusive else value > low) or value != value or value == float('inf'):
            raise argparse.ArgumentTypeError(f'must be {what}, got {text}')
        return value
    parse.__name__ = 'float'
    return parse


positive_float = _float_above(0.0, False, 'a number above 0')
non_negative_float = _float_above(0.0, True, '0 or more')


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number in 0..1, got {text!r}') from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be in 0..1, got {value}')
    return value


def command_line_dests(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> Set[str]:
    """The destinations of the flags given in ``argv`` itself (not filled from defaults or a recipe)."""
    unset = object()
    namespace = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_known_args(argv, namespace=namespace)  # argparse keeps the values already in a namespace
    return {dest for dest, value in vars(namespace).items() if value is not unset}


def parse_with_hparams(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
                       shared_with: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse ``argv`` with ``--hparams FILE`` (YAML of flag names) as defaults; command-line flags win.

    Keys that are flags of ``shared_with`` (a sibling script reading the same recipe) are ignored; others are errors.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--hparams', default=None)
    known, _ = pre.parse_known_args(argv)
    if known.hparams:
        try:
            with open(known.hparams, encoding='utf-8') as f:
                values = yaml.safe_load(f) or {}
        except OSError as e:
            parser.error(f'--hparams {known.hparams}: {e.strerror or e}')
        except yaml.YAMLError as e:
            parser.error(f'--hparams {known.hparams}: not valid YAML: {" ".join(str(e).split())}')
        if not isinstance(values, dict):
            parser.error(f'{known.hparams}: expected a mapping of flag names to values')
        dests = {a.dest for a in parser._actions}
        values = {str(k).replace('-', '_'): v for k, v in values.items()}
        if shared_with is not None:
            values = {k: v for k, v in values.items() if k in dests or k not in {a.dest for a in shared_with._actions}}
        unknown = sorted(k for k in values if k not in dests)
        if unknown:
            hints = [f'{k!r}' + (f' (did you mean {close[0]!r}?)' if (close := difflib.get_close_matches(
                k, dests - {argparse.SUPPRESS, 'help'}, n=1)) else '') for k in unknown]
            parser.error(f'{known.hparams}: unknown key{"s" if len(unknown) > 1 else ""} {", ".join(hints)}')
        values = {k: _checked_recipe_value(parser, known.hparams, k, v) for k, v in values.items()}
        parser.set_defaults(**values)
    else:
        values = {}
    args = parser.parse_args(argv)
    for key, value in values.items():  # mappings (e.g. model_kwargs): command-line entries add to the file's
        if isinstance(value, dict) and isinstance(getattr(args, key), dict) and getattr(args, key) is not value:
            setattr(args, key, {**value, **getattr(args, key)})
    return args


def _checked_recipe_value(parser: argparse.ArgumentParser, recipe: str, dest: str, value: Any) -> Any:
    """A recipe value through its flag's type and choices, as argparse checks a value given on the command line
    (argparse applies neither to defaults, which is how recipe values arrive)."""
    action = next((a for a in parser._actions if a.dest == dest), None)
    if action is None or value is None or isinstance(value, dict):
        return value
    try:
        if action.type is not None and not isinstance(value, bool):
            value = [action.type(str(v)) for v in value] if isinstance(value, list) else action.type(str(value))
    except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
        parser.error(f'{recipe}: {dest}: {e}')
    for v in value if isinstance(value, list) else [value]:
        if action.choices is not None and v not in action.choices:
            parser.error(f'{recipe}: {dest}: {v!r} is not one of {", ".join(map(str, action.choices))}')
    return value


def build_train_parser(description: Optional[str] = None, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of train.py (timm's names where timm has the flag); the recipes in hparams/ are YAML of them."""
    from .data import FLIP_SPECS
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_data_args(parser)
    g = parser.add_argument_group('data and augmentation')
    g.add_argument('--train-list', default=None, help='training split annotation file')
    g.add_argument('--val-list', default=None, help='validation split annotation file (evaluated during training)')
    add_dataset_arg(g, '--dataset', 'the training videos, in place of --train-list')
    add_dataset_arg(g, '--val-dataset', 'the validation videos, in place of --val-list')
    add_hf_args(g, (('--train-split', 'train'), ('--val-split', 'validation')))
    g.add_argument('--train-num-samples', type=positive_int, default=None, metavar='N',
                   help='samples in the --dataset shards (default: their _info.json, else a count of the shards)')
    g.add_argument('--val-num-samples', type=positive_int, default=None, metavar='N',
                   help='samples in the --val-dataset shards (default: their _info.json): a validation that reads '
                        'another number says so')
    g.add_argument('--wds-shuffle', type=non_negative_int, default=256, metavar='N',
                   help='samples in each loader worker\'s shuffle buffer (--dataset wds/...; encoded bytes: N x the '
                        'mean file size of memory per worker), on top of the per-epoch shard shuffle')
    add_demo_args(g)
    add_unreadable_arg(g)
    g.add_argument('--short-side', type=positive_int, default=None,
                   help='short side before the training crop, and of the validation view (default: the model '
                        'config, else 256/224 x size)')
    add_test_view_args(g, ' (recorded in the exported config)')
    g.add_argument('--scale', type=float, nargs=2, default=(0.08, 1.0), help='RandomResizedCrop area range')
    g.add_argument('--ratio', type=float, nargs=2, default=(3 / 4, 4 / 3), help='RandomResizedCrop aspect range')
    g.add_argument('--hflip', type=float, default=0.5, help='horizontal flip probability')
    g.add_argument('--flip-label-map', default='none', metavar='SPEC',
                   help=f"classes a flip swaps, by name: {', '.join(FLIP_SPECS)} (auto: found by direction words in "
                        f"the class names) or a YAML/JSON file of name pairs")
    g.add_argument('--aa', default=None, help="timm RandAugment string, e.g. 'rand-m7-n4-mstd0.5-inc1'")
    g.add_argument('--aa-on-batch', action=argparse.BooleanOptionalAction, default=False,
                   help='RandAugment on the batch on the accelerator instead of in the loader workers (the faster '
                        'choice with a GPU; see docs/benchmarks.md)')
    g.add_argument('--repeated-aug', type=positive_int, default=1, metavar='N',
                   help='N differently augmented clips per decoded video (the lever for a loader-bound GPU): an '
                        'epoch then decodes 1/N of the videos, with the same clips, steps and schedule')
    g.add_argument('--reprob', type=float, default=0., help='random erasing probability')
    g.add_argument('--remode', default='pixel', help='random erasing mode')
    g.add_argument('--mixup', type=float, default=0., help='mixup alpha (0: off)')
    g.add_argument('--cutmix', type=float, default=0., help='cutmix alpha (0: off)')
    g.add_argument('--mixup-prob', type=float, default=1.0)
    g.add_argument('--mixup-switch-prob', type=float, default=0.5)
    g.add_argument('--mixup-mode', default='batch', choices=('batch', 'pair', 'elem'))
    g.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')
    g = parser.add_argument_group('optimization')
    g.add_argument('--epochs', type=positive_int, default=30)
    g.add_argument('--opt', default='adamw')
    g.add_argument('--lr', type=float, default=1e-3)
    g.add_argument('--backbone-lr-mult', type=float, default=1.0, help='lr multiplier of everything but the head')
    g.add_argument('--weight-decay', type=float, default=0.02)
    g.add_argument('--layer-decay', type=float, default=None)
    g.add_argument('--opt-eps', type=float, default=None)
    g.add_argument('--opt-betas', type=float, nargs=2, default=None)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--sched', default='cosine')
    g.add_argument('--warmup-epochs', type=float, default=2.5)
    g.add_argument('--warmup-lr', type=float, default=1e-6)
    g.add_argument('--min-lr', type=float, default=0.)
    g.add_argument('--clip-grad', type=float, default=None)
    g.add_argument('--grad-accum-steps', type=positive_int, default=1)
    g.add_argument('--drop', type=float, default=None, help='head dropout')
    g.add_argument('--drop-path', type=float, default=None, help='stochastic depth')
    g.add_argument('--model-ema', action='store_true')
    g.add_argument('--model-ema-decay', type=float, default=0.9998)
    g.add_argument('--mixed-precision', default='no', choices=('no', 'bf16', 'fp16'))
    g.add_argument('--grad-checkpointing', action='store_true')
    g = parser.add_argument_group('run')
    g.add_argument('--output', default='output/train')
    g.add_argument('--experiment', default=None, help='sub-folder of --output (default: model name)')
    g.add_argument('--resume', default=None, help="checkpoint folder to continue from, or 'auto' (latest in output)")
    g.add_argument('--checkpoint-hist', type=positive_int, default=2, help='epoch checkpoints to keep (plus the best)')
    g.add_argument('--recovery-interval', type=non_negative_int, default=0, metavar='N',
                   help='a recovery checkpoint every N optimizer steps, mid-epoch (the last one is kept; 0: only when '
                        'SIGTERM, SIGUSR1 or SIGINT stops the run, which exits with code 75)')
    g.add_argument('--eval-interval', type=positive_int, default=1, help='evaluate every N epochs (and after the last)')
    g.add_argument('--log-interval', type=positive_int, default=20)
    g.add_argument('--export-best', action='store_true',
                   help='model/ gets the weights of the best validated epoch (default: the last epoch\'s)')
    g.add_argument('--export-ema', action='store_true',
                   help='model/ gets the EMA weights (with --model-ema; default: the trained, non-EMA weights)')
    g.add_argument('--push-to-hub', default=None, metavar='REPO_ID', help='upload the final model folder')
    g.add_argument('--no-progress', action='store_true')
    return parser


def add_model_args(parser: argparse.ArgumentParser, run_flags: bool = True) -> None:
    """Which model with which weights; with ``run_flags`` also ``--model``, ``--hparams``, the seed and compilation
    (a tool naming its model positionally, such as the exporter, leaves them out)."""
    from timm.utils import ParseKwargs
    group = parser.add_argument_group('model')
    if run_flags:
        group.add_argument('--hparams', default=None, help='YAML file whose keys are flag names (flags override it)')
        group.add_argument('--model', default='tps_swin_tiny',
                           help='timm model name, hf-hub:REPO / local-dir:FOLDER / a model folder (which load their '
                                'weights), or an exported .onnx / .pt2 file')
    group.add_argument('--pretrained', action='store_true', help='load the pretrained weights of a --model name')
    group.add_argument('--checkpoint', default=None, help='weights to load: our checkpoints, safetensors, folders, '
                                                         'timm / Microsoft Swin or the authors\' TPS checkpoints')
    group.add_argument('--trust-pickle', action='store_true', help='allow pickled objects in --checkpoint')
    group.add_argument('--num-classes', type=positive_int, default=None,
                       help='classifier size (default: data or model)')
    group.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                       help='extra model arguments, e.g. embed_dim=32 depths="(1,1,1,1)"')
    if not run_flags:
        return
    group.add_argument('--seed', type=int, default=0, help='random seed (model init, sampling, augmentation)')
    group.add_argument('--torchcompile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                       help='torch.compile the model (backend: inductor unless given)')
    group.add_argument('--torchcompile-scope', choices=('regional', 'model'), default='regional',
                       help='regional: each block compiled once per distinct block (default, fastest compile); '
                            'model: the whole model as one graph')
    group.add_argument('--compile-cache', default=None, metavar='DIR',
                       help="folder for inductor's compiled code, in place of TORCHINDUCTOR_CACHE_DIR: a later run "
                            'with the same folder starts warm (train.py default: compile_cache under --output)')


def add_demo_args(parser) -> None:
    """The built-in demo set: ``--demo-data`` (``auto``: the user cache) and its size, as the demo recipe sets them."""
    parser.add_argument('--demo-data', default=None,
                        help="generate the built-in demo set here ('auto': the user cache) and use its lists")
    parser.add_argument('--demo-train-videos', type=positive_int, default=960)
    parser.add_argument('--demo-val-videos', type=positive_int, default=160)


def resolve_demo_data(args: argparse.Namespace, progress: bool = True) -> None:
    """Fill the data flags from ``--demo-data`` (generating the demo set there if it is not there yet)."""
    from .data import make_demo_dataset
    if not args.demo_data:
        return
    root = args.demo_data
    if root == 'auto':
        root = os.path.join(os.environ.get('TPS_TIMM_CACHE', os.path.expanduser('~/.cache/tps_timm')), 'demo')
    paths = make_demo_dataset(root, args.demo_train_videos, args.demo_val_videos, progress=progress)
    args.data_root, args.val_list, args.class_names, args.dataset_format = \
        paths['root'], paths['val'], paths['classes'], 'list'
    if hasattr(args, 'train_list'):
        args.train_list = paths['train']


def add_dataset_arg(parser, flag: str = '--dataset', what: str = 'the videos, in place of a list') -> None:
    """A dataset source flag, as timm's ``--dataset`` names them: ``wds/PATTERN`` (WebDataset tar shards),
    ``hfds/NAME_OR_PATH`` and ``hfids/NAME_OR_PATH`` (a Hugging Face dataset, map-style or streaming)."""
    parser.add_argument(flag, default=None, metavar='SOURCE',
                        help=f'{what}: wds/PATTERN (WebDataset tar shards: a brace pattern wds/DIR/train-{{000000..'
                             f'000099}}.tar, a folder of .tar files, or URLs WebDataset opens), or hfds/NAME_OR_PATH /'
                             f' hfids/NAME_OR_PATH (a Hugging Face dataset on the Hub, saved with save_to_disk, or a '
                             f'local folder; hfids streams it)')


def add_hf_args(parser, splits: Sequence[Tuple[str, str]] = (('--split', 'validation'),)) -> None:
    """The columns and splits of a Hugging Face dataset source (timm's names)."""
    parser.add_argument('--input-key', default=None, metavar='COLUMN',
                        help='hfds/hfids: the video column (default: the first Video feature, else "video")')
    parser.add_argument('--target-key', default='label', metavar='COLUMN', help='hfds/hfids: the label column')
    for flag, default in splits:
        parser.add_argument(flag, default=default, metavar='SPLIT', help=f'hfds/hfids: the split (default: {default})')


def load_source(parser: argparse.ArgumentParser, flag: str, spec: str, num_samples: Optional[int] = None,
                class_names: Optional[str] = None, train: bool = False, split: str = 'validation',
                input_key: Optional[str] = None, target_key: str = 'label', streaming: bool = False):
    """The source of a ``--dataset``-like flag: WebDataset shards (:class:`tps_timm.data.ShardSource`) or a Hugging
    Face split (map-style, or streaming for ``hfids/`` and with ``streaming``), with bad specs, missing shards, bad
    ``_info.json`` files and unknown datasets, splits or columns as one-line errors. Training needs the epoch length
    of shards (else they are counted)."""
    from .data import HF_PREFIXES, WDS_PREFIX, open_hf_dataset, open_shards, read_class_names
    if not spec.startswith((WDS_PREFIX, *HF_PREFIXES)):
        parser.error(f'{flag} {spec}: expected {WDS_PREFIX}PATTERN (WebDataset shards) or {HF_PREFIXES[0]}NAME / '
                     f'{HF_PREFIXES[1]}NAME (a Hugging Face dataset); a list of files goes to the list flags')
    try:
        names = read_class_names(class_names) if class_names else ()
        if spec.startswith(WDS_PREFIX):
            return open_shards(spec, num_samples, names, scan=train, split=split)
        source = open_hf_dataset(spec, split, input_key, target_key, names, num_samples, streaming)
    except (OSError, ValueError, ImportError, tarfile.TarError) as e:
        parser.error(f'{flag} {spec}: {" ".join(str(e).split())}')
    if train and source.num_videos is None:
        parser.error(f'{flag} {spec}: the stream does not say how many samples it holds: give --train-num-samples')
    return source


def refuse_two_sources(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       pairs: Sequence[Tuple[str, str, str]]) -> None:
    """One line for a list and a dataset source of the same videos: of each ``(list, dataset, what the videos
    are)``, both set is an error (after the demo set filled its lists)."""
    for list_dest, dataset_dest, what in pairs:
        if getattr(args, list_dest) and getattr(args, dataset_dest):
            parser.error(f'--{list_dest.replace("_", "-")} and --{dataset_dest.replace("_", "-")}: give one source '
                         f'of {what}')


def prefer_command_line_sources(args: argparse.Namespace, given: Set[str],
                                pairs: Sequence[Tuple[str, str]]) -> None:
    """A source on the command line replaces the recipe's source of the same role: of each (list, dataset) pair of
    destinations, the one not given is dropped when the other is given."""
    for list_dest, dataset_dest in pairs:
        for kept, dropped in ((list_dest, dataset_dest), (dataset_dest, list_dest)):
            if kept in given and dropped not in given:
                setattr(args, dropped, None)


def source_num_classes(parser: argparse.ArgumentParser, flag: str, source, num_classes: Optional[int]) -> int:
    """The classes of a training source: its class names, else ``--num-classes`` (a shard source may have neither)."""
    if num_classes is None and not source.num_classes:
        parser.error(f'{flag} {source.spec}: no class names (in _info.json or --class-names): give --class-names or '
                     f'--num-classes')
    return num_classes or source.num_classes


def add_unreadable_arg(parser) -> None:
    parser.add_argument('--max-unreadable', type=fraction, default=0.05, metavar='FRACTION',
                        help='the largest share of unreadable videos that is reported and left out (evaluation) or '
                             'replaced (training); above it the run stops with an error (default: %(default)s)')


def find_videos_or_exit(parser: argparse.ArgumentParser, inputs: Sequence[str], data_root: str = '',
                        flag: str = '') -> List[str]:
    """``tps_timm.data.find_videos``, with no videos found or a list file that is not text as a one-line error."""
    from .data import find_videos
    try:
        paths = find_videos(inputs, data_root)
    except ValueError as e:
        parser.error(str(e))
    if not paths:
        parser.error(f'{flag}{" ".join(inputs)}: no videos found')
    return paths


def add_data_args(parser: argparse.ArgumentParser) -> None:
    from .data import DATASET_FORMATS, default_workers
    group = parser.add_argument_group('data')
    group.add_argument('--data-root', default='', help='folder the annotation paths are relative to')
    group.add_argument('--dataset-format', default='list', choices=DATASET_FORMATS,
                       help='annotation format of the split files')
    group.add_argument('--class-names', default=None,
                       help='class names: names file (list/kinetics), labels.json (sthv2), labels CSV (sthv1), '
                            'vocab JSON (diving48)')
    add_clip_args(group)
    group.add_argument('--batch-size', type=positive_int, default=8)
    group.add_argument('--workers', type=non_negative_int, default=default_workers(),
                       help='loader worker processes per process (default: the CPUs shared by the processes on this '
                            'machine, one left for each process: %(default)s here)')
    group.add_argument('--prefetch-factor', type=positive_int, default=2, help='batches each worker prepares ahead')


def add_clip_args(parser) -> None:
    """How a clip is read: frames, sampling, size, decoder (defaults: the model's pretrained config)."""
    from .clip import SAMPLINGS
    from .data import BACKENDS
    parser.add_argument('--num-frames', type=positive_int, default=None, help='frames per clip (default: model config)')
    parser.add_argument('--frame-interval', type=positive_int, default=None,
                        help='dense sampling stride (default: config)')
    parser.add_argument('--sampling', choices=SAMPLINGS, default=None, help='default: model config')
    parser.add_argument('--img-size', type=positive_int, default=None, help='crop size (default: model config)')
    parser.add_argument('--video-backend', choices=BACKENDS, default=None,
                        help=f"the decoder tried first (the others follow if it fails); default: the first of "
                             f"{', '.join(BACKENDS)} that can decode here")


def add_test_view_args(parser, note: str = '') -> None:
    """Test views per video (defaults: the model's pretrained config)."""
    parser.add_argument('--num-clips', type=positive_int, default=None,
                        help=f'test clips per video (default: model config){note}')
    parser.add_argument('--num-crops', type=int, choices=(1, 3), default=None,
                        help=f'test crops per clip (default: model config){note}')


def model_brings_config(model: str) -> bool:
    """Whether ``--model`` names a model with its own config: a folder, ``local-dir:``/``hf-hub:`` or an exported
    file."""
    from .onnx_model import EXPORTED_SUFFIXES
    model = str(model)
    return os.path.isdir(model) or model.endswith(EXPORTED_SUFFIXES) or model.startswith(('local-dir:', 'hf-hub:'))


def model_brings_weights(args: argparse.Namespace) -> bool:
    """Whether ``--model`` loads trained weights: ``--pretrained``, ``--checkpoint``, a folder, a Hub repo or an
    exported file. Such a model keeps its classifier; only a fresh model takes its class count from the data."""
    return bool(args.pretrained or args.checkpoint or model_brings_config(args.model))


# what a model folder's config.json defines, which a recipe's keys give way to (the command line still wins)
def _model_folder_dests() -> Tuple[str, ...]:
    from .clip import ClipConfig
    return 'model_kwargs', 'num_classes', *ClipConfig.FLAGS


def use_model_folder(args: argparse.Namespace, given: Set[str]) -> None:
    """Let a model folder define the architecture, classes and clip settings, for the tools that evaluate a model.

    A ``--checkpoint`` that is a model folder (``config.json`` inside: a train.py ``model/``, a converted folder) is
    the model, unless ``--model`` is on the command line. For a model with its own config (a folder, ``local-dir:``,
    ``hf-hub:``, an exported file), a recipe's model and clip keys are dropped: the config's settings apply, and only
    flags ``given`` on the command line override them.
    """
    if args.checkpoint and os.path.isfile(os.path.join(args.checkpoint, 'config.json')) and 'model' not in given:
        args.model, args.checkpoint = args.checkpoint, None
    if model_brings_config(args.model):
        for dest in _model_folder_dests():
            if dest not in given and hasattr(args, dest):
                setattr(args, dest, {} if dest == 'model_kwargs' else None)


def create_model_from_args(args: argparse.Namespace, num_classes: Optional[int] = None, weights: bool = True):
    """The model named by ``--model`` with ``--pretrained`` / ``--checkpoint`` weights and ``--model-kwargs``.

    ``num_classes`` (from the data) sizes the classifier unless ``--num-classes`` is given. A folder or Hub repo
    (``local-dir:``, ``hf-hub:``, a train.py ``model/`` folder) loads its own weights; an ``.onnx`` / ``.pt2`` file
    gives an exported model (``tps_timm.onnx_model``). Without ``weights`` the model is built on the meta device,
    with its config and no weights (for a tool that needs only its clip settings).
    """
    import timm
    import torch
    from accelerate.utils import set_seed

    from .convert import load_model_weights
    from .onnx_model import EXPORTED_SUFFIXES, load_exported_model
    from .pretrained import offline_if_unreachable
    set_seed(getattr(args, 'seed', 0))  # the same initial weights in every process and run
    kwargs: Dict[str, Any] = dict(args.model_kwargs or {})
    classes = args.num_classes if args.num_classes is not None else num_classes
    if classes is not None:
        kwargs['num_classes'] = classes
    if str(args.model).endswith(EXPORTED_SUFFIXES):  # an exported model: weights and config are in the file
        if args.checkpoint or args.model_kwargs or getattr(args, 'torchcompile', None):
            raise ValueError(f'{args.model} is an exported model: --checkpoint, --model-kwargs and --torchcompile '
                             f'do not apply to it')
        return load_exported_model(args.model)
    if os.path.isdir(args.model):  # a train.py model/ folder or a converted one
        args.model = f'local-dir:{args.model}'
    pretrained = args.pretrained and weights
    if weights and not args.pretrained and not args.checkpoint and args.model.startswith(('local-dir:', 'hf-hub:')):
        _logger.info(f'{args.model}: loading its weights')  # a model given by its folder or repo comes with them
        pretrained = True
    with offline_if_unreachable() if args.model.startswith('hf-hub:') else contextlib.nullcontext(), \
            contextlib.nullcontext() if weights else torch.device('meta'):
        model = timm.create_model(args.model, pretrained=pretrained, **kwargs)
    if args.checkpoint and weights:
        load_model_weights(model, args.checkpoint, trust_pickle=args.trust_pickle)
    return model


def create_model_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         num_classes: Optional[int] = None, weights: bool = True):
    """``create_model_from_args``, with what can go wrong in loading a model (a name, a file, missing weights,
    offline, a missing extra, bad ``--model-kwargs``) as a one-line command-line error."""
    from safetensors import SafetensorError
    try:
        return create_model_from_args(args, num_classes, weights)
    except SafetensorError as e:
        parser.error(f'--model {args.model}: a corrupt or truncated .safetensors file ({e})')
    except (OSError, RuntimeError, ValueError, TypeError, ImportError) as e:
        parser.error(f'--model {args.model}: {" ".join(str(e).split())}')


def _has_accelerator() -> bool:
    import torch
    accelerator = getattr(torch, 'accelerator', None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def check_launch(prog: str) -> None:
    """Stop at once, in one line naming the command to use, when ``accelerate launch --cpu --num_processes N``
    started this script: its launcher starts one process whatever N is."""
    env = os.environ
    world_size = ('WORLD_SIZE', 'PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_SIZE')  # torchrun, MPI launchers
    if env.get('ACCELERATE_USE_CPU', '').lower() in ('1', 'true', 'yes') and env.get('MASTER_ADDR') \
            and not any(k in env for k in world_size):  # set for --num_processes > 1 by the one-process launcher
        sys.exit(f'{prog}: error: `accelerate launch --cpu --num_processes N` starts only one process; on the CPU '
                 f'start N with: torchrun --nproc_per_node N {prog} ...')


def make_accelerator(prog: str, **kwargs):
    """An ``accelerate.Accelerator`` that also runs several CPU processes.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) on a machine without an accelerator, Accelerate would take every process
    for a main process of its own; it is told to use the CPU, which gives real DDP over gloo. ``accelerate launch
    --cpu --num_processes N`` is refused (:func:`check_launch`).
    """
    from accelerate import Accelerator
    check_launch(prog)
    if int(os.environ.get('WORLD_SIZE', 1)) > 1 and not _has_accelerator():
        kwargs['cpu'] = True
    return Accelerator(**kwargs)


def compile_from_args(args: argparse.Namespace, model):
    """``--torchcompile``: the model compiled as ``--torchcompile-scope`` says, with ``--compile-cache`` as inductor's
    cache folder."""
    from .compilation import compile_model, use_compile_cache
    if not args.torchcompile:
        return model
    if args.compile_cache and use_compile_cache(args.compile_cache):
        print(f'compiling with the cache in {os.environ["TORCHINDUCTOR_CACHE_DIR"]}')
    backend = 'inductor' if args.torchcompile is True else args.torchcompile  # `torchcompile: true` in a recipe
    return compile_model(model, args.torchcompile_scope, backend=backend)


def set_clip_size(model, clip: 'ClipConfig') -> None:
    """Keep the model's window layouts for the clips the data gives (``num_frames`` x ``img_size``)."""
    import inspect
    if 'num_frames' in inspect.signature(getattr(model, 'set_input_size', lambda: None)).parameters:
        model.set_input_size(img_size=clip.img_size, num_frames=clip.num_frames)


def clip_config_from_args(args: argparse.Namespace, model) -> 'ClipConfig':
    """The model's clip settings (its pretrained config, ``ClipConfig`` filling what it lacks) with the clip flags
    that ``args`` sets."""
    from .clip import ClipConfig
    return ClipConfig.from_pretrained_cfg(model.pretrained_cfg).replace_from_flags(vars(args))


def create_model_and_clip(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          num_classes: Optional[int] = None, weights: bool = True) -> Tuple[Any, 'ClipConfig']:
    """What every entry point starts from: the model of the flags (``create_model_or_exit``) and its clip settings
    (``clip_config_from_args``), the model set to keep the window layouts of those clips."""
    model = create_model_or_exit(parser, args, num_classes, weights)
    try:
        clip = clip_config_from_args(args, model)
    except ValueError as e:  # e.g. a config.json with settings no clip can have
        parser.error(f'--model {args.model}: clip settings: {e}')
    set_clip_size(model, clip)
    return model, clip


def train_loader_from_args(args: argparse.Namespace, clip: 'ClipConfig', videos, flip_pairs=(),
                           pin_memory: bool = False, rank: int = 0, world_size: int = 1,
                           num_classes: Optional[int] = None):
    """``tps_timm.data.build_train_loader`` with train.py's flags (``build_train_parser``)."""
    from .data import build_train_loader
    return build_train_loader(
        videos, clip, args.batch_size, scale=tuple(args.scale), ratio=tuple(args.ratio), hflip=args.hflip,
        flip_pairs=flip_pairs, aa=args.aa, aa_on_batch=args.aa_on_batch, repeated_aug=args.repeated_aug,
        seed=args.seed, workers=args.workers, prefetch_factor=args.prefetch_factor, pin_memory=pin_memory,
        backend=args.video_backend, shuffle_buffer=args.wds_shuffle, rank=rank, world_size=world_size,
        num_classes=num_classes)


def label_names_for(model, class_names: List[str]) -> List[str]:
    names = class_names or list(model.pretrained_cfg.get('label_names') or [])
    return names if len(names) == model.num_classes else [f'class {i}' for i in range(model.num_classes)]
