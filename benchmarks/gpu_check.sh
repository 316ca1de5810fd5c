#!/usr/bin/env bash
# The one GPU check (issue 23): run it first whenever a GPU machine is at hand. <= 6 minutes on one H100 / H200.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine: appends a dated table to docs/benchmarks.md
#   bash benchmarks/gpu_check.sh --peak-tflops 989    # a device whose dense bf16 peak bench.py does not know
#   bash benchmarks/gpu_check.sh --docs FILE --json OUT.json   # the table elsewhere, and the figures as JSON
#   bash benchmarks/gpu_check.sh --smoke [--docs FILE]         # on the CPU, tiny sizes, seconds (tests/test_gpu_check.py)
#
# It runs tests/test_cuda.py, then measures: TPS-Swin-B vs Swin-B cold regional compile, the TPS-Swin-B training
# step at 16 x 32x224 bf16 (eager and compiled, clips/s, MFU), each shift op vs a copy, --aa-on-batch RandAugment on a
# batch, one recovery checkpoint (accelerator.save_state) next to a step, and with two GPUs a DDP and an FSDP2 run of
# train.py. Each figure is printed as it is measured, with its target and PASS / FAIL; the exit status is 0 when
# targets are missed (a measurement) and 1 only when a section crashed. --smoke writes no docs unless --docs is given.
# On a device tool whose files come back from $OUT: bash benchmarks/gpu_check.sh --docs "$OUT/gpu_check.md"
# (a new file holds the section alone; paste it into docs/benchmarks.md). Python: $PYTHON, else .venv/bin/python if
# there is one, else python3. Details: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
