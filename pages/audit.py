"""Audit: find shortcuts in a whole picture set. Every picture of a folder is explained, each class's maps are
clustered (spectral relevance analysis, Lapuschkin et al. 2019), and groups whose maps or answers point at a
shortcut are flagged and shown first, each with a sentence saying why, whatever share of their class they are."""

from collections.abc import Callable

import streamlit as st

from cnnvis_engine import METHODS, EngineError
from cnnvis_ui import audit as a
from cnnvis_ui import context, share, state, uploads
from cnnvis_ui.audit_zip import unpack_zip
from cnnvis_ui.text import clean

PAPER = "https://arxiv.org/abs/1902.10178"
COLUMNS = 6


def take_zip() -> None:
    upload = st.session_state.get(a.ZIP)
    st.session_state[a.ZIP_ERROR] = ""
    if upload is None:
        return
    try:
        folder = unpack_zip(upload.getvalue(), owner=uploads.session_id() or "")
        st.session_state.setdefault(a.ZIP_NAMES, {})[folder] = clean(upload.name)
        st.session_state[a.FOLDER] = folder
        forget_run()
        state.sync_url()
    except EngineError as error:
        st.session_state[a.ZIP_ERROR] = str(error)


def forget_run() -> None:
    """New settings: the audit shown was of the old ones, so it goes (and out of the link) until run again."""
    st.session_state.pop(a.RUN, None)
    for key in (a.SHOWN, a.CLASS, a.GROUP):
        st.session_state[key] = state.DEFAULTS[key]


def folder_titles() -> Callable[[str], str]:
    """How the page names a folder: an uploaded zip by its own file name, not by the hash it is kept under."""
    zip_names = dict(st.session_state.get(a.ZIP_NAMES, {}))  # read now: the function may be called outside the run
    return lambda folder: f"{zip_names[folder]} (your upload)" if folder in zip_names else folder


def settings() -> dict | None:
    """The widgets; the settings of the audit to show (the last one run in this session, or the one a link
    showed), or None."""
    model = context.current_model()  # adopts a link's view first (state.init)
    root = a.audit_root()
    st.caption(f"Model: **{model.label}** (change it in the sidebar). Folders are read under `{root}`.")
    choices = a.folders(root, owner=uploads.session_id())
    methods = a.map_methods()
    left, middle, right, button = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
    left.selectbox(
        "Folder (one subfolder per class)",
        choices,
        format_func=folder_titles(),
        **state.bound(a.FOLDER, choices, then=forget_run),
    )
    middle.selectbox(
        "Map", methods, format_func=lambda m: METHODS[m].title, **state.bound(a.METHOD, methods, then=forget_run)
    )
    right.selectbox("Map size", a.SIZES, **state.bound(a.SIZE, a.SIZES, then=forget_run))
    with st.expander("Upload a small set as a zip (class folders inside)"):
        st.file_uploader("Zip of pictures", type=["zip"], key=a.ZIP, on_change=take_zip)
        if st.session_state.get(a.ZIP_ERROR):
            st.error(st.session_state[a.ZIP_ERROR])
    class_of = folder_classes(model, state.get(a.FOLDER))
    run = st.session_state.get(a.RUN)
    if run is not None and run["model"] != model:  # another model chosen in the sidebar: its audit is not run yet
        forget_run()
        state.sync_url()
        run = None
    if button.button("Run audit", type="primary", key="audit-run") or (run is None and state.get(a.SHOWN)):
        # pressed, or a link (or a reload) showed an audit: run it (a cached one comes back at once)
        run = st.session_state[a.RUN] = {
            "model": model,
            "folder": state.get(a.FOLDER),
            "method": state.get(a.METHOD),
            "size": state.get(a.SIZE),
            "class_of": class_of,
        }
        if not state.get(a.SHOWN):
            state.put(a.SHOWN, True)
    return run


def folder_classes(model, folder_name: str) -> tuple[tuple[str, str], ...]:
    """Where class folders are named otherwise than the model's classes, one choice each: which class it is, or
    "the model's prediction" (then its pictures are grouped by what the model predicts). The chosen pairs."""
    try:
        folder = a.resolve_folder(folder_name, owner=uploads.session_id())
        names = context.load_explainer(model).bundle.class_names
    except EngineError:
        return ()  # the run says why
    unknown = a.unknown_class_folders(folder, names)
    if not unknown:
        return ()
    chosen = st.session_state.setdefault(a.CLASS_OF, {})
    with st.expander(f"Which class is each folder? ({len(unknown)} folder names are not the model's classes)"):
        st.caption(
            "A folder whose class is not given is audited under the model's predictions, not under its name, and "
            "whether the model is right on its pictures stays unknown."
        )
        options = ["", *names]
        for name in unknown[:50]:
            current = chosen.get(name, "")
            chosen[name] = st.selectbox(
                f"Folder '{clean(name)}'",
                options,
                index=options.index(current) if current in options else 0,
                format_func=lambda c: c or "(the model's prediction)",
                key=f"audit-class-of-{name}",
            )
    return tuple((name, chosen[name]) for name in unknown[:50] if chosen.get(name))


