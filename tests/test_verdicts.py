"""The faithfulness table's one-line verdict and caveat, and the CAM panel's note when it equals Grad-CAM."""

from __future__ import annotations

from types import SimpleNamespace

from cnnvis_engine import Explainer
from cnnvis_ui import charts, views


def score(deletion: float, insertion: float, drop: float) -> SimpleNamespace:
    return SimpleNamespace(
        deletion=SimpleNamespace(auc=deletion), insertion=SimpleNamespace(auc=insertion), average_drop=drop
    )


TITLES = {"gradcam": "Grad-CAM", "cam": "CAM", "guided_backprop": "Guided backprop"}


def test_the_verdict_names_the_best_and_warns_about_edge_maps():
    verdict = views.faithfulness_verdict(
        {"gradcam": score(0.2, 0.6, 0.3), "guided_backprop": score(0.1, 0.5, 0.6)}, TITLES
    )
    assert "Guided backprop does best by deletion" in verdict and "Grad-CAM does best by insertion" in verdict
    assert "Sanity page" in verdict and "random" in verdict
    plain = views.faithfulness_verdict({"gradcam": score(0.1, 0.7, 0.2), "cam": score(0.3, 0.5, 0.4)}, TITLES)
    assert plain == "Grad-CAM does best by every measure."
    assert views.faithfulness_verdict({}, TITLES) == ""


def test_identical_curves_are_drawn_distinguishably():
    same = SimpleNamespace(auc=0.3, fractions=[0, 0.5, 1], scores=[0.9, 0.4, 0.1])
    fig = charts.faithfulness_figure(
        {
            "Grad-CAM": SimpleNamespace(deletion=same, insertion=same),
            "CAM": SimpleNamespace(deletion=same, insertion=same),
        }
    )
    styles = {(trace.line.dash, trace.line.width) for trace in fig.data}
    assert len(styles) == 2  # same numbers, yet one solid and thick, one dashed


def test_cam_and_gradcam_at_the_pool_s_input_say_they_coincide(zoo, cat):
    explainer = Explainer(zoo("efficientnet_lite0"))
    at_pool = explainer.explain(cat, methods=["cam", "gradcam"], layer="bn2")
    assert "Same picture as Grad-CAM" in views.coincide_note(at_pool)
    earlier = explainer.explain(cat, methods=["cam", "gradcam"], layer="blocks.5")
    assert views.coincide_note(earlier) == ""


def test_reports_carry_the_faithfulness_numbers_and_curve():
    import numpy as np

    curve = SimpleNamespace(auc=0.25, scores=np.linspace(0.9, 0.0, 26), fractions=np.linspace(0, 1, 26))
    rows = views.scores_rows({"gradcam": SimpleNamespace(deletion=curve, insertion=curve, average_drop=0.3)}, TITLES)
    text = rows["Faithfulness of Grad-CAM"]
    assert "deletion AUC 0.25" in text and "average drop 30%" in text
    assert text.endswith("0.90, 0.72, 0.54, 0.36, 0.18, 0.00")


def test_the_maps_that_follow_edges_are_those_the_methods_declare():
    """The caveat's maps come from each method's `follows_edges`, as the verdict's own name list had them."""
    from cnnvis_engine import METHODS

    declared = {name for name, method in METHODS.items() if method.follows_edges}
    assert declared == {"guided_backprop", "guided_gradcam", "integrated_gradients", "smoothgrad"}
    titles = {"smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM"}
    verdict = views.faithfulness_verdict({"smoothgrad": score(0.1, 0.7, 0.2), "gradcam": score(0.3, 0.5, 0.4)}, titles)
    assert "SmoothGrad also follows the picture's edges" in verdict
