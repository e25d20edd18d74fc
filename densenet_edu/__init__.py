"""densenet_edu: DenseNet (Huang et al., CVPR 2017) for learning, compatible with torchvision.

>>> from densenet_edu import densenet121
>>> model = densenet121()                    # random init, torchvision's layout
>>> model = densenet121(weights="IMAGENET1K_V1")  # torchvision's ImageNet weights
"""

from densenet_edu.analysis import (
    channel_schedule,
    count_macs,
    count_parameters,
    layer_table,
    trace_shapes,
)
from densenet_edu.config import DenseNetConfig
from densenet_edu.deploy import export_onnx
from densenet_edu.errors import InputShapeError, NotScriptableError, WeightsError
from densenet_edu.fast import FastDenseBlock, FastDenseNet, optimize_for_inference
from densenet_edu.features import extract_features, feature_taps
from densenet_edu.layers import DenseBlock, DenseLayer, Transition, compressed_channels
from densenet_edu.model import (
    ARCHITECTURES,
    DenseNet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet264,
    densenet_cifar,
)
from densenet_edu.reuse import feature_reuse, plot_feature_reuse
from densenet_edu.weights import convert_legacy_keys, load_torchvision_weights

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "DenseNetConfig",
    "FastDenseBlock",
    "FastDenseNet",
    "InputShapeError",
    "NotScriptableError",
    "Transition",
    "WeightsError",
    "channel_schedule",
    "compressed_channels",
    "convert_legacy_keys",
    "count_macs",
    "count_parameters",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet_cifar",
    "export_onnx",
    "extract_features",
    "feature_reuse",
    "feature_taps",
    "layer_table",
    "load_torchvision_weights",
    "optimize_for_inference",
    "plot_feature_reuse",
    "trace_shapes",
]
