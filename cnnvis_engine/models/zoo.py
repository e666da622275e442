"""Every classifier torchvision and timm list, by prefixed name: `torchvision:convnext_tiny`, `timm:resnet18d`.

These are not registered at import (timm alone lists over a thousand): `zoo_names()` lists them cheaply, once, and
`zoo_spec(name)` / `build_zoo(name, weights)` resolve one when it is asked for. Preprocessing comes from each
library's own metadata, never guessed: torchvision's weights carry their transforms (crop size, mean, std) and
class names; timm's `pretrained_cfg` (through `timm.data.resolve_data_config`) gives the input size, mean and std.
A timm name may carry a pretrained tag, as timm's docs and model cards write it
(`timm:vit_base_patch16_224.augreg2_in21k_ft_in1k`): the model is built with that tag's pretrained config, so its
input size, mean, std, number of classes and (through timm's ImageNet subsets) class names are the tag's own.
Random weights are always there (seeded); pretrained ones are the library's default, downloaded when online and
otherwise refused with the clear offline error of `weights.py`, quickly (timm's hub client would retry for 45 s).
"""

from __future__ import annotations

import re
import socket
from functools import cache, lru_cache

import torch
import torchvision
from torch import nn

from ..errors import ModelError
from .bundle import ModelBundle, Normalization
from .imagenet import imagenet_classes
from .registry import ModelSpec, NameSource, register_name_source
from .weights import RANDOM_DETAIL, load_checkpoint, pretrained_error, seeded_init

PREFIXES = ("torchvision", "timm")
ZOO_FAMILY = {"torchvision": "torchvision", "timm": "timm (PyTorch Image Models)"}
# Name parts of attention and MLP families (ViT, Swin, DeiT, BEiT, MLP-Mixer ...). `zoo_names` puts names with one
# of them after the convolutional networks: a name heuristic, good enough to order a list, not a classification.
_NOT_CNN = re.compile(
    r"vit|deit|swin|beit|cait|xcit|levit|pvt|twins|tnt|volo|coat|convit|eva|mixer|mlp|former|hiera|davit|focalnet|"
    r"gcvit|nest_|sequencer|cvt|visformer|crossvit|aimv2|naflex|siglip|sam2|_tiny_vit|tiny_vit|vitamin|mvit"
)
_HF_HOST = "huggingface.co"


def is_zoo_name(name: str) -> bool:
    prefix, sep, _ = name.partition(":")
    return bool(sep) and prefix.lower() in PREFIXES


def looks_like_cnn(name: str) -> bool:
    """False for names of attention/MLP families (see `_NOT_CNN`); the rest are taken to be convolutional."""
    return _NOT_CNN.search(name.partition(":")[2].lower()) is None


