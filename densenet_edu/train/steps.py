"""The work done on every batch: one training step, evaluation, prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from densenet_edu.train.runtime import all_reduce, mixed_precision

__all__ = ["TrainStep", "evaluate", "evaluate_sums", "predict", "reduce_mean"]


class TrainStep:
    """One optimisation step: forward (optionally under autocast), backward, update.

    Called with a batch ``(images, labels)`` of shapes (N, C, H, W) and (N,); returns the
    batch's summed loss, its number of correct predictions and N.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp: str,
        memory_format: torch.memory_format,
    ) -> None:
        self.net, self.optimizer, self.scaler = net, optimizer, scaler
        self.device, self.amp, self.memory_format = device, amp, memory_format

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[float, float, int]:
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        with mixed_precision(self.device, self.amp):
            logits = self.net(images)
            loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        n = labels.numel()
        correct = (logits.argmax(1) == labels).sum().item()
        return loss.item() * n, correct, n


def evaluate_sums(
    net: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """(sum of losses, number correct, n) over ``loader``, to be summed over processes."""
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            images = images.to(device, memory_format=memory_format)
            labels = labels.to(device)
            with mixed_precision(device, amp):
                logits = net(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
    n = len(loader.dataset)  # type: ignore[arg-type]
    return torch.tensor([loss_sum, correct, n], dtype=torch.float64)


def reduce_mean(sums: Tensor, processes: int) -> tuple[float, float]:
    """Mean loss and accuracy from (loss * n, correct, n), summed over all processes."""
    if processes > 1:
        sums = all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


def evaluate(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``dataset`` (leaves it in eval mode)."""
    model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size)
    return reduce_mean(evaluate_sums(model, loader, torch.device(device)), processes=1)


def predict(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels for every item of ``dataset``, each of shape (N,)."""
    model.to(device).eval()
    preds, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            preds.append(model(x.to(device)).argmax(1).cpu())
            labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)
