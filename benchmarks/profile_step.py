#!/usr/bin/env python3
"""Where a training step's time goes: torch.profiler's op table for TPS-Swin or, as the floor, timm's 2D Swin.

    python benchmarks/profile_step.py [--model tps_swin_tiny|swin2d] [--frames 32] [--size 224] [--device cpu|cuda]

The 2D Swin runs on the same frames as images (``frames / 2`` of them, as the video model sees ``frames / 2`` temporal
tokens). Compare the two tables to find what the video model adds.
"""
import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import timm  # noqa: E402

import tps_timm  # noqa: E402,F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='tps_swin_tiny', help="a tps_swin_* name, or 'swin2d'")
    parser.add_argument('--frames', type=int, default=32)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--rows', type=int, default=25, help='ops to list')
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.model == 'swin2d':
        model = timm.create_model('swin_tiny_patch4_window7_224', num_classes=400)
        x = torch.randn(args.frames // 2, 3, args.size, args.size)
    else:
        model = timm.create_model(args.model, num_classes=400)
        x = torch.randn(1, 3, args.frames, args.size, args.size)
    model, x = model.to(args.device).train(), x.to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=args.device)

    def step() -> None:
        torch.nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, cached indices, optimizer state
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == 'cuda' else [])
    with profile(activities=activities) as prof:
        step()
        if args.device == 'cuda':
            torch.cuda.synchronize()
    sort = 'self_cuda_time_total' if args.device == 'cuda' else 'self_cpu_time_total'
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=48))


if __name__ == '__main__':
    main()
