"""Shared fixtures: a synthetic mini ISIC 2017 tree, and the real data when the environment points at it.

Real-data tests find ISIC 2017 through $DSEDGE_ISIC2017 (set by .ci/run when
../shared/data exists) and the full-resolution images through
$DSEDGE_ISIC_FULLRES; they skip cleanly on machines without them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsedge.utils.logs import quiet_library_logs

quiet_library_logs()  # "No CUDA runtime is found" from torch.utils.cpp_extension during training tests


def pytest_unconfigure(config: pytest.Config) -> None:
    """Free torch's multiprocessing storage cache while torch is still whole.

    DataLoader workers leave `StorageWeakRef`s in `torch.multiprocessing.reductions.shared_cache`;
    left to interpreter teardown, their `__del__` ran after torch's modules were cleared and printed
    "Exception ignored in StorageWeakRef.__del__ ... AttributeError" at the end of `make test`.
    """
    import sys

    reductions = sys.modules.get("torch.multiprocessing.reductions")
    if reductions is not None:
        reductions.shared_cache.clear()
        # weak refs held elsewhere still die during teardown, after `torch` in torch/storage.py is
        # None: their cleanup then has nothing left to free, so a failure there is no error
        cls = reductions.StorageWeakRef
        original = cls.__del__

        def quiet_del(self) -> None:  # noqa: ANN001
            try:
                original(self)
            except (AttributeError, TypeError):
                pass

        cls.__del__ = quiet_del

TINY_COUNTS = {"train": (6, 8, 5), "val": (3, 4, 3)}  # MEL, NV, SK


def make_isic_tree(root: Path, counts: dict[str, tuple[int, int, int]] = TINY_COUNTS, size: int = 48, seed: int = 0) -> Path:
    """Write a tiny ISIC 2017 layout with random-but-class-tinted JPEGs (learnable by a few steps)."""
    rng = np.random.default_rng(seed)
    names = {"train": "Training", "val": "Validation", "test": "Test_v2"}
    idx = 0
    for split, (n_mel, n_nv, n_sk) in counts.items():
        img_dir = root / f"ISIC-2017_{names[split]}_Data"
        img_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for label, n in (("MEL", n_mel), ("NV", n_nv), ("SK", n_sk)):
            tint = {"MEL": (60, 30, 20), "NV": (170, 120, 100), "SK": (120, 160, 90)}[label]
            for _ in range(n):
                image_id = f"ISIC_{idx:07d}"
                idx += 1
                arr = np.clip(rng.normal(tint, 25, size=(size, size + 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(img_dir / f"{image_id}.jpg", quality=90)
                rows.append((image_id, float(label == "MEL"), float(label == "SK")))
        with open(root / f"ISIC-2017_{names[split]}_Part3_GroundTruth.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
            w.writerows(rows)
    return root


@pytest.fixture
def tiny_isic(tmp_path: Path) -> Path:
    """A fresh synthetic ISIC 2017 tree (train 19 / val 10 images, 48x56 px)."""
    return make_isic_tree(tmp_path / "isic")


@pytest.fixture(scope="session")
def tiny_isic_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tree, shared read-only across a session (for expensive fixtures built on it)."""
    return make_isic_tree(tmp_path_factory.mktemp("isic_shared") / "isic")


@pytest.fixture(scope="session")
def tiny_bundle_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(a 32 px ds_resnet50 bundle exported with a `cam` output, its checkpoint, another checkpoint of the
    same model with other weights), read-only: exports cost ~15 s each, and the QAT tests need all three."""
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.export.bundle import export_bundle
    from dsedge.models import create_model
    from dsedge.models.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("bundle_pair")
    meta = {"model": "ds_resnet50", "classes": ["MEL", "NV", "SK"], "model_kwargs": {},
            "preprocessing": PreprocessConfig.for_size(32).to_dict()}
    ckpts = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        ckpts.append(save_checkpoint(tmp / name, create_model("ds_resnet50").eval(), meta))
    bundle = export_bundle(ckpts[0], tmp / "bundle", parity_images=2, cam=True)
    return bundle, ckpts[0], ckpts[1]


@pytest.fixture(scope="session")
def isic_root() -> Path:
    """Real ISIC 2017 (train + val) from $DSEDGE_ISIC2017, or skip."""
    p = os.environ.get("DSEDGE_ISIC2017")
    if not p or not Path(p).is_dir():
        pytest.skip("real ISIC 2017 data not available (set DSEDGE_ISIC2017)")
    return Path(p)


@pytest.fixture(scope="session")
def fullres_dir() -> Path:
    """The 7 full-resolution ISIC images from $DSEDGE_ISIC_FULLRES, or skip."""
    p = os.environ.get("DSEDGE_ISIC_FULLRES")
    if not p or not Path(p).is_dir():
        pytest.skip("full-resolution ISIC images not available (set DSEDGE_ISIC_FULLRES)")
    return Path(p)