@cache
def zoo_names() -> tuple[str, ...]:
    """Every "torchvision:<name>" and "timm:<name>" classifier: convolutional ones first, then the rest, each part
    in the libraries' own (alphabetical) order. Listed once per process (about 10 ms after timm's import)."""
    import timm  # imported here: over a second, and only when the zoo is asked for

    names = [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    names += [f"timm:{n}" for n in timm.list_models()]
    return tuple(sorted(names, key=lambda n: not looks_like_cnn(n)))  # stable: keeps each library's order


def _split(name: str) -> tuple[str, str]:
    """(prefix, model) of a zoo name; a timm model may be `architecture.tag` (a pretrained tag of that model)."""
    prefix, _, model = name.partition(":")
    prefix = prefix.lower()
    if prefix not in PREFIXES or not model:
        raise ModelError(f"'{name}' is not a zoo name; write torchvision:<name> or timm:<name>.")
    known = zoo_names()
    architecture, dot, tag = model.partition(".") if prefix == "timm" else (model, "", "")
    full = f"{prefix}:{architecture}"
    if dot and full in known:
        _check_tag(architecture, tag)
    if full not in known:
        import difflib

        close = difflib.get_close_matches(full, [n for n in known if n.startswith(prefix)], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"{prefix} has no classifier called '{model}'.{hint}")
    return prefix, model


def _check_tag(architecture: str, tag: str) -> None:
    """Refuse a pretrained tag timm does not have for `architecture`, or one without a classifier, naming a few it
    has."""
    from timm.models import get_arch_pretrained_cfgs

    tags = {cfg.tag: cfg for cfg in get_arch_pretrained_cfgs(architecture).values() if cfg.tag}
    classifiers = [t for t, cfg in tags.items() if (cfg.num_classes or 0) > 0]
    few = ", ".join(classifiers[:4]) + (f" ({len(classifiers)} in all)" if len(classifiers) > 4 else "")
    if tag not in tags:
        listed = f"; its tags include {few}" if classifiers else " with a classifier"
        raise ModelError(f"timm's {architecture} has no pretrained tag '{tag}'{listed}.")
    if tag not in classifiers:
        also = f"; choose one such as {few}" if classifiers else ""
        raise ModelError(
            f"timm's {architecture}.{tag} has no classifier (its pretrained config declares no classes): it gives "
            f"features, not predictions{also}."
        )


@cache
def zoo_spec(name: str) -> ModelSpec:
    """What the dashboard shows about a zoo model before it is built; pretrained only where the library has it."""
    prefix, model = _split(name)
    if prefix == "torchvision":
        has_pretrained = torchvision.models.get_model_weights(model).DEFAULT is not None
    else:
        import timm

        cfg = timm.models.get_pretrained_cfg(model)
        has_pretrained = cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)
    kind = "convolutional network" if looks_like_cnn(name) else "network built on attention or MLP blocks"
    description = f"{prefix}'s {model}, a {kind}, with the library's own preprocessing."
    if prefix == "timm" and "." in model and cfg is not None:  # a pretrained tag: say what its config sets
        architecture, _, tag = model.partition(".")
        _, height, width = cfg.input_size
        crop = (
            f"; its {cfg.crop_pct:.0%} {cfg.crop_mode} crop is left out, so maps cover the whole picture"
            if (cfg.crop_pct or 1) < 1
            else ""
        )
        description = (
            f"timm's {architecture} with pretrained tag {tag}, a {kind}, with that tag's preprocessing "
            f"({height}×{width} px, mean {_numbers(cfg.mean)}, std {_numbers(cfg.std)}, {cfg.num_classes:,} classes{crop})."
        )
    weights = ("pretrained", "random") if has_pretrained else ("random",)
    return ModelSpec(
        f"{prefix}:{model}",
        ZOO_FAMILY[prefix],
        description,
        "classification",
        weights,
        weights[0],
        lambda choice: build_zoo(f"{prefix}:{model}", choice),
    )


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


@lru_cache(maxsize=256)
def parameter_count(name: str) -> int:
    """How many parameters the zoo model `name` has, known before it is built: torchvision declares it with its
    weights (`meta["num_params"]`, every classifier of torchvision 0.29); a timm model is built on the meta device,
    which makes its modules without memory for their tensors (0.05–0.35 s, a 1-billion-parameter ViT included).
    Raises ModelError for an unknown name, or when the model cannot be built that way."""
    prefix, model = _split(name)
    if prefix == "torchvision":
        declared = torchvision.models.get_model_weights(model).DEFAULT
        if declared is not None and "num_params" in declared.meta:
            return int(declared.meta["num_params"])

        def build() -> nn.Module:
            built: nn.Module = torchvision.models.get_model(model, weights=None)
            return built
    else:
        import timm

        def build() -> nn.Module:
            return timm.create_model(model, pretrained=False)

    try:
        with torch.device("meta"):
            module = build()
    except Exception as exc:  # a builder that reads its tensors' values (regnet's widths) cannot run on meta
        raise ModelError(
            f"The size of {prefix}:{model} cannot be measured before building it, so this server does not load it."
        ) from exc
    return sum(parameter.numel() for parameter in module.parameters())


def build_zoo(name: str, weights: str) -> ModelBundle:
    """The zoo model `name` with "pretrained" or "random" (seeded) weights, in eval mode."""
    prefix, model = _split(name)
    if weights not in ("pretrained", "random"):
        raise ModelError(f"{name} has no '{weights}' weights; choose pretrained or random.")
    build = _torchvision if prefix == "torchvision" else _timm
    module, normalization, input_size, class_names, detail = build(model, weights)
    module.eval()
    return ModelBundle(
        name=f"{prefix}:{model}",
        module=module,
        class_names=class_names,
        input_size=input_size,
        normalization=normalization,
        weights_source="random" if weights == "random" else "pretrained",
        weights_detail=detail,
        description=zoo_spec(name).description,
    )


def load_zoo(name: str, weights: str | None = None, **_: object) -> ModelBundle:
    """`load_model` for a zoo name: its default weights choice when None; ModelError for one it does not have.
    (The options of a person's own model do not apply to a zoo model and are ignored.)"""
    spec = zoo_spec(name)
    choice = spec.default_weights if weights is None else weights
    if choice not in spec.weights:
        raise ModelError(f"{spec.name} has no '{choice}' weights; choose one of: {', '.join(spec.weights)}.")
    return build_zoo(name, choice)


