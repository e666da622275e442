"""Adding a method is one class in one file: a method registered at test time is offered and drawn by Explore,
Compare, Sanity, the HTML report and the CLI with no other edit; and the CLI's panel PNGs are the dashboard's.

The toy is the class the README's "Adding a method" section shows: input × gradient (Shrikumar et al. 2016).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from cnnvis.cli import main
from cnnvis_engine import METHODS
from cnnvis_engine.methods import Method, MethodInputs, MethodOutput, MethodResult, register_method
from cnnvis_engine.methods.base import normalize
from cnnvis_engine.samples import sample_path
from cnnvis_ui import panels, state

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD, COMPARE, SANITY = (str(ROOT / p) for p in ("dashboard.py", "pages/compare.py", "pages/sanity.py"))
TITLE = "Input × gradient"

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def toy():
    """The README's example method, registered for the test only."""

    @register_method
    class InputTimesGradient(Method):
        """Input × gradient (Shrikumar et al. 2016): raw = |Σ_c x_c · d score / d x_c| (H, W)."""

        name = "input_x_gradient"
        title = TITLE
        summary = "Each pixel's value times how strongly it sways the score."
        paper = "https://arxiv.org/abs/1605.01713"
        needs = frozenset({"input_gradient"})
        layer = "none"
        drawing = "heatmap"

        @classmethod
        def caption(cls, result: MethodResult, target: str) -> str:
            return f"pixel × gradient for {target}"

        def compute(self, inputs: MethodInputs) -> MethodOutput:
            raw = (inputs.x * inputs.input_gradient).sum(dim=1).abs()
            return MethodOutput(map=normalize(raw), raw=raw)

    yield InputTimesGradient.name
    del METHODS[InputTimesGradient.name]


def bold_titles(at: AppTest) -> set[str]:
    return {m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")}


def capture_drawn(monkeypatch) -> list[panels.PanelView]:
    drawn: list[panels.PanelView] = []
    original = panels.draw
    monkeypatch.setattr(panels, "draw", lambda view, **kw: (drawn.append(view), original(view, **kw))[1])
    return drawn


def test_explore_offers_and_draws_it_and_its_html_report_has_it(toy, monkeypatch):
    reports = []
    monkeypatch.setattr(panels, "report_buttons", lambda views, stamp, **kw: reports.append((views, stamp)))
    at = AppTest.from_file(DASHBOARD, default_timeout=90).run()
    pills = next(g for g in at.get("button_group") if g.key == state.widget(state.EXTRA_METHODS))
    assert TITLE in pills.options  # no timer: it runs no extra forward passes, so it is offered with the quick ones
    assert pills.options.index(TITLE) < pills.options.index("Score-CAM :material/timer:")
    pills.set_value([toy]).run()
    assert not at.exception and not at.error
    assert TITLE in bold_titles(at)
    assert any(c.value == "pixel × gradient for Egyptian cat (class 285)" for c in at.caption)
    views, stamp = reports[-1]
    page = panels._report_html(views, stamp).decode()
    assert TITLE in page and "pixel × gradient for Egyptian cat" in page


def test_compare_offers_it_and_draws_every_cell(toy):
    at = AppTest.from_file(COMPARE, default_timeout=90)
    at.session_state[state.COMPARE_METHOD] = toy
    at.run()
    assert not at.exception and not at.error
    assert TITLE in at.selectbox(key=state.widget(state.COMPARE_METHOD)).options
    assert len(at.get("plotly_chart")) == 3  # one model × the three default images


def test_sanity_offers_it_and_runs_the_test_on_it(toy):
    at = AppTest.from_file(SANITY, default_timeout=120)
    at.session_state[state.SANITY_METHOD] = toy
    at.session_state[state.SANITY_SECOND] = state.NO_METHOD
    at.run()
    assert TITLE in at.selectbox(key=state.widget(state.SANITY_METHOD)).options
    at.button(key="sanity-run").click().run()
    assert not at.exception and not at.error
    chart = next(c for c in at.get("plotly_chart") if c.key == "sanity-chart")
    assert [trace["name"] for trace in json.loads(chart.proto.spec)["data"]] == [TITLE]


def cli_report(tmp_path: Path, methods: str) -> Path:
    """The CLI's report of the cat on the default model with `methods`; returns its folder."""
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    shutil.copy(sample_path("cat"), images / "cat.jpg")
    command = ["report", "--model", "efficientnet_lite0", "--images", str(images), "--out", str(out)]
    assert main([*command, "--methods", methods, "--device", "cpu", "--steps", "2"]) == 0
    return out


def test_the_cli_reports_it(toy, tmp_path):
    out = cli_report(tmp_path, f"gradcam,{toy}")
    assert TITLE in (out / "cat.html").read_text(encoding="utf-8")
    assert (out / f"cat.{toy}.png").stat().st_size > 1000


def test_the_cli_panel_pngs_equal_the_dashboards(tmp_path, monkeypatch):
    """Grad-CAM and saliency of the cat on the default model: the CLI's panel files and the Explore page's panel
    downloads are the same bytes (same drawing, title and caption). Both compute with one torch thread: another
    thread count sums the convolutions in another order, and a last-bit difference can round a pixel the other way."""
    monkeypatch.setenv("CNNVIS_TORCH_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        drawn = capture_drawn(monkeypatch)
        at = AppTest.from_file(DASHBOARD, default_timeout=90).run()
        assert not at.exception
        by_method = {view.method: view for view in drawn if view.method}
        out = cli_report(tmp_path, "gradcam,saliency")
    finally:
        torch.set_num_threads(threads)
    for method in ("gradcam", "saliency"):
        assert (out / f"cat.{method}.png").read_bytes() == panels.panel_png(by_method[method]), method
