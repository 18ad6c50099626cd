"""dsedge: DS-ResNet50 from training to an embedded TensorRT engine.

Importing this package stays light (no torch) so that the torch-free runtime
(`dsedge.runtime`) can be embedded on devices that only ship NumPy, Pillow and
an inference runtime.
"""

__version__ = "0.1.0"

#: Default class order everywhere (ISIC 2017 Part 3). A bundle's manifest overrides it.
ISIC2017_CLASSES: tuple[str, ...] = ("MEL", "NV", "SK")

#: The class the clinical layer refers on (a bundle's operating point may name another).
MELANOMA_CLASS: str = ISIC2017_CLASSES[0]

#: Default SimAM lambda (the paper's). Recorded in checkpoints, the ONNX node and the manifest, so
#: a model trained with another value keeps it; this is only the default for new models.
SIMAM_LAMBDA: float = 1e-4

__all__ = ["__version__", "ISIC2017_CLASSES", "MELANOMA_CLASS", "SIMAM_LAMBDA"]
