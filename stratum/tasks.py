"""What "loss" and "accuracy" mean for a data set's task."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ClassificationTask:
    name = "classification"
    has_accuracy = True

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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


def task_for(name: str):
    return {"classification": ClassificationTask, "regression": RegressionTask}[name]()