# what a zoo builder returns: the module, its preprocessing, input size, class names and where its weights came from
_Built = tuple[nn.Module, Normalization, tuple[int, int], tuple[str, ...], str]


def _torchvision(model: str, weights: str) -> _Built:
    enum = torchvision.models.get_model_weights(model).DEFAULT
    transforms = enum.transforms()  # ImageClassification: resize, centre crop, mean, std
    size = int(transforms.crop_size[0])
    normalization = Normalization(mean=tuple(transforms.mean), std=tuple(transforms.std))
    state_dict = None
    if weights == "pretrained":  # first: offline it fails at once, before the model is built
        state_dict = load_checkpoint(
            f"torchvision:{model}",
            enum.url,
            lambda: enum.get_state_dict(progress=False, check_hash=True, weights_only=True),
        )
    with seeded_init():  # repeatable random weights; the caller's generator is left alone either way
        module = torchvision.models.get_model(model, weights=None)
    detail = RANDOM_DETAIL
    if state_dict is not None:
        module.load_state_dict(state_dict)
        detail = f"torchvision {enum} ({enum.url})"
    return module, normalization, (size, size), tuple(enum.meta["categories"]), detail


def _timm(model: str, weights: str) -> _Built:
    import timm
    from timm.data.config import resolve_data_config

    name = f"timm:{model}"
    if weights == "random":
        with seeded_init():
            module = timm.create_model(model, pretrained=False)
        detail = RANDOM_DETAIL
    else:
        cfg = timm.models.get_pretrained_cfg(model)
        _check_reachable(name, cfg)
        try:
            with seeded_init():  # the throwaway initialisation leaves the caller's generator alone
                module = timm.create_model(model, pretrained=True)  # looks in the caches first
        except Exception as exc:  # URLError, OSError, hub errors, corrupt file: all mean "no weights"
            raise _timm_error(name, cfg) from exc
        detail = f"timm {model} ({getattr(cfg, 'hf_hub_id', None) or getattr(cfg, 'url', None)})"
    data = resolve_data_config({}, model=module)  # from the module's pretrained_cfg: the tag's, when named
    _, height, width = data["input_size"]
    normalization = Normalization(mean=tuple(data["mean"]), std=tuple(data["std"]))
    return module, normalization, (int(height), int(width)), _timm_classes(module), detail


def _timm_classes(module: nn.Module) -> tuple[str, ...]:
    """The class names timm's pretrained config declares (its `label_names`, or the ImageNet subset it was trained
    on: 1k, 12k, 21k, 22k), else "class i"."""
    from timm.data.imagenet_info import ImageNetInfo, infer_imagenet_subset

    count = int(getattr(module, "num_classes", 0) or 0)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    names = tuple(cfg.get("label_names") or ())
    if not names and count == 1000:
        return imagenet_classes()
    subset = infer_imagenet_subset(cfg) if not names and cfg else None
    if subset:
        names = ("background",) * int(cfg.get("label_offset") or 0) + tuple(ImageNetInfo(subset).label_descriptions())
    return names if len(names) == count else tuple(f"class {i}" for i in range(count))


def _check_reachable(name: str, cfg: object) -> None:
    """Offline, timm's Hugging Face client retries for about 45 s before it fails: fail at once instead when the
    weights are not in the hub's cache and the hub's host name does not even resolve."""
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        return  # a plain URL: torch.hub fails fast on its own
    from huggingface_hub import try_to_load_from_cache

    repo = repo.split("@")[0]
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return
    try:
        socket.getaddrinfo(_HF_HOST, 443)
    except OSError as exc:
        raise _timm_error(name, cfg) from exc


def _timm_error(name: str, cfg: object) -> ModelError:
    repo = getattr(cfg, "hf_hub_id", None)
    if repo:
        return ModelError(
            f"Pretrained weights for {name} could not be downloaded from the Hugging Face hub ({repo}; no internet "
            "connection?). Run it once online so they are cached, or choose random weights."
        )
    return pretrained_error(name, getattr(cfg, "url", "") or f"{name}.pth")


register_name_source(
    NameSource(
        "zoo", is_zoo_name, load_zoo, spec=zoo_spec, parameters=parameter_count, before_registered=True, precedence=0
    )
)
