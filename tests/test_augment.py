"""The ``augmentation`` kind (issue 12 item 4): --augment, train-only, seeded by (seed, global step), exact on resume."""

from __future__ import annotations

import json

import pytest
import torch

import stratum
import stratum_plugins.augment.core as core
from stratum.config import make_config, plugin_option_fields
from stratum.data import TrainAugmentation
from stratum.engine import Trainer, build_run
from stratum.engine.loop import evaluate
from stratum.errors import StratumError
from tests.conftest import FAST, assert_one_line_error, fast_args, run_cli

# Image batches of digits (1x8x8) through a small conv net with batch norm.
CONV = dict(model="vgg11", width=0.125, batch_norm=True)


def _spy(monkeypatch, name: str) -> list:
    """Record the shape of every batch the core function ``name`` augments (the factories bind it at build)."""
    calls = []
    real = getattr(core, name)

    def spy(x, generator, **kw):
        calls.append(tuple(x.shape))
        return real(x, generator, **kw)

    monkeypatch.setattr(core, name, spy)
    return calls


def test_the_generator_is_the_cores_batch_generator_and_differs_per_step_and_draw():
    augment = TrainAugmentation(core.crop_flip, seed=7, global_step=lambda: 0)
    for step in (0, 1, 123):
        a = torch.randint(0, 10**6, (4,), generator=augment.generator(step))
        b = torch.randint(0, 10**6, (4,), generator=core.batch_generator(7, step))
        assert torch.equal(a, b)
    draws = {tuple(torch.randint(0, 10**6, (4,), generator=augment.generator(s, d)).tolist())
             for s in (0, 1) for d in (0, 1, 2)}
    assert len(draws) == 6


def test_several_batches_of_one_step_get_their_own_draws_and_a_new_step_starts_over():
    step = [5]
    seen = []
    augment = TrainAugmentation(lambda x, g: seen.append(torch.randint(0, 10**9, (1,), generator=g).item()) or x,
                                seed=3, global_step=lambda: step[0])
    x = torch.zeros(2, 1, 4, 4)
    augment(x), augment(x)  # two micro-batches of step 5 (gradient accumulation)
    step[0] = 6
    augment(x)
    step[0] = 5  # a later fit (lottery round) back at step 5 after step 6: the first draw again
    augment(x)
    first5, second5 = (torch.randint(0, 10**9, (1,), generator=TrainAugmentation(None, 3, None).generator(5, d)).item()
                       for d in (0, 1))
    assert seen[0] == first5 and seen[1] == second5 and seen[3] == first5 and seen[2] != first5


def test_augmentation_applies_to_training_batches_only(make_cfg, pm, monkeypatch):
    calls = _spy(monkeypatch, "crop_flip")
    config = make_cfg(**CONV, augment="crop-flip", epochs=1, steps_per_epoch=3, eval_batch_size=50)
    run = build_run(config, pm)
    summary = Trainer(pm).fit(run)
    assert summary["global_steps"] == 3
    assert calls == [(32, 1, 8, 8)] * 3  # one per training step; no evaluation batch (50 samples) ever
    # evaluation of the same weights is the same with or without the augmentation in the run
    plain = build_run(make_cfg(**CONV, epochs=1, steps_per_epoch=3, eval_batch_size=50), pm)
    plain.model.load_state_dict(run.model.state_dict())
    calls.clear()
    assert evaluate(run, run.data.val) == evaluate(plain, plain.data.val)
    assert evaluate(run, run.data.test) == evaluate(plain, plain.data.test)
    assert calls == []


def test_a_training_batch_is_the_cores_augmentation_seeded_by_the_global_step(make_cfg, pm):
    run = build_run(make_cfg(**CONV, augment="translate"), pm)
    plain = build_run(make_cfg(**CONV), pm)
    x_aug, y_aug = next(run.train_batches.epoch(torch.Generator().manual_seed(1)))
    x, y = next(plain.train_batches.epoch(torch.Generator().manual_seed(1)))
    assert torch.equal(y, y_aug) and not torch.equal(x, x_aug)  # same samples, shifted
    expected = core.translate(x, core.batch_generator(run.config.seed, 0), max_shift=1)
    assert torch.equal(x_aug, expected)


def test_uint8_images_are_augmented_as_stored_then_normalised():
    from stratum.data import ResidentBatches, TensorSplit

    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    order = []

    def transform(batch):
        order.append(("transform", batch.dtype))
        return batch.float() / 255

    def augment(batch, generator):
        order.append(("augment", batch.dtype))
        return core.crop_flip(batch, generator)

    batches = ResidentBatches(TensorSplit(x, torch.zeros(6, dtype=torch.long)), 3, transform,
                              augment=TrainAugmentation(augment, 0, lambda: 0))
    out = [b for b, _ in batches.epoch(torch.Generator().manual_seed(0))]
    assert order == [("augment", torch.uint8), ("transform", torch.uint8)] * 2
    assert all(b.dtype == torch.float32 for b in out)


