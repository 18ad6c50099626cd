"""Library log lines a user cannot act on are dropped at their logger, and nothing else (issue 26)."""

from __future__ import annotations

import logging

import pytest

from dsedge.utils.logs import quiet_library_logs


def test_the_no_cuda_runtime_line_is_dropped_and_other_torch_warnings_kept(caplog: pytest.LogCaptureFixture) -> None:
    quiet_library_logs()
    quiet_library_logs()  # idempotent: one filter
    logger = logging.getLogger("torch.utils.cpp_extension")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        logger.warning("Some other cpp_extension warning")
    assert [r.getMessage() for r in caplog.records] == ["Some other cpp_extension warning"]


def test_the_cli_installs_the_filter() -> None:
    import dsedge.cli as cli

    logging.getLogger("torch.utils.cpp_extension").filters.clear()
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert logging.getLogger("torch.utils.cpp_extension").filters
