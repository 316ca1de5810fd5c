"""Hub-ready folders (``model.safetensors`` + timm ``config.json`` + model card) and pushing them to the Hub.

    python -m tps_timm.hub push output/run/model your-name/tps_swin_tiny.k400
"""
import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

__all__ = ['save_hub_folder', 'model_card', 'HubPushError', 'check_push_access', 'push_folder']

CITATION = """@inproceedings{xiang2022tps,
  title={Spatiotemporal Self-attention Modeling with Temporal Patch Shift for Action Recognition},
  author={Xiang, Wangmeng and Li, Chao and Wang, Biao and Wei, Xihan and Hua, Xian-Sheng and Zhang, Lei},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2022}
}"""


def _count(n: int, noun: str) -> str:
    return f'{n} {noun}' if n == 1 else f'{n} {noun}es' if noun.endswith('s') else f'{n} {noun}s'


def model_card(config: Dict[str, Any], repo_id: Optional[str] = None, results: Optional[Dict[str, Any]] = None,
               recipe: Optional[Dict[str, Any]] = None, dataset: Optional[str] = None,
               base_model: Optional[str] = None, folder: Optional[str] = None,
               training: Optional[Dict[str, Any]] = None) -> str:
    """A video-classification model card (Hub metadata, what it was trained on and which weights these are, results,
    usage that imports tps_timm, recipe, citation).

    The usage loads ``hf-hub:REPO_ID`` when the repo is known, else ``local-dir:FOLDER``. ``training`` (from train.py)
    holds ``recipe``, ``train_videos``, ``val_videos``, ``synthetic`` and ``weights`` (which weights the folder has).
    """
    from .clip import ClipConfig
    cfg = config.get('pretrained_cfg', {})
    clip = ClipConfig.from_pretrained_cfg(cfg)
    arch = config['architecture']
    name = repo_id or arch
    dataset = 'the synthetic demo set' if (training or {}).get('synthetic') else dataset or cfg.get('dataset')
    meta = ['---', 'library_name: timm', 'pipeline_tag: video-classification',
            f"license: {cfg.get('license') or 'apache-2.0'}",
            'tags:', '- video-classification', '- timm', '- tps-timm', '- action-recognition']
    if dataset and not (training or {}).get('synthetic'):
        meta += ['datasets:', f'- {dataset}']
    if base_model:
        meta += [f'base_model: {base_model}']
    meta.append('---')
    frames, size = clip.num_frames, clip.img_size
    family = 'TPS-ViT' if arch.startswith('tps_vit') else 'TPS-Swin'
    lines = meta + [
        f'# {name}', '',
        f'{family} (`{arch}`) video action-recognition model with Temporal Patch Shift (Xiang et al., ECCV 2022), '
        f'{_count(config["num_classes"], "class")}' + (f', trained on {dataset}.' if dataset else '.'), '',
        f'Input: {frames} frames ({clip.sampling} sampling, frame interval {clip.frame_interval}) at '
        f'{size}x{size}, RGB normalised with mean {clip.mean} and std {clip.std}.', '',
    ]
    if training:
        data = 'the built-in synthetic demo set (generated videos, not real footage)' if training.get('synthetic') \
            else f"the data of the recipe `{training['recipe']}`" if training.get('recipe') \
            else 'the data given on the command line'
        sizes = f"{_count(training['train_videos'], 'training video')}, " \
                f"{_count(training['val_videos'], 'validation video')}"
        lines += ['## Training', '', f"Trained with tps-timm's `train.py` on {data}: {sizes}.", '',
                  f"Weights: {training['weights']}.", '']
    names = config.get('label_names')
    if names:
        shown = ', '.join(f'`{n}`' for n in list(names)[:20]) + (f' and {len(names) - 20} more' if len(names) > 20
                                                                 else '')
        lines += [f'Classes: {shown}.', '']
    if results:
        views = f"{_count(results.get('num_crops', 1), 'crop')} x {_count(results.get('num_clips', 1), 'clip')}"
        lines += ['## Results', '', '| top-1 | top-5 | views | frames | videos |', '|---|---|---|---|---|',
                  f"| {results.get('top1', float('nan')):.2f} | {results.get('top5', float('nan')):.2f} | {views} | "
                  f"{frames} | {results.get('num_videos', '')} |", '']
    source = f'hf-hub:{repo_id}' if repo_id else f'local-dir:{os.path.abspath(folder)}' if folder else \
        f'hf-hub:{name}'
    lines += ['## Usage', '', '```python', 'import timm', 'import torch',
              'import tps_timm  # registers the TPS models',
              '', f"model = timm.create_model('{source}', pretrained=True).eval()",
              f'clip = torch.randn(1, 3, {frames}, {size}, {size})  # (B, C, T, H, W), normalised RGB',
              'probs = model(clip).softmax(-1)', '```', '',
              f'Or from the command line: `python -m tps_timm.predict video.mp4 --model {source}`.', '']
    if recipe:
        lines += ['## Training recipe', '', '```yaml']
        lines += [f'{k}: {json.dumps(v)}' for k, v in sorted(recipe.items())]
        lines += ['```', '']
    lines += ['## Citation', '', '```bibtex', CITATION, '```', '']
    return '\n'.join(lines)


