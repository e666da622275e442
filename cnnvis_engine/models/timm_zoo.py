"""Models only timm has: SENet proper (squeeze-and-excitation on a ResNet); pretrained needs the internet once."""

from __future__ import annotations

from .bundle import ModelBundle
from .imagenet import imagenet_bundle
from .registry import register_model
from .weights import RANDOM_DETAIL, pretrained_error, seeded_init

# legacy_seresnet50 downloads from a plain URL into torch.hub's cache, so offline it fails in well under a second;
# timm's "seresnet50" goes through the Hugging Face hub, which retries for about 45 s before giving up.
_SERESNET50 = "legacy_seresnet50"
_SERESNET50_DESCRIPTION = (
    "ResNet-50 with squeeze-and-excitation: each block learns how much to trust each of its channels."
)


def build_timm(name: str, timm_name: str, description: str, weights: str) -> ModelBundle:
    """timm model `timm_name` with timm's default pretrained weights or seeded random ones."""
    import timm  # imported here: it takes over a second and only these models need it

    if weights not in ("random", "pretrained"):
        raise ValueError(f"{name}: unknown weights choice {weights!r}")
    if weights == "random":
        with seeded_init():  # repeatable, and the caller's generator is left alone
            module = timm.create_model(timm_name, pretrained=False)
        detail = RANDOM_DETAIL
    else:
        url = str(getattr(timm.models.get_pretrained_cfg(timm_name), "url", ""))
        try:
            with seeded_init():  # the throwaway initialisation leaves the caller's generator alone
                module = timm.create_model(timm_name, pretrained=True)  # looks in weights_cache_dir() first
        except Exception as exc:  # URLError, OSError, corrupt file: all mean "no weights"
            raise pretrained_error(name, url) from exc
        detail = f"timm {timm_name} ({url})"
    return imagenet_bundle(name, module, "random" if weights == "random" else "pretrained", detail, description)


def _seresnet50_url() -> str:
    import timm

    return str(getattr(timm.models.get_pretrained_cfg(_SERESNET50), "url", ""))


@register_model("seresnet50", family="SENet", description=_SERESNET50_DESCRIPTION, checkpoint_url=_seresnet50_url)
def seresnet50(weights: str) -> ModelBundle:
    return build_timm("seresnet50", _SERESNET50, _SERESNET50_DESCRIPTION, weights)
