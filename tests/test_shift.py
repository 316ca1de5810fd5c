import pytest
import torch

from tps_timm.shift import PATCH_SHIFT_PATTERN, channel_shift, partition_channel_shift, patch_shift, \
    patch_shift_offsets, permute_rows, window_token_index
from tps_timm.tps_swin import relative_position_index

from reference import channel_shift_reference, patch_shift_reference, spec_bias_rows


def _grad_pair(fused, ref, x):
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya, yb = fused(xa), ref(xb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    return ya, yb, xa.grad, xb.grad


@pytest.mark.parametrize('frames', [1, 2, 5, 16])
@pytest.mark.parametrize('heads,head_dim', [(1, 32), (3, 32), (2, 24), (2, 8)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.bfloat16])
def test_channel_shift_fused_equals_reference(frames, heads, head_dim, dtype):
    """Exact in every dtype, including those whose channel groups move as wide elements (float32, bfloat16)."""
    x = torch.randn(2, frames, 4, 5, heads * head_dim).to(dtype)
    ya, yb, ga, gb = _grad_pair(lambda t: channel_shift(t, heads), lambda t: channel_shift_reference(t, heads), x)
    assert torch.equal(ya, yb)
    assert torch.equal(ga, gb)


@pytest.mark.parametrize('frames', [1, 2, 5])
@pytest.mark.parametrize('size,window', [((14, 14), (7, 7)), ((8, 15), (4, 5)), ((2, 3), (2, 3))])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.bfloat16])
def test_partition_channel_shift_is_channel_shift_then_partition(frames, size, window, dtype):
    """The fold equals the channel shift followed by the unshifted window-major partition, forward and backward."""
    heads = 3
    index = window_token_index(frames, size, window, window_major=True)
    ya, yb, ga, gb = _grad_pair(
        lambda t: partition_channel_shift(t, index.partition, index.reverse, window, heads),
        lambda t: permute_rows(channel_shift_reference(t, heads), index.partition, index.reverse),
        torch.randn(2, frames, *size, heads * 32).to(dtype))
    assert torch.equal(ya, yb)
    assert torch.equal(ga, gb)


def test_channel_shift_moves_the_spec_channels():
    x = torch.arange(4.).view(1, 4, 1, 1).expand(1, 4, 1, 32).contiguous()  # value = frame index, one head
    y = channel_shift(x, 1)[0, :, 0]
    assert y[:, :4].tolist() == [[0.] * 4, [0.] * 4, [1.] * 4, [2.] * 4]  # from t-1; frame 0 keeps its own
    assert y[:, 4:8].tolist() == [[1.] * 4, [2.] * 4, [3.] * 4, [3.] * 4]  # from t+1; last frame keeps its own
    assert torch.equal(y[:, 8:], x[0, :, 0, 8:])


@pytest.mark.parametrize('frames', [1, 3, 16])
@pytest.mark.parametrize('window', [(7, 7), (4, 5), (2, 3)])
@pytest.mark.parametrize('inverse', [False, True])
def test_patch_shift_fused_equals_reference(frames, window, inverse):
    x = torch.randn(2, frames, 3, window[0] * window[1], 8, dtype=torch.float64)
    ya, yb, ga, gb = _grad_pair(lambda t: patch_shift(t, window, inverse),
                                lambda t: patch_shift_reference(t, window, inverse), x)
    assert torch.equal(ya, yb)
    assert torch.equal(ga, gb)


@pytest.mark.parametrize('shift', [patch_shift, patch_shift_reference])
def test_patch_shift_then_inverse_is_identity(shift):
    x = torch.randn(2, 16, 4, 49, 8)
    assert torch.equal(shift(shift(x, (7, 7)), (7, 7), inverse=True), x)
    assert not torch.equal(shift(x, (7, 7)), x)


def test_patch_shift_gathers_nine_frames_per_tile():
    offsets = patch_shift_offsets((7, 7))
    assert offsets[:3, :3].flatten().unique().numel() == 9
    assert offsets.tolist()[0][:3] == list(PATCH_SHIFT_PATTERN[0])
    x = torch.arange(16.).view(1, 16, 1, 1, 1).expand(1, 16, 1, 49, 1)
    y = patch_shift(x, (7, 7))[0, :, 0, :, 0]  # frame each token was read from
    assert torch.equal(y[5].view(7, 7), ((5 - offsets) % 16).float())


