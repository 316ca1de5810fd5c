"""Classes that a flip turns into each other, resolved by class name (never by index, which differs between datasets
and between class orders of the same dataset).

A flip spec is ``'none'``, a built-in name (``'sthv2'`` for Something-Something v1/v2, ``'demo'``), ``'auto'`` (pairs
found in the class names by their direction words; none without class names) or the path of a YAML / JSON file of
name pairs (``[[name, mirrored name], ...]`` or ``{name: mirrored name}``).
"""
import os
import re
from typing import Any, Dict, List, Sequence, Tuple, Union

__all__ = ['BUILTIN_FLIP_PAIRS', 'FLIP_SPECS', 'resolve_flip_pairs', 'flip_label_map', 'mirrored_name']

BUILTIN_FLIP_PAIRS: Dict[str, List[Tuple[str, str]]] = {
    'sthv2': [  # the authors' swaps 86 <-> 87, 93 <-> 94, 166 <-> 167 of SSv2's labels.json, by name
        ('Pulling something from left to right', 'Pulling something from right to left'),
        ('Pushing something from left to right', 'Pushing something from right to left'),
        ('Turning the camera left while filming something', 'Turning the camera right while filming something'),
    ],
    'demo': [
        ('moving left to right', 'moving right to left'),
        ('rotating clockwise', 'rotating counter-clockwise'),
    ],
}
FLIP_SPECS = ('none', 'auto', *BUILTIN_FLIP_PAIRS)

_HORIZONTAL = {'left': 'right', 'right': 'left', 'clockwise': 'counterclockwise', 'counterclockwise': 'clockwise'}
_VERTICAL = {'up': 'down', 'down': 'up', 'upwards': 'downwards', 'downwards': 'upwards', 'upward': 'downward',
             'downward': 'upward', 'clockwise': 'counterclockwise', 'counterclockwise': 'clockwise'}


def _direction_words(name: str) -> Tuple[str, ...]:
    """Lower-case words of a class name (``_``, ``-`` and spaces separate them), with every spelling of
    counter-clockwise (counterclockwise, counter-clockwise, anticlockwise, anti-clockwise) as one word."""
    words = [w for w in re.split(r'[\s_\-]+', name.lower()) if w]
    out: List[str] = []
    for word in words:
        if word == 'clockwise' and out and out[-1] in ('counter', 'anti'):
            out[-1] = 'counterclockwise'
        elif word == 'anticlockwise':
            out.append('counterclockwise')
        else:
            out.append(word)
    return tuple(out)


def mirrored_name(name: str, vertical: bool = False) -> Tuple[str, ...]:
    """The direction words of ``name`` as a flip sees them (horizontal, or vertical with ``vertical``)."""
    swap = _VERTICAL if vertical else _HORIZONTAL
    return tuple(swap.get(word, word) for word in _direction_words(name))


def _auto_pairs(class_names: Sequence[str], vertical: bool) -> List[Tuple[str, str]]:
    by_words = {_direction_words(name): name for name in class_names}
    pairs = []
    for name in class_names:
        other = by_words.get(mirrored_name(name, vertical))
        if other is not None and other != name and (other, name) not in pairs:
            pairs.append((name, other))
    return pairs


def _as_pairs(data: Any, source: str) -> List[Tuple[str, str]]:
    items = list(data.items()) if isinstance(data, dict) else data
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
        raise ValueError(f'{source}: expected a list of [name, mirrored name] pairs or a mapping of names')
    return [(str(a), str(b)) for a, b in items]


def _read_pairs_file(path: str) -> List[Tuple[str, str]]:
    import yaml
    try:
        with open(path, encoding='utf-8') as f:
            return _as_pairs(yaml.safe_load(f), path)  # YAML, and JSON as its subset
    except yaml.YAMLError as e:
        raise ValueError(f'{path}: not valid YAML or JSON: {" ".join(str(e).split())}') from e


def resolve_flip_pairs(spec: Union[str, Sequence[Sequence[str]]], class_names: Sequence[str],
                       vertical: bool = False) -> List[Tuple[str, str]]:
    """The pairs of class names that a flip swaps, for ``spec`` (see the module docstring, or the pairs themselves,
    as train.py records them in args.yaml), checked against the dataset's class names: a pair naming a class the
    dataset lacks is an error, as is a name-based spec without class names."""
    if spec in (None, '', 'none') or (spec == 'auto' and not class_names):  # auto: what the names show, if any
        return []
    if not isinstance(spec, str):
        spec = _as_pairs(spec, '--flip-label-map')
        if not spec:
            return []
    if not class_names:
        raise ValueError(f'--flip-label-map {spec}: the classes are swapped by name, but the dataset has no class '
                         f'names (give them with --class-names)')
    if spec == 'auto':
        return _auto_pairs(class_names, vertical)
    if isinstance(spec, list):
        pairs, source = spec, 'the pairs given'
    elif spec in BUILTIN_FLIP_PAIRS:
        pairs, source = BUILTIN_FLIP_PAIRS[spec], f'the built-in {spec!r} pairs'
    elif os.path.isfile(spec):
        pairs, source = _read_pairs_file(spec), spec
    else:
        raise ValueError(f'--flip-label-map: {spec!r} is neither one of {FLIP_SPECS} nor a file of name pairs')
    known = set(class_names)
    missing = sorted({name for pair in pairs for name in pair} - known)
    if missing:
        raise ValueError(f'--flip-label-map: {source} name classes the dataset does not have: {missing}')
    return list(pairs)


def flip_label_map(pairs: Sequence[Tuple[str, str]], class_names: Sequence[str]) -> Dict[int, int]:
    """Label swaps (both ways) of name pairs, as indices of ``class_names``."""
    index = {name: i for i, name in enumerate(class_names)}
    swaps = {}
    for a, b in pairs:
        swaps[index[a]], swaps[index[b]] = index[b], index[a]
    return swaps
