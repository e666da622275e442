"""Each class analysed in its own process (issue 24): the same clusters, verdicts and layouts as one process."""

from __future__ import annotations

import numpy as np
import pytest

from cnnvis_engine.audit import audit
from cnnvis_engine.audit.analysis import ClassJob, analyse_class_job
from cnnvis_engine.audit.parallel import PARALLEL_MIN_MAPS, map_classes, workers_for
from cnnvis_engine.demos.marked_shapes import shape_set, train_shape_model, write_shape_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(n: int, seed: int) -> np.ndarray:
    """n 16×16 maps in two planted groups (a blob top-left or bottom-right, jittered), each summing to 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    corner = rng.integers(0, 2, n)
    cy, cx = (np.where(corner[:, None], 12.0, 4.0) + rng.normal(0, 1, (n, 2))).T
    maps = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 8) + 0.05 * rng.random((n, 16, 16))
    return (maps / maps.sum(axis=(1, 2), keepdims=True)).astype(np.float16)


def _job(label: str, n: int, seed: int) -> ClassJob:
    rng = np.random.default_rng(seed + 100)
    correct = rng.integers(0, 2, n).astype(float)
    return ClassJob(
        label, np.arange(n) + 1000 * seed, _blobs(n, seed), correct, np.full(n, np.nan), np.full(n, np.nan), 10, None, 0
    )


def test_how_many_workers():
    assert workers_for([10_000]) == 1  # one class: nothing to share
    assert workers_for([100, 100, 100]) == 1  # too few maps to pay for starting processes
    assert workers_for([100, 100], requested=4) == 2  # asked for: at most one per class
    assert workers_for([PARALLEL_MIN_MAPS] * 3) >= 1


def test_classes_in_processes_equal_classes_in_one_process():
    jobs = [_job(label, n, seed) for seed, (label, n) in enumerate((("a", 60), ("b", 90), ("c", 5)))]
    serial = map_classes(analyse_class_job, jobs, workers=1)
    spread = map_classes(analyse_class_job, jobs, workers=2)
    assert [view.label for view, _ in spread] == ["a", "b", "c"]
    for (view, clusters), (other_view, other_clusters) in zip(serial, spread):
        assert view.members == other_view.members
        np.testing.assert_array_equal(view.clusters, other_view.clusters)
        np.testing.assert_allclose(view.layout, other_view.layout, atol=1e-3)
        assert [(c.number, c.members, c.prototypes, c.flagged) for c in clusters] == [
            (c.number, c.members, c.prototypes, c.flagged) for c in other_clusters
        ]
        assert [c.suspicion for c in clusters] == pytest.approx([c.suspicion for c in other_clusters])
    assert len(serial[1][1]) >= 2  # the planted corners are told apart


def test_an_audit_with_parallel_classes_equals_the_serial_audit(tmp_path):
    bundle = train_shape_model(count=300, steps=150)
    write_shape_folder(tmp_path, shape_set(48, 9, marked_share=0.3))
    serial = audit(bundle, tmp_path, size=16, batch_size=16, analysis_workers=1)
    spread = audit(bundle, tmp_path, size=16, batch_size=16, analysis_workers=2)
    assert len(serial.classes) == 2  # disc and square: two classes, analysed in two processes
    assert [(c.label, c.members, c.flagged) for c in spread.clusters] == [
        (c.label, c.members, c.flagged) for c in serial.clusters
    ]
    assert [c.suspicion for c in spread.clusters] == pytest.approx([c.suspicion for c in serial.clusters])
    for label, view in serial.classes.items():
        np.testing.assert_allclose(spread.classes[label].layout, view.layout, atol=1e-3)
    assert spread.notes == serial.notes
