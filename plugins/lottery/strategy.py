"""The ``lottery`` strategy: iterative magnitude pruning with rewinding and controls.

Level 0 trains the dense network. After the winning-ticket fit of level L the
smallest surviving weights are pruned (see :mod:`.pruning`), giving the mask
of level L+1. Each level >= 1 then trains, with fresh optimiser state and the
same data order:

* ``ticket``: the mask, survivors rewound to their initial values (or, with
  ``--rewind-iteration k``, to their values after k iterations of the dense
  run: late resetting);
* ``reinit`` control: the same mask, survivors re-drawn from the initialiser
  with a different seed;
* ``random-mask`` control: a random mask with the same number of survivors per
  layer, survivors rewound like the ticket.

Controls are branches: only the ticket's trained weights feed the next round.
Masks are re-applied after every optimiser step, and pruned weights' gradients
are zeroed before it (``stratum_mask_gradients``: last, after gradient terms and
clipping), so neither momentum, weight decay, noise nor clipping can revive them.

The learning-rate schedule restarts with every fit (each round's steps count from
0); with late rewinding to iteration k, a rewound fit (ticket, random-mask) resumes
it at k, as its weights do (``run.schedule_offset``).

Every fit writes its own checkpoint (``lottery-LNN-BRANCH.pt``) and a small
state file (``lottery-state.pt``: initial and rewind weights, masks, the
latest trained ticket, results) is rewritten after each branch, so
``--resume`` continues inside the branch that was running and skips the
finished ones (with no state file yet it starts fresh, with a note). When the search ends the model holds the sparsest trained
ticket (not the last control).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import stratum
from stratum import ConfigError, Strategy
from stratum.checkpoint import load_checkpoint, save_checkpoint
from stratum.config import non_trajectory_keys
from stratum.engine import build_optimizer, note
from stratum.errors import CheckpointError, OutputError
from stratum.io import dumps_json
from stratum.schema import ANY, Fields, Float, Int, ListOf, MapOf, Optional, Str, check
from stratum.seeding import generator, seed_everything

from .pruning import (
    apply_masks_, density, full_masks, mask_gradients_, prunable_weights, prune_by_magnitude,
    random_masks_like, rate_per_round, rate_scales,
)
from .report import branch_result, markdown_table, write_report

STATE_FILENAME = "lottery-state.pt"
# The state file (see _save_state), checked field by field when a search resumes.
STATE_SCHEMA = Fields(
    required={
        "format": str, "fingerprint": str, "config": MapOf(ANY), "history": list, "kind": Str(("lottery-state",)),
        "init": MapOf(torch.Tensor), "rewind": MapOf(torch.Tensor), "masks": MapOf(MapOf(torch.Tensor)),
        "results": str, "final": str, "ticket": MapOf(torch.Tensor),
    },
)
RESULTS_SCHEMA = ListOf(Fields(required={  # one record per trained branch: report.branch_result
    "level": Int(0), "branch": str, "weights_remaining": Float(0), "early_stop_epoch": Optional(Int(1)),
    "early_stop_iteration": Optional(Int(0)), "test_acc_at_early_stop": Optional(Float()),
    "val_acc_at_early_stop": Optional(Float()), "min_val_loss": Optional(Float()), "final_test_acc": Optional(Float()),
    "best_val_acc": Optional(Float()), "epochs_run": Optional(Int(0)), "stopped_reason": Optional(str),
    "diverged": bool, "total_s": Optional(Float()),
}, extra=True))
CONTROLS = ("reinit", "random-mask")


def checkpoint_name(level: int, branch: str) -> str:
    return f"lottery-L{level:02d}-{branch}.pt"


def _clone_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class LotteryStrategy(Strategy):
    """Iterative magnitude pruning (Frankle & Carbin 2019) as a multi-fit strategy."""

    name = "lottery"

    def __init__(self, run, options):
        super().__init__(run, options)
        self.rounds = options.prune_rounds
        try:
            self.rate = rate_per_round(options.prune_fraction, options.prune_rounds)
        except ValueError as exc:  # the option bounds already catch this; keep the message clear anyway
            raise ConfigError(f"lottery: {exc}") from None
        controls = list(dict.fromkeys(options.lottery_controls))
        if "none" in controls and len(controls) > 1:
            raise ConfigError("--lottery-controls: 'none' cannot be combined with other controls")
        self.controls = [c for c in controls if c != "none"]
        self.names = prunable_weights(run.model)
        self.scales = rate_scales(self.names, options.prune_output)
        if not any(s > 0 for s in self.scales.values()):
            raise ConfigError(
                f"lottery: model {run.config.model!r} has nothing to prune with --prune-output {options.prune_output}"
            )
        dense_steps = run.steps_per_data_epoch * run.config.epochs
        if options.rewind_iteration > dense_steps:
            raise ConfigError(
                f"--rewind-iteration {options.rewind_iteration} is beyond the dense run's {dense_steps} iterations"
            )
        # Bookkeeping of the whole search (persisted in the state file).
        self.init_state: dict | None = None
        self.rewind_state: dict | None = None
        self.level_masks: dict[int, dict] = {}
        self.results: list[dict] = []
        self.final_summary: dict | None = None
        self.ticket_state: dict | None = None  # the latest trained ticket: the model a search leaves behind
        # The fit in progress.
        self.level = 0
        self.branch = "dense"
        self.masks: dict | None = None
        self._params: dict = {}
        self.state_path: Path | None = None

    # -- the rounds -------------------------------------------------------------
    def branches(self, level: int) -> list[str]:
        return ["dense"] if level == 0 else ["ticket", *self.controls]

    def execute(self, trainer, run) -> dict:
        run_dir = run.run_dir()
        self.state_path = run_dir / STATE_FILENAME if run_dir is not None else None
        if run.config.resume and self.state_path is not None and not (self.state_path.exists() or self.state_path.is_symlink()):
            # Like a plain run: --resume before anything was saved starts the search fresh.
            note(f"no lottery state at {self.state_path}; starting fresh")
        if run.config.resume and self.state_path is not None and (self.state_path.exists() or self.state_path.is_symlink()):
            self._load_state(run)  # corrupt or from another configuration: refused
        else:
            self.init_state = _clone_state(run.model)
            self._save_state(run)
        done = {(r["level"], r["branch"]) for r in self.results}
        for level in range(self.rounds + 1):
            for branch in self.branches(level):
                if (level, branch) in done:
                    continue
                summary = self._train_branch(trainer, run, level, branch)
                result = branch_result(level, branch, self._density(), summary)
                self.results.append(result)
                if branch in ("dense", "ticket"):
                    self.final_summary = summary
                    self.ticket_state = _clone_state(run.model)
                    if summary.get("diverged"):
                        self._save_state(run)
                        return self._finish(run, stopped=f"the level-{level} ticket diverged")
                    self._after_ticket(run, level)
                self._save_state(run)
        return self._finish(run)

    def _after_ticket(self, run, level: int) -> None:
        if level == 0 and self.options.rewind_iteration > 0 and self.rewind_state is None:
            raise ConfigError(
                f"--rewind-iteration {self.options.rewind_iteration}: the dense run stopped after "
                f"{run.global_step} iterations, before reaching it"
            )
        if level < self.rounds:
            params = dict(run.model.named_parameters())
            current = self.level_masks.get(level) or full_masks(params, self.names)
            self.level_masks[level + 1] = prune_by_magnitude(
                params, current, self.rate, self.scales, self.options.prune_scope
            )

    def _train_branch(self, trainer, run, level: int, branch: str) -> dict:
        config = run.config
        self.level, self.branch = level, branch
        run.fit_tag = f"L{level:02d}-{branch}"  # each fit logs on its own (TensorBoard: DIR/<run>/L01-ticket/)
        masks = self.level_masks.get(level)
        if branch == "random-mask":
            masks = random_masks_like(masks, generator(config.seed, f"lottery-random-mask-L{level}"))
        self.masks = None if masks is None else {k: v.to(run.device) for k, v in masks.items()}
        self._reset_run(run)
        self._set_weights(run, level, branch)
        # Finding the mask cost the earlier tickets' training: count it in the all-in clock.
        run.prior_s = 0.0 if branch == "random-mask" else sum(
            r["total_s"] or 0.0 for r in self.results if r["branch"] in ("dense", "ticket") and r["level"] < level
        )
        name = checkpoint_name(level, branch)
        run_dir = run.run_dir()
        resume = False
        if run_dir is not None:
            path = run_dir / name
            resume = bool(config.resume) and path.exists()
            if not resume and path.exists():
                path.unlink()  # a stale file from an earlier search must never be resumed
        if not config.quiet:
            print(f"lottery: level {level}/{self.rounds} {branch}: "
                  f"{100 * self._density():.1f}% of prunable weights remain", flush=True)
        return trainer.fit(run, checkpoint_name=name, resume=resume)

    def _reset_run(self, run) -> None:
        """A fresh fit: no epochs yet, fresh optimiser state, the same data order as every other fit."""
        run.epoch = 0
        run.global_step = 0
        run.schedule_offset = 0  # each round's schedule restarts (_set_weights moves it to k when rewinding)
        run.history = []
        run.switches = []
        run.mode = self.initial_mode
        run.stop_requested = None
        run.setup_s = 0.0
        run.state.pop("_epoch_generator_state", None)
        run.shuffle_generator = generator(run.config.seed, "shuffle")
        seed_everything(run.config.seed)
        run.optimizer = build_optimizer(run)

    @torch.no_grad()
    def _set_weights(self, run, level: int, branch: str) -> None:
        model = run.model
        model.load_state_dict(self.init_state)
        if branch == "reinit":
            component = run.registries.get("initializer", run.config.init)
            component.factory(model, run.options_for("initializer", run.config.init),
                              generator(run.config.seed, f"lottery-reinit-L{level}"))
        elif level > 0 and self.rewind_state is not None:
            model.load_state_dict(self.rewind_state)
            # Late rewinding: the weights are those after iteration k, so is the learning-rate schedule.
            run.schedule_offset = self.options.rewind_iteration
        self._params = dict(model.named_parameters())
        if self.masks is not None:
            apply_masks_(self._params, self.masks)

    def _density(self) -> float:
        return density(self.masks) if self.masks is not None else 1.0

    # -- hooks (run-scoped: only while a lottery fit runs) -----------------------
    @stratum.hookimpl
    def stratum_fit_start(self, run):
        self._params = dict(run.model.named_parameters())
        if self.masks is not None:
            apply_masks_(self._params, self.masks)

    @stratum.hookimpl
    def stratum_mask_gradients(self, run, step):
        # Last before the optimizer step (after gradient terms and clipping): stratum.engine.step.
        if self.masks is not None:
            mask_gradients_(self._params, self.masks)

    @stratum.hookimpl(wrapper=True)
    def stratum_apply_update(self, run, step):
        if self.masks is None:
            return (yield)
        result = yield
        apply_masks_(self._params, self.masks)  # momentum / weight decay / noise cannot revive a pruned weight
        return result

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        k = self.options.rewind_iteration
        if self.level == 0 and k > 0 and self.rewind_state is None and run.global_step == k:
            self.rewind_state = _clone_state(run.model)
            self._save_state(run)

    # -- persistence ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"level": self.level, "branch": self.branch, "masks": dict(self.masks or {})}

    def load_state_dict(self, state: dict) -> None:
        if state.get("level") != self.level or state.get("branch") != self.branch:
            raise CheckpointError(
                f"lottery checkpoint is for level {state.get('level')} {state.get('branch')}, "
                f"expected level {self.level} {self.branch}"
            )
        masks = state.get("masks") or None
        if masks is not None and self.masks is not None:
            if any(not torch.equal(masks[k].to(self.masks[k].device), self.masks[k]) for k in self.masks):
                raise CheckpointError("lottery checkpoint holds other masks than the lottery state file")

    def _save_state(self, run) -> None:
        if self.state_path is None:
            return
        save_checkpoint(self.state_path, {
            "fingerprint": run.config.fingerprint(),
            "config": run.config.to_dict(),
            "history": [],
            "kind": "lottery-state",
            "init": self.init_state,
            "rewind": self.rewind_state or {},
            "masks": {f"L{level:02d}": {k: v.cpu() for k, v in m.items()} for level, m in self.level_masks.items()},
            "results": dumps_json(self.results),
            "final": dumps_json(self.final_summary or {}),
            "ticket": self.ticket_state or {},
        })

    def _load_state(self, run) -> None:
        path = self.state_path
        state = load_checkpoint(path, run.config.fingerprint(), run.config.to_dict(), non_trajectory_keys(run.config),
                                schema=STATE_SCHEMA)
        try:
            self.init_state = state["init"]
            self.rewind_state = state["rewind"] or None
            self.level_masks = {int(k[1:]): {n: t.bool() for n, t in m.items()} for k, m in state["masks"].items()}
            self.results = json.loads(state["results"])
            self.final_summary = json.loads(state["final"]) or None
            self.ticket_state = state["ticket"] or None
        except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"lottery state {path} is corrupt ({type(exc).__name__}: {str(exc)[:80]})") from None
        check(self.results, RESULTS_SCHEMA, f"lottery state {path} is corrupt: 'results'", CheckpointError)
        check(self.final_summary or {}, MapOf(ANY), f"lottery state {path} is corrupt: 'final'", CheckpointError)
        try:
            run.model.load_state_dict(self.init_state)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"lottery state {path} does not fit this run ({type(exc).__name__})") from None
        for masks in self.level_masks.values():
            if set(masks) != set(self.names):
                raise CheckpointError(f"lottery state {path} holds masks for another architecture")

    # -- the report ---------------------------------------------------------------
    def report(self) -> dict:
        columns = ["ticket", *self.controls]
        search_s = sum(r["total_s"] or 0.0 for r in self.results if r["branch"] in ("dense", "ticket"))
        return {
            "prune_fraction": self.options.prune_fraction,
            "rounds": self.rounds,
            "rate_per_round": self.rate,
            "scope": self.options.prune_scope,
            "output_layer": self.options.prune_output,
            "rewind_iteration": self.options.rewind_iteration,
            "controls": list(self.controls),
            "search_s": search_s,
            "results": list(self.results),
            "table": markdown_table(self.results, columns),
        }

    def _finish(self, run, stopped: str | None = None) -> dict:
        if self.ticket_state is not None:  # leave the sparsest trained ticket in the model, not the last control
            run.model.load_state_dict(self.ticket_state)
        summary = dict(self.final_summary or {})
        report = self.report()
        if stopped:
            report["stopped"] = stopped
        summary["lottery"] = report
        run_dir = run.run_dir()
        if run_dir is not None and self.results:
            try:
                write_report(run_dir, self.results, ["ticket", *self.controls],
                             title=f"lottery: {run.config.model} on {run.config.dataset}, seed {run.config.seed}")
            except OutputError as exc:  # the search is finished: its result is still printed
                exc.finished_result = summary
                raise
        if not run.config.quiet:
            print("lottery: test accuracy at the early-stopping point (min validation loss), per sparsity level", flush=True)
            print(report["table"], end="", flush=True)
        return summary

    def final_models(self, run) -> dict:
        """``{"pruned": run.model}`` once a ticket of level >= 1 was trained: the model
        then holds the trained ticket of the last level (masked weights are zero)."""
        levels = [r["level"] for r in self.results if r["branch"] in ("dense", "ticket")]
        if self.ticket_state is None or not levels or max(levels) == 0:
            return {}
        return {"pruned": run.model}

    def summary(self, run) -> dict:
        return {"lottery_level": self.level, "lottery_branch": self.branch, "weights_remaining": self._density()}
