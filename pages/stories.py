"""Stories: three tales from the article told with small real models trained here — the tanks and the weather,
a U-Net that finds salt in seismic images, and a robot's obstacle detector with its blind spots."""

import numpy as np
import streamlit as st

from cnnvis_ui import audit, choices, concepts_compute, panels, scale, share, state, stories, story_data
from cnnvis_ui.panels import PanelView

NETS = {"tanks_shortcut": "Biased-photos detector", "tanks_clean": "Fair-photos detector"}


def show(key: str, title: str, picture, caption: str = "", note: str = "") -> None:
    panels.draw(PanelView(key=f"story-{key}", title=title, picture=picture, caption=caption, note=note), height=260)


def tanks() -> None:
    st.markdown(
        "A legend opens the article: an army trained a network to spot camouflaged tanks. It was perfect on its own "
        "photos and useless in the field — every tank photo had been taken on a sunny day, every empty one under "
        "clouds, so it had learned the weather. We trained the same small network twice on drawn field scenes: once "
        "on such **biased photos**, once on **fair photos** where sun and clouds come with and without tanks alike."
    )
    scores = story_data.tank_scores()
    st.subheader("1 · Both detectors ace photos like the ones they learned from")
    cols = st.columns(4)
    for col, p in zip(cols, story_data.story_pictures("tanks")):
        biased_kind = p.truth["tank"] == p.truth["sunny"]  # sunny tank or cloudy empty field
        with col:
            show(
                p.key,
                p.title,
                stories.enlarge(stories.image_array(p)),
                "in both training sets" if biased_kind else "only in the fair training set",
            )
    a, b = st.columns(2)
    a.metric(f"{NETS['tanks_shortcut']}, on 200 new biased photos", f"{scores['tanks_shortcut']['shortcut']:.0%}")
    b.metric(f"{NETS['tanks_clean']}, on 200 new fair photos", f"{scores['tanks_clean']['clean']:.0%}")

    st.subheader("2 · Change the weather: one of them collapses")
    st.markdown(
        "Now tanks stand under clouds and empty fields lie in the sun. Each detector's belief that there is a tank:"
    )
    photos = story_data.story_pictures("tanks")
    st.dataframe(
        {"Photo": [p.title for p in photos]}
        | {
            title: [story_data.story_probabilities(str(p.path), model)["tank"] for p in photos]
            for model, title in NETS.items()
        },
        column_config={
            n: st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0) for n in NETS.values()
        },
        hide_index=True,
        key="story-tank-table",
    )
    a, b, c = st.columns(3)
    a.metric("Biased detector, 200 photos with the weather reversed", f"{scores['tanks_shortcut']['reversed']:.0%}")
    b.metric(
        "Biased detector, 200 photos with random weather",
        f"{scores['tanks_shortcut']['clean']:.0%}",
        help="50% is a coin toss.",
    )
    c.metric("Fair detector, 200 photos with the weather reversed", f"{scores['tanks_clean']['reversed']:.0%}")

    st.subheader("3 · Grad-CAM shows what each one was looking at")
    names = {p.key: p.title for p in story_data.story_pictures("tanks")}
    st.segmented_control(
        "Photo", list(names), format_func=names.get, required=True, **state.bound(state.TANK_PICTURE, list(names))
    )
    p = stories.picture("tanks", state.get(state.TANK_PICTURE))
    shares = story_data.tank_cam_shares()
    st.toggle(scale.TOGGLE_LABEL, **state.bound(state.TANK_SHARED_SCALE), help=scale.TOGGLE_HELP)
    same_scale = state.get(state.TANK_SHARED_SCALE)
    found = {model: story_data.story_explanation(str(p.path), model, ("class", 1)) for model in NETS}
    shared = scale.SharedScale.over(scale.triples(ex["gradcam"] for ex in found.values())) if same_scale else None
    cols = st.columns(2)
    for col, model in zip(cols, NETS):
        ex = found[model]
        flat = ex["gradcam"].meta.get("flat", False)
        inside = (
            stories.map_share(ex["gradcam"].map, stories.box_region(ex.image.shape[:2], p.truth["box"]))
            if p.truth["box"]
            else None
        )
        caption = f"Grad-CAM for “tank” at layer {ex.layer}"
        if inside is not None and not flat:
            caption += f" · {inside:.0%} of it inside the tank's box (white)"
        values = shared.values("gradcam", ex["gradcam"].raw, ex["gradcam"].map) if shared is not None else None
        if values is not None:
            caption += f" · {shared.caption('gradcam')}"
        with col:
            show(
                f"tank-{model}",
                NETS[model],
                stories.gradcam_overlay(ex, box=p.truth["box"], values=values),
                caption,
                "Empty: this network found no evidence of a tank anywhere in this photo." if flat else "",
            )
    st.markdown(
        f"Over 40 new tank photos, **{shares['tanks_clean']:.0%}** of the fair detector's Grad-CAM falls on the tank, "
        f"but only **{shares['tanks_shortcut']:.0%}** of the biased one's: it spreads over sky and grass — the light. "
        "Its accuracy alone never showed this; a look at *where* it looks does."
    )
    concepts_step()
    audit_step()


