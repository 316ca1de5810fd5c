"""torch.compile: parity with eager, graphs and recompiles against timm's 2D Swin, fusion of the shifts into the
window gather, regional compilation and the compile cache."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from torch._dynamo.utils import counters

from tps_timm.compilation import compile_model, repeated_blocks
from tps_timm.shift import channel_shift, partition_channel_shift, patch_shift, permute_rows, window_token_index
from tps_timm.tps_swin import TpsSwinTransformerBlock

from conftest import SMALL, randomize_, small_model
from reference import channel_shift_reference, patch_shift_reference

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_compiled_logits_equal_eager():
    """At the input size whose layouts are buffers (inductor); at another size the layouts are built in the graph,
    which traces without a break (aot_eager: the same graph, minus a second minute of C++ compilation)."""
    model = randomize_(small_model(img_size=40, num_frames=6))
    with torch.no_grad():
        x = torch.randn(2, 3, 6, 40, 40)
        assert (torch.compile(model, fullgraph=True, dynamic=False)(x) - model(x)).abs().max() <= 1e-4
        x = torch.randn(1, 3, 4, 36, 44)
        compiled = torch.compile(model, fullgraph=True, dynamic=False, backend='aot_eager')
        assert (compiled(x) - model(x)).abs().max() <= 1e-5


def test_compiled_training_gradients_equal_eager():
    """The shifts' and row permutations' own backward passes, traced by AOT autograd, on a padded map."""
    stage = randomize_(small_model()).layers[1].train()  # a channel-shift block, then a patch-shift one
    x = torch.randn(2, 5, 17, 17, stage.downsample.dim, requires_grad=True)  # 9 x 9 after merging: padded
    compiled = torch.compile(stage, fullgraph=True)
    got = torch.autograd.grad(compiled(x).square().sum(), [x, *stage.parameters()])
    expected = torch.autograd.grad(stage(x).square().sum(), [x, *stage.parameters()])
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def _graphs_over_a_session(model: torch.nn.Module, clip, compile_mode: str):
    """Graphs compiled by each phase of train -> eval -> train -> another batch size, and the graph breaks."""
    torch._dynamo.reset()
    counters.clear()
    compiled = compile_model(model, compile_mode, backend='aot_eager')
    graphs = []
    for train, batch in ((True, 2), (False, 2), (True, 2), (True, 3)):
        before = counters['stats']['unique_graphs']
        compiled.train(train)
        with torch.set_grad_enabled(train):
            out = compiled(clip(batch))
            if train:
                out.sum().backward()
        graphs.append(counters['stats']['unique_graphs'] - before)
    return graphs, sum(counters['graph_break'].values())


@pytest.mark.parametrize('compile_mode', ['model', 'regional'])
def test_no_graph_breaks_and_no_more_recompiles_than_the_2d_swin(compile_mode):
    frames, size = 4, 56
    two_stages = dict(embed_dim=32, depths=(2, 2), num_heads=(1, 2))  # shifted and unshifted blocks at two sizes
    video = small_model(patch_size=(1, 4, 4), img_size=size, num_frames=frames, **two_stages)
    image = SwinTransformer(img_size=size, num_classes=10, **two_stages)
    ours, ours_breaks = _graphs_over_a_session(video, lambda b: torch.randn(b, 3, frames, size, size), compile_mode)
    theirs, theirs_breaks = _graphs_over_a_session(image, lambda b: torch.randn(b * frames, 3, size, size),
                                                   compile_mode)
    assert ours_breaks == 0
    assert ours[2] == 0  # training again reuses the first graphs
    assert sum(ours) <= sum(theirs), (ours, theirs)


def test_regional_compilation_compiles_the_blocks_in_place():
    model = small_model()
    blocks = repeated_blocks(model)
    assert len(blocks) == sum(SMALL['depths']) and all(isinstance(b, TpsSwinTransformerBlock) for b in blocks)
    keys = list(model.state_dict())
    assert compile_model(model, 'regional') is model
    assert list(model.state_dict()) == keys  # checkpoints keep their keys
    with pytest.raises(ValueError, match='compile mode'):
        compile_model(model, 'everything')


def _kernels(fn, *args) -> int:
    """Kernels inductor generates for ``fn`` (compiled afresh: no dynamo or FX-graph cache)."""
    from torch._inductor import config, metrics
    torch._dynamo.reset()
    metrics.reset()
    with config.patch(fx_graph_cache=False):
        torch.compile(fn, fullgraph=True)(*args)
    return metrics.generated_kernel_count


def test_patch_shift_fuses_into_the_window_gather():
    """Under inductor the patch shift and the padding cost no kernel of their own: the block's pad + partition is one
    gather kernel with or without the shift folded in, and so is its reverse."""
    maps = torch.randn(2, 4, 12, 12, 32)
    plain = window_token_index(4, (12, 12), (7, 7), (3, 3), shift_patches=False)
    shifted = window_token_index(4, (12, 12), (7, 7), (3, 3), shift_patches=True)

    def partition(x, index):
        return permute_rows(F.pad(x, (0, 0, 0, 2, 0, 2)), index.partition, index.reverse)

    assert _kernels(partition, maps, shifted) == _kernels(partition, maps, plain) == 1


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device'))])
def test_compiled_shifts_are_bit_equal_to_the_references(device):
    """Compiled, the shifts stay copies: forward and backward equal the literal references bit for bit (float32),
    on the CPU and, with a GPU, in Triton."""
    heads, window = 3, (7, 7)
    tokens = torch.randn(2, 5, 4, 49, heads * 32, device=device)
    maps = torch.randn(2, 5, 14, 14, heads * 32, device=device)
    index = window_token_index(5, (14, 14), window, window_major=True, device=device)
    cases = [
        (lambda t: patch_shift(t, window), lambda t: patch_shift_reference(t, window), tokens),
        (lambda t: patch_shift(t, window, inverse=True), lambda t: patch_shift_reference(t, window, True), tokens),
        (lambda t: channel_shift(t, heads), lambda t: channel_shift_reference(t, heads), tokens),
        (lambda t: partition_channel_shift(t, index.partition, index.reverse, window, heads),
         lambda t: permute_rows(channel_shift_reference(t, heads), index.partition, index.reverse), maps),
    ]
    for fused, reference, x in cases:
        compiled = torch.compile(fused, fullgraph=True)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = compiled(xa), reference(xb)
        grad = torch.randn_like(yb)
        ya.backward(grad)
        yb.backward(grad)
        assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)


@pytest.mark.long  # ~35 s (two fresh processes compiling): out of the default run, in `pytest -m long`
def test_compile_cache_folder_makes_a_new_process_warm(tmp_path):
    """A second process compiling the same model with the same cache folder loads instead of compiling."""
    script = textwrap.dedent('''
        import sys, torch
        from torch._dynamo.utils import counters
        from tps_timm.compilation import use_compile_cache
        warm = use_compile_cache(sys.argv[1])
        torch.compile(lambda x: (x.sin() * 2 + 1).relu().sum(-1))(torch.randn(8, 16))
        print(warm, counters['inductor']['fxgraph_cache_hit'])
    ''')
    env = {k: v for k, v in os.environ.items() if k != 'TORCHINDUCTOR_CACHE_DIR'}
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'cache')], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(proc.stdout.split())
    assert runs == [['False', '0'], ['True', '1']]
