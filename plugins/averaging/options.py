"""The options of the ``averaging`` extension (torch-free: imported at registration)."""

from __future__ import annotations

import attrs

from stratum import ConfigError, option

#: What ``--average`` may name: ``none`` (off, the default), ``ema``, ``swa``.
METHODS = ("none", "ema", "swa")
#: The EMA decay per optimizer step when neither ``--ema-decay`` nor ``--ema-half-life`` is given.
DEFAULT_EMA_DECAY = 0.99


@attrs.frozen
class AveragingOptions:
    """The options of the ``averaging`` extension. Raises :class:`~stratum.ConfigError` (one line)
    for ``--ema-decay`` together with ``--ema-half-life``, and for an EMA or SWA option given
    without the ``--average`` method it belongs to."""

    average: str = option("none", "Evaluate and report a weight average: ema (moving average of weights and "
                                  "batch-norm buffers, every step) or swa (mean of epoch-end weights); none = off.",
                          choices=METHODS)
    ema_decay: float = option(None, f"EMA decay per optimizer step (default {DEFAULT_EMA_DECAY}); not with "
                                    "--ema-half-life.", type=float, min=0, max=1, min_exclusive=True,
                              max_exclusive=True)
    ema_half_life: float = option(None, "EMA half-life in optimizer steps: decay = 0.5**(1/STEPS); not with "
                                        "--ema-decay.", type=float, min=0, min_exclusive=True)
    ema_warmup: bool = option(False, "EMA decay warm-up: update t uses min(decay, (1+t)/(10+t)).")
    swa_start: int = option(None, "SWA: first epoch whose end weights are averaged (default: the last quarter "
                                  "of --epochs).", type=int, min=1)

    def __attrs_post_init__(self):
        if self.ema_decay is not None and self.ema_half_life is not None:
            raise ConfigError("--ema-decay and --ema-half-life both set the EMA decay; give one of them")
        given = [flag for flag, value, method in (("--ema-decay", self.ema_decay, "ema"),
                                                  ("--ema-half-life", self.ema_half_life, "ema"),
                                                  ("--ema-warmup", self.ema_warmup or None, "ema"),
                                                  ("--swa-start", self.swa_start, "swa"))
                 if value is not None and self.average != method]
        if given:
            method = "ema" if given[0].startswith("--ema") else "swa"
            raise ConfigError(f"{given[0]} needs --average {method} (got --average {self.average})")
