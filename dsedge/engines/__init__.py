"""Backends behind one runner interface (see `dsedge.engines.base.Runner`).

Kept import-light: the torch and TensorRT runners are imported only when asked
for, so `dsedge.runtime` can use the ONNX Runtime / TensorRT runners without torch.
"""

from dsedge.engines.base import Runner, RunnerInfo

__all__ = ["Runner", "RunnerInfo"]