def save_hub_folder(
        model: torch.nn.Module,
        out_dir: str,
        label_names: Optional[Sequence[str]] = None,
        model_args: Optional[Dict[str, Any]] = None,
        card: bool = True,
        **card_kwargs,
) -> Path:
    """Write ``model.safetensors``, timm ``config.json`` (label names, model args, video config) and ``README.md``."""
    from timm.models import save_for_hf
    out = Path(out_dir)
    if label_names is not None and len(label_names) != model.num_classes:
        raise ValueError(f'{len(label_names)} label names given for {model.num_classes} classes')
    config = {'label_names': list(label_names)} if label_names else {}
    save_for_hf(model, out, model_config=config, model_args=model_args or None, safe_serialization=True)
    if card:
        hf_config = json.loads((out / 'config.json').read_text())
        card_kwargs.setdefault('folder', str(out))
        (out / 'README.md').write_text(model_card(hf_config, **card_kwargs))
    return out


class HubPushError(RuntimeError):
    """An upload that cannot happen or failed; the message says why and how to push the folder later."""


def _push_errors() -> tuple:
    """What a failed Hub call raises: HTTP errors, and the transport errors of the HTTP library huggingface_hub uses
    (httpx2, httpx or requests, by version)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError
    errors = [OSError, HfHubHTTPError]
    for module_name, error_name in (('httpx2', 'HTTPError'), ('httpx', 'HTTPError'), ('requests', 'RequestException')):
        try:
            errors.append(getattr(importlib.import_module(module_name), error_name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def check_push_access(repo_id: str, token: Optional[str] = None) -> str:
    """Fail before any work when ``repo_id`` cannot be pushed to (offline mode, no token, a token the Hub refuses, no
    network); returns the Hub user name."""
    from huggingface_hub import HfApi, constants, get_token
    later = f'or push later with: python -m tps_timm.hub push FOLDER {repo_id}'
    if constants.HF_HUB_OFFLINE:
        raise HubPushError(f'cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it, {later}')
    if not (token or get_token()):
        raise HubPushError(f'cannot push to {repo_id}: no Hugging Face token; log in with `hf auth login` or set '
                           f'HF_TOKEN, {later}')
    try:
        user = HfApi(token=token).whoami()
    except _push_errors() as e:
        raise HubPushError(f'cannot push to {repo_id}: the Hub refused the token or cannot be reached '
                           f'({type(e).__name__}: {e}); {later}') from e
    if user.get('auth', {}).get('accessToken', {}).get('role') == 'read':
        raise HubPushError(f'cannot push to {repo_id}: the Hugging Face token is read-only; use one with write '
                           f'access, {later}')
    return user['name']


def push_folder(folder: str, repo_id: str, token: Optional[str] = None, private: bool = False,
                commit_message: str = 'Add TPS model') -> str:
    """Upload a Hub-ready folder to ``repo_id`` (created if needed); returns the commit URL. The folder is never
    changed: a failed upload raises :class:`HubPushError` saying how to retry."""
    from huggingface_hub import HfApi
    path = Path(folder)
    missing = [f for f in ('model.safetensors', 'config.json') if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f'{folder} is not a Hub-ready folder: missing {missing}')
    check_push_access(repo_id, token)
    api = HfApi(token=token)
    with _with_hub_usage(path, repo_id) as upload:
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(upload), repo_id=repo_id, commit_message=commit_message)
        except _push_errors() as e:
            raise HubPushError(f'upload of {folder} to {repo_id} failed ({type(e).__name__}: {e}); the folder is '
                               f'unchanged: retry with python -m tps_timm.hub push {folder} {repo_id}') from e
    return str(getattr(info, 'commit_url', info))


@contextlib.contextmanager
def _with_hub_usage(folder: Path, repo_id: str) -> Iterator[Path]:
    """The folder to upload: ``folder`` itself, or, when its card loads the model from a local folder (a run made
    without ``--push-to-hub``), a staged copy (hard links where the file system allows) whose card loads
    ``hf-hub:REPO_ID``. The folder itself is never changed."""
    card = folder / 'README.md'
    text = card.read_text(encoding='utf-8') if card.is_file() else ''
    if 'local-dir:' not in text:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix='tps_timm_push_') as staged:
        for file in folder.iterdir():
            if file.is_file() and file.name != 'README.md':
                try:
                    os.link(file, Path(staged) / file.name)
                except OSError:  # another file system
                    shutil.copy2(file, Path(staged) / file.name)
        (Path(staged) / 'README.md').write_text(re.sub(r"local-dir:[^'`\s]+", f'hf-hub:{repo_id}', text),
                                                encoding='utf-8')
        yield Path(staged)


def main(argv: Optional[List[str]] = None) -> None:
    from .cli import ArgumentParser
    parser = ArgumentParser(prog='python -m tps_timm.hub', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    push = sub.add_parser('push', help='upload a Hub-ready folder')
    push.add_argument('folder')
    push.add_argument('repo_id')
    push.add_argument('--private', action='store_true')
    push.add_argument('--token', default=None, help='Hub token (default: the logged-in one)')
    args = parser.parse_args(argv)
    try:
        url = push_folder(args.folder, args.repo_id, token=args.token, private=args.private)
    except (FileNotFoundError, HubPushError) as e:
        parser.exit(2, f'error: {e}\n')
    print(f'pushed {args.folder} to {args.repo_id}: {url}')


if __name__ == '__main__':
    main()