def concepts_step() -> None:
    st.subheader("4 · Which concepts does each one rest on?")
    st.markdown(
        "Each detector's **top concept for “tank”**: the channel of its last layer that carries most of the "
        "“tank” score over 24 new tank photos (found by the engine, never picked by hand), and the parts of 48 new "
        "photos, sunny and cloudy, with and without tanks, that excite it most."
    )
    cols = st.columns(2)
    for col, model in zip(cols, NETS):
        with st.spinner("Finding each detector's top concept…", show_time=True):
            places, crops = concepts_compute.story_concepts(model)
        count = len(places.crops)
        caption = (
            f"Channel {places.channel} of {places.layer} · {places.share:.0%} of “tank” on average · of its {count} "
            f"best crops, {round(places.on_sky * count)} lie on the sky and {round(places.on_tank * count)} on the tank"
        )
        with col:
            show(f"concepts-{model}", NETS[model], np.concatenate(list(crops[:6]), axis=1), caption)
    shortcut, fair = (concepts_compute.story_concepts(model)[0] for model in NETS)
    st.markdown(
        f"The biased detector's top concept fires on the **sky** ({shortcut.on_sky:.0%} of its best crops, "
        f"{shortcut.on_tank:.0%} on a tank): it learned the sunny weather. The fair detector's fires on the **tank** "
        f"({fair.on_tank:.0%} of its best crops, {fair.on_sky:.0%} on the sky). The Concepts page asks the same of "
        "any model and picture."
    )


def audit_step() -> None:
    st.subheader("5 · Find it without knowing where to look")
    st.markdown(
        "Steps 2 and 3 worked because someone already suspected the weather. An **audit** needs no suspicion: it "
        "explains every photo of a set, groups each class's maps by how alike they are, and flags the groups whose "
        "maps lie off the tank or whose answers are far better than the rest of their class's, however large the "
        "group (see the Audit page). Here: 120 new photos, sun and clouds at random."
    )
    for col, model in zip(st.columns(2), NETS):
        found = audit.story_audit(model)
        with col, st.container(border=True, key=f"story-audit-{model}"):
            st.markdown(f"**{NETS[model]}**")
            if not found["flagged"]:
                st.success(
                    f"Nothing flagged in {found['pictures']} photos: no group's maps or answers point at a "
                    f"shortcut (highest suspicion {found['highest']:.2f}, flagged from 0.40)."
                )
            for f in found["flagged"]:
                st.markdown(f":red[**Flagged**] · {f['sentence']} **Their photos: {f['weather']}.**")
                for c, picture, caption in zip(st.columns(4), f["pictures"], ["mean map", "", "", ""]):
                    c.image(picture, caption=caption or None, width="stretch")
    st.markdown(
        "The biased detector's classes split by the weather — the audit found the shortcut without being told to "
        "look at the sky. The fair one's do not."
    )


