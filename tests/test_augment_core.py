"""Train-only augmentation on resident batches, and per-channel normalisation statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stratum_plugins.augment.core import (
    AUGMENTATIONS, batch_generator, channel_stats, crop_flip, crop_flip_params, none, normalise, translate,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=16, c=3, h=8, w=8, dtype=torch.float32):
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # no zeros: padding shows
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_shape_dtype_and_device_are_kept(name, channels, dtype):
    x = batch(6, channels, 10, 12).remainder(200).to(dtype)
    out = AUGMENTATIONS[name](x, gen())
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


@pytest.mark.parametrize("fn", [crop_flip, translate])
def test_determined_by_the_generator(fn):
    x = batch()
    assert torch.equal(fn(x, gen(1)), fn(x, gen(1)))
    assert not torch.equal(fn(x, gen(1)), fn(x, gen(2)))
    g = gen(3)
    first, second = fn(x, g), fn(x, g)  # the generator advances
    assert not torch.equal(first, second)


def test_batch_generator_is_a_pure_function_of_seed_and_step():
    x = batch()
    assert torch.equal(crop_flip(x, batch_generator(7, 100)), crop_flip(x, batch_generator(7, 100)))
    assert not torch.equal(crop_flip(x, batch_generator(7, 100)), crop_flip(x, batch_generator(7, 101)))
    assert not torch.equal(crop_flip(x, batch_generator(7, 100)), crop_flip(x, batch_generator(8, 100)))


def reference_crop_flip(x, dy, dx, flips, padding):
    """One sample at a time, the obvious way."""
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("shape", [(9, 3, 8, 8), (5, 1, 7, 11)])
def test_crop_flip_equals_a_per_sample_loop(padding, shape):
    x = batch(*shape)
    params = crop_flip_params(shape[0], gen(5), padding, True)
    expected = reference_crop_flip(x, *params, padding)
    assert torch.equal(crop_flip(x, gen(5), padding=padding), expected)


def test_translate_is_a_crop_without_flip():
    x = batch(9, 1, 8, 8)
    params = crop_flip_params(9, gen(4), 1, False)
    assert not params[2].any()
    assert torch.equal(translate(x, gen(4)), reference_crop_flip(x, *params, 1))


def test_offsets_cover_the_whole_range_and_flips_are_fair():
    dy, dx, flips = crop_flip_params(20000, gen(0), 4, True)
    for d in (dy, dx):
        counts = torch.bincount(d, minlength=9)
        assert len(counts) == 9 and counts.min() > 20000 / 9 * 0.85  # every one of 0..8, roughly uniform
    assert 0.47 < flips.float().mean().item() < 0.53


def test_translate_shifts_are_at_most_one_pixel_and_all_occur():
    x = torch.zeros(3000, 1, 5, 5)
    x[:, :, 2, 2] = 1  # one bright pixel in the centre
    out = translate(x, gen(0))
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 5 - 2, pos % 5 - 2
    assert out.sum(dim=(1, 2, 3)).eq(1).all()  # shifted, never lost
    assert set(rows.tolist()) == {-1, 0, 1} and set(cols.tolist()) == {-1, 0, 1}


def test_flip_only_mirrors_width():
    x = batch(64, 2, 6, 6)
    out = crop_flip(x, gen(0), padding=0)
    flipped = 0
    for a, b in zip(x, out):
        if torch.equal(a, b):
            continue
        assert torch.equal(a.flip(-1), b)  # width mirrored, rows in place
        flipped += 1
    assert 10 < flipped < 54


def test_padding_fills_zeros_and_keeps_the_image_content():
    x = batch(200, 1, 6, 6)
    out = crop_flip(x, gen(0), padding=4, flip=False)
    assert (out == 0).any()  # some crops show padding
    # what is not padding is a shifted copy of the image
    for a, b in zip(x, out):
        vals = b[b != 0]
        assert torch.isin(vals, a).all()


def test_none_returns_the_batch_itself():
    x = batch()
    assert none(x, gen()) is x


@pytest.mark.parametrize("bad", [torch.zeros(3, 8, 8), torch.zeros(2, 1, 3, 8, 8)])
def test_non_batches_are_refused(bad):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        crop_flip(bad, gen())


def test_negative_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        crop_flip(batch(), gen(), padding=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_generator_gives_the_same_batch_on_the_gpu():
    x = batch()
    assert torch.equal(crop_flip(x.cuda(), gen(3)).cpu(), crop_flip(x, gen(3)))


def test_channel_stats_per_channel_population_statistics():
    torch.manual_seed(0)
    x = torch.randn(50, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + torch.tensor([0.0, 5.0, -1.0]).view(1, 3, 1, 1)
    mean, std = channel_stats(x, chunk=7)
    flat = x.transpose(0, 1).reshape(3, -1).double()
    torch.testing.assert_close(mean, flat.mean(1).float())
    torch.testing.assert_close(std, flat.std(1, correction=0).float())
    assert mean.dtype == std.dtype == torch.float32 and mean.shape == (3,)


def test_channel_stats_of_uint8_images_and_normalise():
    x = torch.randint(0, 256, (40, 3, 5, 5), dtype=torch.uint8, generator=gen(0))
    mean, std = channel_stats(x)
    z = normalise(x, mean, std)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-5, rtol=0)


def test_normalise_keeps_floating_dtypes_and_refuses_mismatches():
    x = torch.randn(4, 2, 3, 3).to(torch.bfloat16)
    assert normalise(x, torch.zeros(2), torch.ones(2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="do not fit"):
        normalise(x, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="std"):
        normalise(x, torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="N > 0"):
        channel_stats(torch.zeros(0, 3, 2, 2))


@pytest.mark.parametrize("fn", [crop_flip, translate])
def test_an_empty_batch_stays_empty(fn):
    x = torch.zeros(0, 3, 8, 8)
    assert fn(x, gen()).shape == (0, 3, 8, 8)
