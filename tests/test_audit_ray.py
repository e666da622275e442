"""The audit on Ray Data (local mode, 2 workers) finds the same clusters as the local engine."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")  # a guard only: scripts/test.sh installs requirements-ray.txt, so CI runs this

from cnnvis_engine.audit import audit
from cnnvis_engine.demos.marked_shapes import shape_set, train_shape_model, write_shape_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_equals_local_engine(ray_local, tmp_path):
    bundle = train_shape_model(count=300, steps=150)
    shapes = shape_set(48, 9, marked_share=0.3)
    write_shape_folder(tmp_path, shapes)
    (tmp_path / "disc" / "readme.txt").write_text("not a picture")
    (tmp_path / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    seen = []
    local = audit(bundle, tmp_path, size=16, batch_size=8)
    distributed = audit(
        bundle,
        tmp_path,
        size=16,
        batch_size=8,
        engine="ray",
        workers=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (49, 49)
    np.testing.assert_array_equal(distributed.read, local.read)
    np.testing.assert_array_equal(distributed.predicted, local.predicted)
    np.testing.assert_allclose(distributed.maps.astype(np.float32), local.maps.astype(np.float32), atol=1e-4)
    assert [(c.label, c.members) for c in distributed.clusters] == [(c.label, c.members) for c in local.clusters]
    assert [c.suspicion for c in distributed.clusters] == pytest.approx([c.suspicion for c in local.clusters])
    assert (
        {s.path for s in distributed.skipped}
        == {s.path for s in local.skipped}
        == {"disc/readme.txt", "square/broken.png"}
    )
    assert ray.is_initialized()  # a Ray the caller started is left running