def test_dataloader_batches_are_augmented_exactly_as_resident_ones(make_cfg, pm):
    summaries = [Trainer(pm).run(make_cfg(**CONV, augment="crop-flip", crop_padding=2, resident=resident,
                                          deterministic=True, epochs=1, steps_per_epoch=4))
                 for resident in ("always", "never")]
    losses = [[r["train_loss"] for r in s["history"]] for s in summaries]
    assert losses[0] == losses[1]
    assert summaries[0]["best_val_acc"] == summaries[1]["best_val_acc"]


@pytest.mark.parametrize("kind", ["kill", "signal"])
def test_mid_epoch_resume_with_augmentation_is_bit_exact(make_cfg, pm, tmp_path, kind):
    from tests.test_resume_summary import interrupter, normalised

    from stratum.errors import PluginHookError, RunInterrupted

    options = dict(**CONV, augment="crop-flip", epochs=2, steps_per_epoch=6, deterministic=True, quiet=True)
    full_run = build_run(make_cfg(**options, out=str(tmp_path / "a")), pm)
    full = Trainer(pm).fit(full_run)
    with pytest.raises(PluginHookError if kind == "kill" else RunInterrupted):
        Trainer(pm, extra_plugins=[("interrupt", interrupter(kind, 2, 2))]).run(make_cfg(**options, out=str(tmp_path / "b")))
    resumed_run = build_run(make_cfg(**options, out=str(tmp_path / "b"), resume=True), pm)
    resumed = Trainer(pm).fit(resumed_run)
    assert normalised(resumed, tmp_path / "b") == normalised(full, tmp_path / "a")
    for key, value in full_run.model.state_dict().items():
        assert torch.equal(value, resumed_run.model.state_dict()[key]), key
    # and the augmentation mattered: without it the weights differ
    plain_run = build_run(make_cfg(**{**options, "augment": "none"}), pm)
    Trainer(pm).fit(plain_run)
    assert not torch.equal(plain_run.model.features[0].weight, full_run.model.features[0].weight)


@pytest.mark.parametrize("augmentation", ["crop-flip", "translate"])
def test_an_image_augmentation_on_non_image_data_is_one_line(augmentation):
    result = run_cli("run", *fast_args(dataset="cubic", epochs=1), "--augment", augmentation)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"--augment {augmentation} needs image inputs", "(1,)")


def test_none_fits_any_data_and_is_the_default():
    result = run_cli("run", *fast_args(dataset="cubic", epochs=1), "--json", "s.json")
    assert result.exit_code == 0, result
    assert json.loads(open("s.json").read())["config"]["augment"] == "none"
    result = run_cli("run", *fast_args(dataset="cubic", epochs=1), "--augment", "none")
    assert result.exit_code == 0, result


def test_augment_options_and_names_from_the_cli():
    result = run_cli("run", *fast_args(epochs=1), "--augment", "crop-flip", "--crop-padding", "2", "--no-flip",
                     "--json", "s.json")
    assert result.exit_code == 0, result
    config = json.loads(open("s.json").read())["config"]
    assert (config["augment"], config["crop_padding"], config["flip"]) == ("crop-flip", 2, False)
    result = run_cli("run", *fast_args(epochs=1), "--augment", "crop-flp")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "crop-flip")
    result = run_cli("run", *fast_args(epochs=1), "--augment", "translate", "--max-shift", "0")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--max-shift")


def test_the_augmentation_is_part_of_the_resume_fingerprint(make_cfg):
    assert make_cfg(augment="translate").fingerprint() != make_cfg().fingerprint()
    assert make_cfg(augment="translate", max_shift=2).fingerprint() != make_cfg(augment="translate").fingerprint()


class _Bad:
    """A plugin whose augmentation factory returns neither a function nor None."""

    @stratum.hookimpl
    def stratum_register_augmentations(self):
        return stratum.augmentation("broken", lambda spec, options: 42, "returns a number")


def test_a_plugin_augmentation_must_return_a_function_or_none(pm, make_cfg):
    pm.register(_Bad(), name="badaug")
    assert "broken" in pm.registries["augmentation"]
    config = make_config({**FAST, "augment": "broken"}, plugin_fields=plugin_option_fields(pm.registries.all()))
    with pytest.raises(StratumError, match="augmentation 'broken' from .*badaug.* returned int"):
        Trainer(pm).run(config)
