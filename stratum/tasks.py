"""What "loss" and "accuracy" mean for a data set's task."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ClassificationTask:
    """Cross-entropy. ``label_smoothing`` (``--label-smoothing``, in [0, 1)) smooths the training
    loss only (torch's ``cross_entropy(label_smoothing=)``); :meth:`batch_stats`, which validation
    and test use, is the plain cross-entropy, so evaluation losses compare across settings."""

    name = "classification"
    has_accuracy = True

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = float(label_smoothing)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch: logits (N, C), class indices (N,)."""
        if self.label_smoothing:
            return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        return F.cross_entropy(output, target)

    def batch_stats(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and number correct over a batch (kept on device)."""
        loss_sum = F.cross_entropy(output, target, reduction="sum")
        correct = (output.argmax(dim=1) == target).sum()
        return loss_sum, correct


class RegressionTask:
    name = "regression"
    has_accuracy = False

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output.reshape(target.shape), target)

    def batch_stats(self, output, target):
        loss_sum = F.mse_loss(output.reshape(target.shape), target, reduction="sum")
        # Mean over all target elements, so divide by elements per sample later.
        return loss_sum / max(1, target[0].numel()), torch.zeros((), device=output.device, dtype=torch.long)


def task_for(name: str, label_smoothing: float = 0.0):
    """The task object of a data set's ``task`` name; ``label_smoothing`` only for classification
    (``ValueError`` otherwise)."""
    if name == "classification":
        return ClassificationTask(label_smoothing)
    if label_smoothing:
        raise ValueError(f"label smoothing applies to classification, not {name}")
    return {"regression": RegressionTask}[name]()