@pytest.mark.parametrize('size,window,shift', [((14, 14), (7, 7), (3, 3)), ((10, 13), (7, 7), (3, 3)),
                                               ((7, 7), (7, 7), (0, 0)), ((5, 6), (5, 6), (0, 0))])
@pytest.mark.parametrize('shift_patches', [False, True])
@pytest.mark.parametrize('window_major', [False, True])
def test_window_token_index_is_roll_partition_shift(size, window, shift, shift_patches, window_major):
    frames, (h, w) = 4, size
    hp, wp = -(-h // window[0]) * window[0], -(-w // window[1]) * window[1]
    padded = torch.randn(2, frames, hp, wp, 3)
    rolled = torch.roll(padded, (-shift[0], -shift[1]), (2, 3))
    nh, nw = hp // window[0], wp // window[1]
    expected = rolled.view(2, frames, nh, window[0], nw, window[1], 3).permute(0, 1, 2, 4, 3, 5, 6)
    expected = expected.reshape(2, frames, nh * nw, -1, 3)
    if shift_patches:
        expected = patch_shift_reference(expected, window)
    if window_major:
        expected = expected.transpose(1, 2)
    index = window_token_index(frames, size, window, shift, shift_patches, window_major)
    windows = permute_rows(padded, index.partition, index.reverse)  # per clip: batch offsets added inside
    assert torch.equal(windows, expected.reshape(2, -1, 3))
    assert torch.equal(permute_rows(windows, index.reverse, index.partition).view_as(padded), padded)  # undone


@pytest.mark.parametrize('window_major', [False, True])
def test_permute_rows_gradient_is_the_inverse_gather(window_major):
    index = window_token_index(3, (10, 13), (7, 7), (3, 3), True, window_major)  # padded to 14 x 14
    x = torch.randn(2, index.partition.numel(), 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    expected, = torch.autograd.grad(x[:, index.partition], x, g)  # autograd's own scatter
    got, = torch.autograd.grad(permute_rows(x, index.partition, index.reverse), x, g)
    assert torch.equal(got, expected)
    assert torch.autograd.gradcheck(lambda t: permute_rows(t, index.partition, index.reverse), (x[:, :, :1],))


@pytest.mark.parametrize('kind', ['patch', 'channel', 'none'])
def test_bias_index_equals_spec_formula_at_16_frames(kind):
    assert torch.equal(relative_position_index(16, (7, 7), (16, 7, 7), kind), spec_bias_rows(16, (7, 7), kind=kind))


@pytest.mark.parametrize('frames,window', [(3, (7, 7)), (16, (4, 4)), (20, (7, 7))])
def test_bias_index_other_clips_and_windows(frames, window):
    table = (max(16, frames), 7, 7)
    for kind in ('patch', 'channel'):
        rows = relative_position_index(frames, window, table, kind)
        assert torch.equal(rows, spec_bias_rows(frames, window, table, kind))
        assert rows.min() >= 0 and rows.max() < (2 * table[0] - 1) * 13 * 13


@pytest.mark.parametrize('heads,head_dim', [(3, 32), (2, 24), (2, 4)])
def test_export_decompositions_equal_the_references(heads, head_dim):
    """What an exported graph holds in place of the shifts' custom ops computes the same."""
    from tps_timm.shift import EXPORT_DECOMPOSITIONS
    channel = EXPORT_DECOMPOSITIONS[torch.ops.tps_timm.channel_shift.default]
    partition = EXPORT_DECOMPOSITIONS[torch.ops.tps_timm.partition_channel_shift.default]
    for frames in (1, 2, 5):
        x = torch.randn(2, frames, 14, 14, heads * head_dim)
        index = window_token_index(frames, (14, 14), (7, 7), window_major=True)
        assert torch.equal(channel(x, heads, False, 0), channel_shift_reference(x, heads))
        assert torch.equal(partition(x, index.partition, index.reverse, (7, 7), heads),
                           partition_channel_shift(x, index.partition, index.reverse, (7, 7), heads))
