"""torch.hub entry points: ``torch.hub.load("<owner>/<repo>", "densenet121", weights=...)``.

The same builders as ``densenet_edu.densenet121`` etc. (torchvision's layout and
``weights=`` argument: ``None``, ``"IMAGENET1K_V1"``/``"DEFAULT"``, torchvision's weight
enum, or a file path).
"""

from densenet_edu.model import densenet121, densenet161, densenet169, densenet201, densenet264

# torch.hub checks these are importable before loading; numpy is imported by densenet_edu.
dependencies = ["torch", "numpy"]

__all__ = ["densenet121", "densenet161", "densenet169", "densenet201", "densenet264"]