def salt() -> None:
    st.markdown(
        "Geologists look for salt in seismic images: the rock layers show as stripes, and a salt body is where the "
        "stripes stop. The article's U-Net marks salt pixel by pixel. Ours is a small U-Net trained on drawn sections."
    )
    names = {p.key: p.title for p in story_data.story_pictures("salt")}
    st.segmented_control(
        "Section", list(names), format_func=names.get, required=True, **state.bound(state.SALT_PICTURE, list(names))
    )
    p = stories.picture("salt", state.get(state.SALT_PICTURE))
    image = stories.image_array(p)
    predicted = story_data.salt_prediction(str(p.path))
    truth = story_data.story_mask(str(p.mask_path))
    cols = st.columns(3)
    with cols[0]:
        st.markdown("**1 · A seismic section**")
        show("salt-input", p.title, stories.enlarge(image), "64×64, as the U-Net sees it")
    with cols[1]:
        st.markdown("**2 · The U-Net's answer**")
        show(
            "salt-mask",
            "Predicted salt (red), true outline (yellow)",
            stories.mask_overlay(image, predicted, truth),
            f"Overlap with the truth (IoU) {stories.iou(predicted, truth):.0%}; on 100 new sections {story_data.salt_iou():.0%}",
        )
    with cols[2]:
        st.markdown("**3 · Grad-CAM for “salt”**")
        layers = choices.SALT_LAYERS
        st.segmented_control(
            "Layer", list(layers), format_func=layers.get, required=True, **state.bound(state.SALT_LAYER, list(layers))
        )
        layer = state.get(state.SALT_LAYER)
        ex = story_data.story_explanation(str(p.path), "salt_unet", ("segment", 1), layer)
        show(
            "salt-cam",
            "What made these pixels salt",
            stories.gradcam_overlay(ex),
            f"{stories.map_share(ex['gradcam'].map, predicted):.0%} of Grad-CAM inside the predicted salt; "
            f"{story_data.salt_cam_share(layer):.0%} on new sections at this layer",
        )
    st.markdown(
        "For a segmentation model the target is a region: the “salt” score summed over the pixels predicted as salt. "
        "Its Grad-CAM sits on the salt body itself — the U-Net uses the salt's own chaotic texture, not something "
        "elsewhere in the section."
    )