def results(run: dict) -> None:
    try:
        folder = a.resolve_folder(run["folder"], owner=uploads.session_id())
        explainer = context.load_explainer(run["model"])
        result = a.run_audit(
            run["model"].key,
            str(folder),
            a.signature(folder),
            run["method"],
            run["size"],
            explainer,
            run.get("class_of", ()),
        )
    except EngineError as error:
        st.error(str(error))
        return
    flagged = result.flagged()
    found = f"{len(flagged)} flagged group{'s' if len(flagged) != 1 else ''}" if flagged else "nothing flagged"
    st.subheader(f"{int(result.read.sum())} pictures of {folder_titles()(run['folder'])}: {found}")
    for note in result.notes:
        st.info(note)
    if result.skipped:
        with st.expander(f"{len(result.skipped)} files skipped"):
            st.dataframe(
                {"file": [s.path for s in result.skipped], "why": [s.reason for s in result.skipped]}, hide_index=True
            )
    st.download_button(
        "Export the flagged pictures (CSV)",
        a.flagged_csv(result),
        file_name="flagged.csv",
        mime="text/csv",
        key="audit-export",
        disabled=not flagged,
    )
    labels = sorted(result.classes, key=lambda c: -max((k.suspicion for k in result.for_class(c)), default=0))
    label = st.segmented_control("Class", labels, **state.bound(a.CLASS, labels, then=forget_group)) or labels[0]
    clusters = result.for_class(label)
    groups = {c.number: c for c in clusters}
    chosen_group = groups.get(state.get(a.GROUP))
    plot, cards = st.columns([3, 2])
    with plot:
        event = st.plotly_chart(
            a.layout_figure(result, label),
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
            key=f"audit-scatter-{label}",
            config={"displayModeBar": True, "displaylogo": False},
        )
        chosen = a.selected_indices(event)
        if chosen:
            grid(result, chosen)
        elif chosen_group is not None:
            grid(result, list(chosen_group.members), group=chosen_group)
        else:
            st.caption(
                "Drag a box or lasso around dots (or click one), or show a group's pictures on its card, to see "
                "those pictures with their maps."
            )
    with cards:
        st.segmented_control(
            "Show the pictures of group",
            [None, *groups],
            format_func=lambda n: "none" if n is None else f"{n}" + (" ⚠" if groups[n].flagged else ""),
            **state.bound(a.GROUP, [None, *groups]),
        )
        for cluster in clusters:
            card(result, cluster, chosen=cluster is chosen_group)


def forget_group() -> None:
    """Another class: its groups are others, so none is chosen."""
    st.session_state[a.GROUP] = None


def grid(result, chosen: list[int], group=None) -> None:
    """The chosen pictures with their maps: a selection on the layout, or the members of `group` (a cluster)."""
    with st.container(key="audit-grid" if group is None else "audit-group"):
        more = f" (the first {a.GRID_LIMIT} shown)" if len(chosen) > a.GRID_LIMIT else ""
        what = "selected" if group is None else f"pictures in group {group.number} of '{group.label}'"
        st.markdown(f"**{len(chosen)} {what}**{more}")
        shown = chosen[: a.GRID_LIMIT]
        for start in range(0, len(shown), COLUMNS):
            for col, index in zip(st.columns(COLUMNS), shown[start : start + COLUMNS]):
                col.image(a.picture_png(result, index), caption=result.names[index], width="stretch")
        st.download_button(
            "Export the selection (CSV)",
            a.flagged_csv(result, chosen),
            file_name="selection.csv",
            mime="text/csv",
            key="audit-export-selection",
        )


def card(result, cluster, chosen: bool = False) -> None:
    with st.container(border=True, key=f"audit-card-{cluster.label}-{cluster.number}".replace(" ", "_")):
        badge = ":red[**Flagged**]" if cluster.flagged else ":gray[not flagged]"
        st.markdown(f"{badge} · group {cluster.number}" + (" · :blue[**its pictures are shown**]" if chosen else ""))
        st.markdown(a.cluster_sentence(cluster, result))
        st.caption(a.cluster_verdict(cluster))
        with st.expander("Numbers"):
            st.caption(a.cluster_details(cluster, result))
        pictures = [a.mean_map_png(cluster)] + [a.picture_png(result, m) for m in cluster.prototypes[:3]]
        captions = ["mean map"] + [result.names[m].split("/")[-1] for m in cluster.prototypes[:3]]
        for col, picture, caption in zip(st.columns(4), pictures, captions):
            col.image(picture, caption=caption, width="stretch")


def render() -> None:
    st.title("Audit: find shortcuts in a whole picture set")
    st.markdown(
        "One picture at a time, nobody notices that a network learned the weather instead of the tanks. Here every "
        "picture of a folder is explained, and the maps of each class are grouped by how alike they are "
        f"([spectral relevance analysis]({PAPER})). A group is flagged when its maps agree on a spot that is not the "
        "object, or when the model is right far more often on it than on the rest of its class — however large the "
        "group: a shortcut may cover a whole class. Each flagged group says why; look at what its pictures share — "
        "a mark, a background, the weather."
    )
    run = settings()
    if run:
        results(run)


share.ensure_entry()
render()
