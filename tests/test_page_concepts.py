"""The Concepts page's logic through AppTest, on the tank demo's shortcut detector (64 px: fast): eight cards with
their shares in words and maps, what speaks against apart, a card opening its sub-concepts one layer down, the box
and the groups switch changing the ranking, a second model side by side, an error where the cards would be, its
choices in the URL; and the page's pure helpers (`concepts_view`). The walk a person takes, with the reference
crops on the default model, is tests/test_concepts_browser.py."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_own_models_pages import uploaded_tiny_model
from torch import nn

from cnnvis_engine.models import offer_model, withdraw_model, wrap_module
from cnnvis_ui import concepts_view, state

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "concepts.py")
pytestmark = pytest.mark.usefixtures("fresh_caches", "one_torch_thread")
CARD = re.compile(r"\*\*(\d)\. (Channel|Group) (\d+)\*\* — (carries .+? of 'tank' (here|in the box))")


def page(**choices: object) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=240)
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = "tanks_shortcut", "demo"
    at.session_state[state.CONCEPT_REFERENCE] = False  # the crops are the browser test's (the default model's)
    for key, value in choices.items():
        at.session_state[key] = value
    return at.run()


def cards(at: AppTest) -> list[tuple[str, ...]]:
    return [match.groups() for m in at.markdown if (match := CARD.match(m.value))]


def test_eight_cards_with_shares_maps_and_what_speaks_against():
    at = page()
    assert not at.exception, at.exception
    found = cards(at)
    assert [int(rank) for rank, *_ in found] == list(range(1, 9))
    assert all(kind == "Channel" and where == "here" for _, kind, _, _, where in found)
    assert any("Speaks against 'tank' here" in m.value and "channel " in m.value for m in at.markdown)
    assert len(at.image) >= 9  # the picture, and each card's map
    assert {b.label for b in at.button} >= {"What it draws on ↓"}
    assert {d.label for d in at.get("download_button")} == {"Report as PNG", "Report as HTML"}
    assert state.url_params().get("concept_units") is None  # defaults stay out of the URL


def test_a_card_opens_its_sub_concepts_one_layer_down():
    at = page()
    channel = int(cards(at)[0][2])
    at.button(key="concept-card-1-open").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.CONCEPT_OPEN] == channel
    assert f"What channel {channel} of `se` draws on" in [s.value for s in at.subheader]
    assert any("block4.1" in c.value for c in at.caption)  # the SE block's input block
    assert len(cards(at)) > 8  # the sub-concepts' cards below the eight
    at.button(key="concepts-close").click().run()
    assert at.session_state[state.CONCEPT_OPEN] is None


def test_a_box_and_the_groups_switch_change_the_ranking():
    whole = [channel for _, _, channel, _, _ in cards(page())]
    boxed = cards(page(**{state.CONCEPT_BOX: "0,0,40,40"}))
    assert all(where == "in the box" for *_, where in boxed)
    assert [channel for _, _, channel, _, _ in boxed] != whole
    grouped = cards(page(**{state.CONCEPT_UNITS: "groups"}))
    assert grouped and all(kind == "Group" for _, kind, _, _, _ in grouped)


def test_a_second_model_side_by_side():
    at = page(**{state.CONCEPT_COMPARE: "tanks_clean:demo"})
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert list(table.columns) == ["Rank", "tanks_shortcut (`se`)", "tanks_clean (`se`)"]
    assert table.iloc[0, 1].startswith("Channel ") and table.iloc[0, 2].startswith("Channel ")


def test_a_layer_that_is_no_map_shows_the_engines_sentence_where_the_cards_would_be():
    at = page(**{state.LAYER: "fc"})
    assert not at.exception, at.exception
    assert not cards(at)
    errors = [e.value.replace("\\", "") for e in at.error]
    assert len(errors) == 1 and "'fc'" in errors[0] and "not a map" in errors[0], errors


def test_a_linked_channel_the_layer_lacks_says_so():
    at = page(**{state.CONCEPT_OPEN: 999})
    assert not at.exception, at.exception
    assert any("has no channel 999" in i.value for i in at.info)


# ----- the pure helpers ----------------------------------------------------------------------------------------
def test_share_words_boxes_and_crops():
    assert concepts_view.share_words(0.18, "tabby cat (class 281)") == "carries 18\u00a0% of 'tabby cat' here"
    assert concepts_view.share_words(0.004, "tank", region=True) == "carries under 1\u00a0% of 'tank' in the box"
    assert concepts_view.share_words(-0.5, "tank").startswith("speaks against 'tank' here: 50\u00a0%")
    assert concepts_view.parse_box("10,20,60,80") == (10, 20, 60, 80)
    for bad in ("60,20,10,80", "1,2,3", "0,0,0,0", "0,0,101,50", "a,b,c,d"):
        with pytest.raises(ValueError):
            concepts_view.parse_box(bad)
    assert concepts_view.box_text((0, 0, 100, 100)) == "" and concepts_view.box_pixels((50, 0, 100, 50), (64, 32)) == (
        16.0,
        0.0,
        32.0,
        32.0,
    )
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:32, :32] = 200
    piece = concepts_view.crop(picture, (0, 0, 32, 32))
    assert piece.shape == (concepts_view.CROP_SIDE, concepts_view.CROP_SIDE, 3) and piece.min() == 200
    boxed = concepts_view.draw_box(picture, (25, 25, 75, 75))
    assert (boxed != picture).any() and (boxed[40, 40] == picture[40, 40]).all()  # the outline only


def test_the_report_holds_the_picture_each_cards_map_and_its_words():
    from cnnvis_engine import Explainer, load_model
    from cnnvis_engine.report import ReportStamp, render_report_html, render_report_png
    from cnnvis_engine.samples import sample_path
    from cnnvis_ui.panels import report_panels

    result = Explainer(load_model("tanks_shortcut", "demo")).concepts(str(sample_path("cat")), target=1)
    features = {int(c): np.full((64, 64, 3), 90, np.uint8) for c in result.channels[:8]}
    crops = {int(c): ((np.zeros((96, 96, 3), np.uint8),) * 2, ("cat", "coffee")) for c in result.channels[:8]}
    made = concepts_view.concept_cards(result, "jet", 0.5, features, crops)
    views = concepts_view.report_views(result, made, "Cat")
    assert len(views) == 1 + 3 * len(made) and views[0].title == "Input: Cat"
    stamp = ReportStamp(model="tanks_shortcut", weights="demo", layer=result.layer, target=result.target_name)
    html = render_report_html(report_panels(views), stamp)
    text = unescape(html)  # the report escapes every text (Jinja2: ' as &#39;); read it back as a person would
    assert made[0].words in text and "what channel" in text and "cat, coffee" in text
    png = render_report_png(report_panels(views), stamp)
    assert png.startswith(b"\x89PNG")


@pytest.fixture
def served():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)
    )
    spec = offer_model(wrap_module(module, name="ServedNet", labels=["a", "b", "c"], input_size=(32, 32)))
    yield spec
    withdraw_model(spec.name)


def test_a_served_model_gets_its_cards_and_an_uploaded_torchscript_one_the_engines_sentence(served):
    at = AppTest.from_file(PAGE, default_timeout=240)
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = served.name, "yours"
    at.session_state[state.CONCEPT_REFERENCE] = False
    at.run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("**1. Channel ") for m in at.markdown)
    assert any("ServedNet" in m.value for m in at.markdown)
    at = AppTest.from_file(PAGE, default_timeout=240)
    at.session_state[state.USER_MODEL] = uploaded_tiny_model()
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = state.USER_MODEL_CHOICE, "file"
    at.run()
    assert not at.exception, at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert len(errors) == 1 and "no concepts to show" in errors[0], errors  # its layers run inside compiled code
