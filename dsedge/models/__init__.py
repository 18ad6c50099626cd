"""Models: DS-ResNet50, SimAM and the paper's torchvision baselines."""

from dsedge.models.dsresnet import DSBottleneck, DSResNet, DualScaleConv, ds_resnet50
from dsedge.models.simam import SimAM, simam
from dsedge.models.zoo import MODELS, create_model, get_spec, list_models

__all__ = [
    "DSBottleneck",
    "DSResNet",
    "DualScaleConv",
    "MODELS",
    "SimAM",
    "create_model",
    "ds_resnet50",
    "get_spec",
    "list_models",
    "simam",
]
