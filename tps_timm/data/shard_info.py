"""Write the ``_info.json`` of existing WebDataset shards (made by other tools), so that training knows an epoch's
length without counting the shards at every start: ``python -m tps_timm.data.shard_info PATTERN --split NAME``."""
import os
import sys
import tarfile
import time
from typing import Optional, Sequence

from ..cli import ArgumentParser
from .annotations import read_class_names
from .shards import WDS_PREFIX, count_samples, expand_shards, is_local, write_info

__all__ = ['main']


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tps_timm.data.shard_info PATTERN --split NAME``: count the samples of existing shards (their tar
    headers) and write the ``_info.json`` beside them that gives the epoch length without a count at every start."""
    parser = ArgumentParser(prog='python -m tps_timm.data.shard_info', description=main.__doc__.split('\n\n')[0])
    parser.add_argument('pattern', help='local shards: a brace pattern, a folder of .tar files, or wds/PATTERN')
    parser.add_argument('--split', required=True, help='the split name the shards are recorded under')
    parser.add_argument('--class-names', default=None, help='class names file (one per line), recorded too')
    args = parser.parse_args(argv)
    pattern = args.pattern[len(WDS_PREFIX):] if args.pattern.startswith(WDS_PREFIX) else args.pattern
    try:
        urls = expand_shards(pattern)
        if not all(is_local(url) for url in urls):
            parser.error(f'{pattern}: _info.json is written beside local shards; copy it beside remote ones')
        folders = {os.path.dirname(os.path.abspath(url)) for url in urls}
        if len(folders) > 1:
            parser.error(f'{pattern}: the shards are in {len(folders)} folders; one _info.json describes one folder')
        names = read_class_names(args.class_names) if args.class_names else ()
        start = time.perf_counter()
        lengths = {os.path.basename(url): count_samples(url) for url in urls}
    except (OSError, ValueError, tarfile.TarError) as e:
        parser.error(f'{pattern}: {" ".join(str(e).split())}')
    path = write_info(folders.pop(), args.split, lengths, names)
    print(f'{path}: split {args.split!r}, {len(lengths)} shards, {sum(lengths.values())} samples (counted in '
          f'{time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
