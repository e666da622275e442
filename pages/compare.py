"""Compare: one method, several models (rows) × several images (columns) — the article's grid."""

import streamlit as st

from cnnvis_engine import METHODS, EngineError
from cnnvis_engine.report import ReportStamp
from cnnvis_ui import choices, context, controls, model_cache, panels, scale, share, state, typed_state, views
from cnnvis_ui.text import plain

# A link is held to the same counts (state.URL_PARAMS).
MAX_IMAGES, MAX_MODELS = state.domain(state.COMPARE_IMAGES).max_items, state.domain(state.COMPARE_MODELS).max_items
USER_KEY = f"{state.USER_MODEL_CHOICE}:file"


def model_label(key: str) -> str:
    name, weights = row_title(key)
    return f"{name} · {weights}"


def row_title(key: str) -> tuple[str, str]:
    """A model key's name and weights, in words; the uploaded model is "Your model: <file>"."""
    name, _, weights = key.rpartition(":")  # names may hold ":" (timm:resnet18d, net.py:build)
    if name == state.USER_MODEL_CHOICE:
        user = typed_state.user_model()
        return f"Your model: {user['filename']}" if user else "Your model", model_cache.WEIGHTS_LABELS["file"]
    return model_cache.model_title(name), model_cache.WEIGHTS_LABELS.get(weights, weights)


def choose(images: list[str]) -> tuple[str, list[str], list[str]]:
    """The method, image refs and model keys, from widgets seeded by their plain keys."""
    method_column, images_column = st.columns([1, 2])
    offered = choices.compare_methods()  # one map per cell
    method_column.selectbox(
        "Method",
        offered,
        **state.bound(state.COMPARE_METHOD, offered),
        format_func=controls.method_label,
    )
    state.put(state.COMPARE_IMAGES, state.valid_subset(state.COMPARE_IMAGES, images, images[:3]))
    images_column.multiselect(
        "Images (columns)",
        images,
        **state.bound(state.COMPARE_IMAGES),
        format_func=context.image_title,
        max_selections=MAX_IMAGES,
    )
    st.toggle(
        "Offer random weights too",
        **state.bound(state.COMPARE_RANDOM),
        help="Models whose pretrained weights cannot be had here can still be compared "
        "untrained. Their maps show what the architecture responds to, not what it learned.",
    )
    options = model_cache.comparable_models(state.get(state.COMPARE_RANDOM))
    if state.get(state.USER_MODEL):  # the model uploaded in this session, like any other
        options.append(USER_KEY)
    current = context.current_model().key
    state.put(
        state.COMPARE_MODELS,
        state.valid_subset(state.COMPARE_MODELS, options, [k for k in options if k == current] or options[:1]),
    )
    st.multiselect(
        "Models (rows)",
        options,
        **state.bound(state.COMPARE_MODELS),
        format_func=model_label,
        max_selections=MAX_MODELS,
        help="Models whose weights are on this server are offered (pretrained ones once downloaded, e.g. by "
        "choosing them on Explore), plus random weights when you switch them on. A model loads only when its row "
        "is drawn.",
    )
    return state.get(state.COMPARE_METHOD), state.get(state.COMPARE_IMAGES), state.get(state.COMPARE_MODELS)


def compute_grid(method: str, images: list[context.LoadedImage], models: list[str]) -> dict:
    """Every cell's explanation (or error text); models are loaded one at a time, with a progress bar."""
    cells, total = {}, len(models) * len(images)
    bar = st.progress(0.0)
    for i, key in enumerate(models):
        for j, image in enumerate(images):
            bar.progress(
                (i * len(images) + j) / total,
                text=f"{model_label(key)} on {image.title} ({i + 1} of {len(models)} models)",
            )
            try:
                cells[key, image.ref] = context.explain_on(key, image, method)
            except EngineError as error:
                cells[key, image.ref] = str(error)
    bar.empty()
    return cells


def draw_grid(
    method: str,
    cells: dict,
    images: list[context.LoadedImage],
    models: list[str],
    display: controls.Display,
    same_scale: bool = False,
) -> list:
    drawn = [cell[method] for cell in cells.values() if not isinstance(cell, str)]
    shared = scale.SharedScale.over(scale.triples(drawn), display.colormap, display.opacity) if same_scale else None
    widths = [1.4] + [2] * len(images)
    for column, image in zip(st.columns(widths)[1:], images):
        column.markdown(f"**{plain(image.title)}**")
    report = []
    for i, key in enumerate(models):
        row = st.columns(widths)
        name, weights = row_title(key)
        row[0].markdown(f"**{plain(name)}**  \n:gray[{weights}]")
        for j, image in enumerate(images):
            cell = cells[key, image.ref]
            with row[j + 1]:
                if isinstance(cell, str):
                    panels.message(f"{name}", cell, key=f"cmp-{i}-{j}")
                    continue
                top = cell.predictions[0]
                view = views.method_views(cell, display.colormap, display.opacity)[0]
                layer = cell[method].layer
                view = views.relabel(
                    view,
                    key=f"cmp-{i}-{j}",
                    title=f"{top.name} · {views.percent(top.probability)}",
                    caption=f"{image.title} · layer {layer}" if layer else image.title,
                    method=None,
                )
                view = shared.view(view, cell[method], cell.image) if shared is not None else view
                panels.draw(view, height=240, file_stem="cnnvis-compare")
                report.append(
                    views.relabel(
                        view,
                        title=f"{name} ({weights}) · {image.title}",
                        caption=f"predicted {top.name} ({views.percent(top.probability)}) · {view.caption}",
                    )
                )
    return report


def render() -> None:
    st.title("Compare models")
    st.caption(
        "One method, several models (rows) × several images (columns). Each cell explains that model's own top "
        "prediction at its automatic layer; the sidebar's layer and class apply to Explore and Layers only."
    )
    images = state.compare_images()
    method, image_refs, models = choose(images)
    display = controls.display_settings(saliency=False)
    same_scale = scale.toggle()
    if not image_refs or not models:
        st.info("Choose at least one image and one model.")
        return
    loaded = [context.load_image(ref) for ref in image_refs]
    cells = compute_grid(method, loaded, models)
    report = draw_grid(method, cells, loaded, models, display, same_scale)
    if report:
        stamp = ReportStamp(
            model=", ".join(model_label(k) for k in models),
            weights="see each panel",
            layer="automatic per model",
            target="each model's top prediction",
            image=", ".join(i.title for i in loaded),
            settings={
                "Method": METHODS[method].title,
                "Colormap": display.colormap,
                "Overlay opacity": f"{display.opacity:.2f}",
                "Colour scale": "shared by the maps" if same_scale else "each map its own",
            },
            title=f"cnnvis — {METHODS[method].title} compared",
        )
        panels.report_buttons(report, stamp, file_stem="cnnvis-compare")


share.ensure_entry()
render()