def robot() -> None:
    st.markdown(
        "The article's last model gives a robot long-range obstacle perception: many yes/no outputs, one per cell of "
        "the floor ahead. Ours has 5 directions × 5 distances = 25 outputs, trained on drawn views of a tiled room."
    )
    views = {p.key: p.title for p in story_data.story_pictures("robot")}
    st.subheader("1 · What the robot sees, and its 25 answers")
    offered = choices.robot_views()
    st.segmented_control(
        "View", offered, format_func=views.get, required=True, **state.bound(state.ROBOT_PICTURE, offered)
    )
    p = stories.picture("robot", state.get(state.ROBOT_PICTURE))
    answers = story_data.robot_answers(str(p.path))
    a, b = st.columns([2, 3])
    with a:
        show("robot-input", p.title, stories.enlarge(stories.image_array(p)))
    with b:
        st.markdown("**Answers** — far at the top, near at the bottom; true obstacles outlined in green")
        st.plotly_chart(
            stories.answer_grid(answers, p.truth["obstacles"]), key="story-robot-grid", config={"displayModeBar": False}
        )

    st.subheader("2 · Ask why: Grad-CAM for a group of outputs")
    st.markdown(
        "With many outputs, the target is their sum — all of them (the article's *regression=True*) or a group. "
        "**Grad-CAM** weighs each feature channel by its average gradient, so it shows what the network treats as "
        f"obstacle evidence anywhere in the view. We take it at `{stories.ROBOT_LAYER}`: at the last block it comes out "
        "empty, because the dense layer after it weighs every position differently and the averages cancel. "
        "**LayerCAM** keeps the gradient at each position, so it shows which spots feed the chosen group."
    )
    groups = choices.ROBOT_GROUPS
    st.segmented_control(
        "Outputs", list(groups), format_func=groups.get, required=True, **state.bound(state.ROBOT_GROUP, list(groups))
    )
    kind = state.get(state.ROBOT_GROUP)
    if state.get(state.ROBOT_DIRECTION) is None:  # until one is chosen: the direction of the view's first obstacle
        state.put(state.ROBOT_DIRECTION, choices.ROBOT_DIRECTIONS[stories.first_direction(p.truth["obstacles"])])
    c1, c2, _ = st.columns(3)
    directions, distances = list(choices.ROBOT_DIRECTIONS), list(choices.ROBOT_DISTANCES)
    c1.selectbox(
        "Direction", directions, **state.bound(state.ROBOT_DIRECTION, directions), disabled=kind != "direction"
    )
    c2.selectbox("Distance", distances, **state.bound(state.ROBOT_DISTANCE, distances), disabled=kind != "distance")
    direction, distance = state.get(state.ROBOT_DIRECTION), state.get(state.ROBOT_DISTANCE)
    outputs, label = stories.group_outputs(kind, direction, distance, answers)
    ex = story_data.story_explanation(
        str(p.path), "robot_perception", ("outputs", outputs, label), stories.ROBOT_LAYER, ("gradcam", "layercam")
    )
    cols = st.columns(3)
    for col, method in zip(cols, ("gradcam", "layercam")):
        with col:
            show(
                f"robot-{method}",
                f"{'Grad-CAM' if method == 'gradcam' else 'LayerCAM'} for {label}",
                stories.gradcam_overlay(ex, method=method),
                f"layer {ex.layer}",
                "Empty: nothing in the view raises these outputs." if not ex[method].map.any() else "",
            )

    st.subheader("3 · Where it fails")
    scores = story_data.robot_scores()
    left, right = st.columns(2)
    plain, camo, shadow = (stories.picture("robot", k) for k in ("robot_box", "robot_floor_coloured", "robot_shadow"))
    with left:
        show("robot_floor_coloured", camo.title, stories.enlarge(stories.image_array(camo)))
        st.plotly_chart(
            stories.answer_grid(story_data.robot_answers(str(camo.path)), camo.truth["obstacles"], height=240),
            key="story-robot_floor_coloured-grid",
            config={"displayModeBar": False},
        )
        cell = tuple(stories.ROBOT_OUTPUT_NAMES.index(n) for n in camo.truth["obstacles"])
        pair = [
            story_data.story_explanation(
                str(q.path), "robot_perception", ("outputs", cell, "its cell"), stories.ROBOT_LAYER
            )
            for q in (plain, camo)
        ]
        found = story_data.robot_answers(str(plain.path))[cell[0]]
        show(
            "robot_floor_coloured-cam",
            "Grad-CAM for its cell: ordinary colour (left), floor colour (right)",
            stories.side_by_side_on_one_scale(pair),
            f"one colour scale · layer {stories.ROBOT_LAYER} · in its ordinary colour the robot sees it ({found:.0%})",
        )
    with right:
        answers = story_data.robot_answers(str(shadow.path))
        show("robot_shadow", shadow.title, stories.enlarge(stories.image_array(shadow)))
        st.plotly_chart(
            stories.answer_grid(answers, shadow.truth["obstacles"], height=240),
            key="story-robot_shadow-grid",
            config={"displayModeBar": False},
        )
        ex = story_data.story_explanation(
            str(shadow.path),
            "robot_perception",
            ("outputs", stories.reported(answers) or None, "the outputs it switched on"),
            stories.ROBOT_LAYER,
        )
        show("robot_shadow-cam", f"Grad-CAM for {ex.target.label}", stories.gradcam_overlay(ex), f"layer {ex.layer}")
    st.markdown(
        f"On 60 new views with one obstacle, the robot finds **{scores['found_ordinary']:.0%}** of ordinary obstacles "
        f"but only **{scores['found_floor_coloured']:.0%}** of those coloured like the floor; a strong shadow alone "
        f"conjures up **{scores['false_obstacles_per_shadow_view']:.1f}** obstacles per view "
        f"(**{scores['false_obstacles_per_empty_view']:.2f}** in empty rooms). It learned “a patch that differs from the "
        "floor” — the article's two failures — and Grad-CAM shows it: the shadow lights up, the floor-coloured box does not."
    )


def render() -> None:
    st.title("Stories: why look inside a network?")
    told = choices.STORIES
    st.segmented_control(
        "Story", list(told), format_func=told.get, required=True, **state.bound(state.STORY, list(told))
    )
    {"tanks": tanks, "salt": salt, "robot": robot}[state.get(state.STORY)]()


share.ensure_entry()
render()
