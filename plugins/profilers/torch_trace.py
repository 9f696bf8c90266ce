"""The ``torch`` profiler: a torch.profiler Chrome trace of a bounded window of steps.

The window skips ``torch_trace_wait`` steps (warm-up and allocator noise),
warms the profiler up for one step, then records ``torch_trace_steps`` steps.
The trace is written once, atomically, when the window closes (or when the fit
ends inside it), to ``torch_trace_dir`` (default: the run directory, else
``./stratum-traces``, relative to the working directory). The directory is probed
before the fit starts (:func:`stratum.paths.probe_output`). Open it in chrome://tracing or https://ui.perfetto.dev.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

import stratum
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


class TorchTraceProfiler:
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

    def _ready(self, prof):
        export_trace_atomically(prof, self.path)
        self._written = True

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        from stratum.distributed import is_main_process

        if not is_main_process():
            return
        # Kineto logs "gpuGetDeviceCount failed" on CPU-only machines; keep stderr for real errors.
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
        activities = [torch.profiler.ProfilerActivity.CPU]
        if run.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._first_step = run.global_step + self.wait + 1
        self._prof = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=self.wait, warmup=1, active=self.steps, repeat=1),
            on_trace_ready=self._ready,
        )
        self._prof.start()

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self._prof is not None:
            self._prof.step()

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        if self._prof is None:
            return
        self._prof.stop()
        self._prof = None
        info = {
            "path": str(self.path) if self._written else None,
            "window": {"first_step": self._first_step, "steps": self.steps},
        }
        summary["torch_trace"] = info
        run.summary["torch_trace"] = info
