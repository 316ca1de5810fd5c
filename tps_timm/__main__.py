"""``python -m tps_timm``: list the registered models and run one on a clip, to check an install end to end."""
import argparse
import time

import timm
import torch

import tps_timm  # noqa: F401  (registers the models)
from tps_timm.clip import ClipConfig


def main() -> None:
    parser = argparse.ArgumentParser(prog='python -m tps_timm', description=__doc__)
    parser.add_argument('--model', default='tps_swin_tiny')
    parser.add_argument('--num-frames', '--frames', type=int, default=None, help='default: the model config')
    parser.add_argument('--img-size', type=int, default=None, help='default: the model config')
    args = parser.parse_args()
    print('models:', ', '.join(timm.list_models('tps_*')))
    print('pretrained tags:', len(timm.list_pretrained('tps_*')))
    model = timm.create_model(args.model).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    settings = ClipConfig.from_pretrained_cfg(model.pretrained_cfg).replace(num_frames=args.num_frames,
                                                                            img_size=args.img_size)
    clip = torch.randn(1, 3, settings.num_frames, settings.img_size, settings.img_size)
    with torch.inference_mode():
        start = time.perf_counter()
        logits = model(clip)
        took = time.perf_counter() - start
    print(f'{args.model}: {params:.2f} M params; clip {tuple(clip.shape)} -> logits {tuple(logits.shape)} '
          f'in {took:.2f} s on {clip.device}')


if __name__ == '__main__':
    main()
