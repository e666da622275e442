"""The Sanity test's outcome beside Explore's faithfulness scores (`cnnvis_ui.caveats`): words for an outcome,
and in AppTest, the test run on the Sanity page then named in Explore's table for that method only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_ui import caveats, state
from cnnvis_ui.text import plain

ROOT = Path(__file__).resolve().parent.parent


def steps(*values: float) -> list:
    return [SimpleNamespace(spearman=v) for v in (1.0, *values)]


def test_an_outcome_in_words():
    fell = caveats.outcome(steps(0.6, 0.3, 0.12), "cascading")
    assert fell.lowest == pytest.approx(0.12) and fell.depends
    assert fell.short() == "falls to 0.12: depends on the weights"
    assert fell.sentence("Grad-CAM").startswith(
        "Sanity: Grad-CAM's similarity to the trained map falls to 0.12 when all layers are random — it depends"
    )
    stayed = caveats.outcome(steps(0.9, 0.85, 0.8), "cascading")
    assert stayed.short() == "stays at 0.80: barely depends on the weights" and not stayed.depends
    one_layer = caveats.outcome(steps(0.9, -0.2, 0.7), "independent")  # the most damaging single layer
    assert one_layer.lowest == pytest.approx(-0.2) and "most important layer alone" in one_layer.sentence("CAM")


@pytest.mark.usefixtures("fresh_caches", "one_torch_thread")
def test_explore_names_the_sanity_outcome_beside_the_scores_of_the_method_tested():
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=240)
    at.session_state[state.SANITY_SECOND] = state.NO_METHOD  # Grad-CAM alone: half the work
    at.run().switch_page("pages/sanity.py").run()
    at.button(key="sanity-run").click().run()
    assert not at.exception and not at.error
    kept = at.session_state[state.SANITY_OUTCOMES]
    assert len(kept) == 1 and next(iter(kept))[-2:] == ("gradcam", "cascading")
    at.switch_page("pages/explore.py").run()
    at.toggle(key=state.widget(state.FAITHFULNESS)).set_value(True).run()
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    rows = dict(zip(table["Map"], table["Sanity test"]))
    lowest = next(iter(kept.values())).lowest
    assert rows["Grad-CAM"].endswith(f"{lowest:.2f}: depends on the weights")  # the trained default passes
    assert rows["CAM"] == rows["Saliency (vanilla)"] == caveats.NOT_RUN
    said = [m.value for m in at.markdown if m.value.startswith(plain("Sanity: Grad-CAM's similarity"))]
    assert len(said) == 1 and "when all layers are random" in said[0]
