"""The Compare page's list of models is built without loading any model or trying any download."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request

import pytest
import torch

from cnnvis_engine.models import MODELS, weights_on_disk
from cnnvis_engine.models.weights import checkpoint_filename
from cnnvis_ui import model_cache


@pytest.fixture
def no_loads_or_downloads(monkeypatch, tmp_path):
    """Every builder, model cache and network call fails the test; torch.hub's cache is an empty folder."""
    calls = []

    def forbidden(what):
        def fail(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} called while listing models")

        return fail

    for name, spec in list(MODELS.items()):
        monkeypatch.setitem(MODELS, name, dataclasses.replace(spec, builder=forbidden(f"build {name}")))
    monkeypatch.setattr(model_cache, "registry_explainer", forbidden("registry_explainer"))
    monkeypatch.setattr(model_cache, "load_model", forbidden("load_model"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden("load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden("download_url_to_file"))
    monkeypatch.setattr(urllib.request, "urlopen", forbidden("urlopen"))
    monkeypatch.setattr(socket, "create_connection", forbidden("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", forbidden("socket.connect"))
    old_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield calls
    torch.hub.set_dir(old_dir)


def test_compare_lists_models_without_loading_or_downloading(no_loads_or_downloads):
    offered = model_cache.comparable_models(include_random=False)
    with_random = model_cache.comparable_models(include_random=True)
    assert no_loads_or_downloads == []
    assert "efficientnet_lite0:embedded" in offered  # shipped weights: always there
    assert not any(key.endswith(":pretrained") for key in offered)  # none in the (empty) cache
    assert not any(key.endswith(":random") for key in offered)
    assert "resnet50:random" in with_random and "efficientnet_lite0:random" in with_random


def test_a_pretrained_checkpoint_in_the_cache_is_offered(no_loads_or_downloads, tmp_path):
    url = MODELS["resnet18"].checkpoint_url()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / checkpoint_filename(url)).write_bytes(b"not really a checkpoint")  # presence is all that is checked
    assert weights_on_disk("resnet18", "pretrained") and not weights_on_disk("resnet50", "pretrained")
    assert "resnet18:pretrained" in model_cache.comparable_models(include_random=False)
    assert no_loads_or_downloads == []


def test_every_pretrained_model_names_its_checkpoint():
    for spec in MODELS.values():
        if "pretrained" in spec.weights:
            assert spec.checkpoint_url is not None and spec.checkpoint_url().startswith("http"), spec.name
