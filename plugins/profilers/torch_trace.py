"""The ``torch`` profiler: a torch.profiler Chrome trace of a bounded window of steps.

The window skips ``torch_trace_wait`` steps (warm-up and allocator noise),
warms the profiler up for one step, then records ``torch_trace_steps`` steps.
The trace is written once, atomically, when the window closes (or when the fit
ends inside it), to ``torch_trace_dir`` (default: the run directory, else
``./stratum-traces``, relative to the working directory). The directory is probed
before the fit starts (:func:`stratum.paths.probe_output`). Open it in chrome://tracing or https://ui.perfetto.dev.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch

import stratum
from stratum.errors import ConfigError
from stratum.io import remove_leftovers
from stratum.paths import probe_output, safe_join, slug, writing

DEFAULT_TRACE_DIR = Path("stratum-traces")


def trace_directory(run, configured) -> Path:
    if configured is not None:
        return Path(configured)
    run_dir = run.run_dir()
    return Path(run_dir) if run_dir is not None else DEFAULT_TRACE_DIR


def export_trace_atomically(prof, path: Path) -> None:
    """Export to a temporary file beside ``path`` and rename it into place.

    Leftovers of an earlier killed export of the same file are removed afterwards; an
    ``OSError`` raises :class:`~stratum.errors.OutputError` naming the path.
    """
    import time

    with writing(path, "torch trace"):
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            prof.export_chrome_trace(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    remove_leftovers(path, older_than=started)


@contextlib.contextmanager
def _quiet():
    """torch.profiler's own Python warnings (schedule notes and the like) stay off stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def silence_kineto() -> None:
    """Keep kineto's C++ log (``USDT ... profiler_start``, ``gpuGetDeviceCount failed``) off stderr.

    kineto reads ``KINETO_LOG_LEVEL`` when the first profiler of the process
    starts; level 6 is above its highest (USDT = 5), so nothing is printed.
    A level the user set explicitly is left alone.
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def _is_main_process() -> bool:
    from stratum.distributed import is_main_process

    return is_main_process()


class TorchTraceProfiler:
    """Run-scoped plugin: one bounded torch.profiler window per fit, written as a Chrome trace.

    Raises :class:`stratum.ConfigError` at construction (before the fit trains)
    when not one step of the window (``torch_trace_wait`` steps, 1 warm-up, then
    ``torch_trace_steps``) fits in the longest the fit can be (``--epochs`` x
    its most steps per epoch); warns with one ``stratum: warning:`` line when
    only part of it fits, and when a fit ends (early stopping, divergence)
    before the window began, so no trace was written.
    """

    def __init__(self, run, options):
        self.wait = options.torch_trace_wait
        self.steps = options.torch_trace_steps
        # The config hash keeps traces of different runs (a bench) from overwriting each other.
        name = slug(f"trace-{run.config.strategy}-seed{run.config.seed}-{run.config.fingerprint()[:8]}")
        if getattr(run, "fit_tag", None):  # a lottery search: one trace per fit, not one overwriting the others
            name += "-" + slug(run.fit_tag, fallback="fit")
        directory = trace_directory(run, options.torch_trace_dir)
        # --torch-trace-dir and --out are probed before the run; the default here, before the fit.
        probe_output(directory, "dir", "--torch-trace-dir" if options.torch_trace_dir is not None else "torch trace directory")
        self.path = safe_join(directory, f"{name}.json")
        self._prof = None
        self._written = False
        self._first_step = None
        self._last_step = 0  # global steps done when the profiler last stepped
        self._restored: dict | None = None
        per_epoch = max(run.strategy.steps_in_epoch(run, mode) for mode in run.strategy.modes)
        planned = run.config.epochs * per_epoch
        fits = min(self.steps, planned - self.wait - 1)
        window = (f"the trace window needs {self.wait + 1 + self.steps} training steps (--torch-trace-wait "
                  f"{self.wait} + 1 warm-up + --torch-trace-steps {self.steps}), but this run has at most {planned} "
                  f"({run.config.epochs} epoch(s) x {per_epoch} steps)")
        if fits <= 0:
            raise ConfigError(f"--profile torch: {window}; lower --torch-trace-wait or --torch-trace-steps")
        if fits < self.steps and _is_main_process():
            print(f"stratum: warning: torch profiler: {window}: the trace will hold only {fits} step(s)",
                  file=sys.stderr, flush=True)

    def _ready(self, prof):
        if self._last_step <= self._first_step:
            return  # the fit ended in the warm-up step: a trace of no step is no trace
        export_trace_atomically(prof, self.path)
        self._written = True

    # -- persistence: a resumed run keeps its window (and does not trace twice) -------------
    def state_dict(self) -> dict:
        """Where the window starts and whether its trace is written."""
        return {"first_step": self._first_step, "written": self._written}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (applied when the fit starts)."""
        first = state["first_step"]
        self._restored = {"first_step": None if first is None else int(first), "written": bool(state["written"])}

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        if not _is_main_process():
            return
        silence_kineto()
        self._last_step = run.global_step
        wait = self.wait
        self._first_step = run.global_step + wait + 1
        if self._restored is not None and self._restored["first_step"] is not None:
            self._written = self._restored["written"]
            if self._written:  # the interrupted run wrote it already
                self._first_step = self._restored["first_step"]
                return
            # Keep the planned window when the resume point lies before it; else start it afresh.
            wait = max(0, self._restored["first_step"] - 1 - run.global_step)
            self._first_step = run.global_step + wait + 1
        activities = [torch.profiler.ProfilerActivity.CPU]
        if run.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with _quiet():
            self._prof = torch.profiler.profile(
                activities=activities,
                schedule=torch.profiler.schedule(wait=wait, warmup=1, active=self.steps, repeat=1),
                on_trace_ready=self._ready,
            )
            self._prof.start()

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self._prof is not None:
            self._last_step = run.global_step
            with _quiet():
                self._prof.step()

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        if self._first_step is None:
            return  # not the main process
        if self._prof is not None:
            with _quiet():
                self._prof.stop()
            self._prof = None
        info = {
            "path": str(self.path) if self._written else None,
            "window": {"first_step": self._first_step, "steps": self.steps},
        }
        summary["torch_trace"] = info
        run.summary["torch_trace"] = info
        if not self._written:
            print(f"stratum: warning: torch profiler: the run ended after {run.global_step} training steps, before "
                  f"the trace window (steps {self._first_step + 1}-{self._first_step + self.steps}) began; "
                  "no trace was written", file=sys.stderr, flush=True)
