"""Data: ISIC 2017 (official layout), folder-per-class and path,label CSV datasets, preprocessing,
augmentation and class balancing. `load_split(root, split)` is the entry point."""

from dsedge.data.loader import available_splits, detect_layout, load_split
from dsedge.data.samples import DatasetSplit, Sample

__all__ = ["DatasetSplit", "Sample", "available_splits", "detect_layout", "load_split"]
