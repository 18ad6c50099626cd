"""Library log lines a dsedge user cannot act on, silenced at their source logger (torch-free).

`torch.utils.cpp_extension` logs "No CUDA runtime is found, using CUDA_HOME=..."
as a warning whenever `torch.compile` imports it on a machine with a CUDA
toolkit folder but no GPU: a raw log line in the middle of `dsedge train`
(issue 26). It is filtered on that one logger, by that one message, so every
other torch warning still shows.
"""

from __future__ import annotations

import logging

#: (logger name, message prefix) of each library log line dropped.
QUIET = (("torch.utils.cpp_extension", "No CUDA runtime is found"),)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_logs() -> None:
    """Install the filters once (loggers are created on first use, so this works before torch is imported)."""
    for name, prefix in QUIET:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))
