"""Your own network in the dashboard, as a person sees it in Chromium: `cnnvis.show(model)` from a script whose
model class lives in `__main__`, `cnnvis serve --model file.py:factory` with weights, labels and a 32×32 input,
and a timm network outside the registry picked by name in the sidebar. Plus the `cnnvis` command's refusals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import ROOT, free_port
from test_browser import ARTIFACTS, choose, go_to, panel_picture, settle, summary
from test_own_models import NET

SCRIPT = textwrap.dedent("""
    import sys

    import torch
    from torch import nn

    import cnnvis


    class MainNet(nn.Module):  # defined in __main__: no other process could unpickle it
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))


    torch.manual_seed(0)
    url = cnnvis.show(MainNet(), labels=["reddish", "greenish", "bluish"], input_size=(32, 32), port=int(sys.argv[1]),
                      block=False)
    print("READY", url, flush=True)
    sys.stdin.readline()  # the test says when to stop
    cnnvis.stop()
    print("STOPPED", flush=True)
""")


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "2"}


@contextmanager
def running(command: list[str], log: Path, ready: str):
    """Start `command`, wait for a line starting with `ready` on its stdout (the URL follows), yield (url, process)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        cwd=log.parent,
        env=environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(log, "wb"),  # noqa: SIM115 - the server owns its log file while it runs
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith(ready):
                url = line.split(" is at ")[-1].split()[0] if " is at " in line else line.split()[-1]
                break
        else:
            pytest.fail(f"{command[:4]} ended before it was ready; see {log}")
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def new_page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return context, page


@pytest.mark.browser
def test_show_from_a_script_with_its_class_in_main(browser, tmp_path):
    script = tmp_path / "notebook_like.py"
    script.write_text(SCRIPT)
    port = free_port()
    with running([sys.executable, str(script), str(port)], ARTIFACTS / "show-script.log", "READY") as (url, process):
        assert url == f"http://127.0.0.1:{port}"
        context, page = new_page(browser)
        page.goto(url)
        settle(page, panels=2)
        page.screenshot(path=ARTIFACTS / "show-mainnet-start.png", full_page=True)
        sidebar = page.get_by_test_id("stSidebar")
        assert "MainNet (yours)" in page.locator(".st-key-_w_model input").input_value()
        assert "MainNet · your model as you gave it" in summary(page)
        page.locator(".st-key-panel-gradcam .js-plotly-plot").first.wait_for()
        assert panel_picture(page, "gradcam", "show-mainnet").std() > 5
        assert (
            sidebar.get_by_text("reddish").count()
            + sidebar.get_by_text("greenish").count()
            + sidebar.get_by_text("bluish").count()
            >= 1
        )  # its own labels in the top predictions
        page.screenshot(path=ARTIFACTS / "show-mainnet.png", full_page=True)
        context.close()
        rest, _ = process.communicate("stop\n", timeout=30)
        assert "STOPPED" in rest and process.returncode == 0
        with pytest.raises(OSError):  # cnnvis.stop() freed the port
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


@pytest.fixture
def toy_files(tmp_path):
    net = tmp_path / "toy_net.py"
    net.write_text(NET)
    sys.path.insert(0, str(ROOT))
    from cnnvis_engine.models import load_model

    bundle = load_model(f"{net}:build", input_size=(32, 32))
    torch.save(bundle.module.state_dict(), tmp_path / "toy.pt")
    (tmp_path / "labels.txt").write_text("plane\ncar\nbird\ncat\n")
    return net, tmp_path / "toy.pt", tmp_path / "labels.txt"


@pytest.mark.browser
def test_serve_a_factory_file_then_compare_and_sanity_offer_it(browser, toy_files):
    net, weights, labels = toy_files
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "cnnvis",
        "serve",
        "--model",
        f"{net}:build",
        "--weights",
        str(weights),
        "--labels",
        str(labels),
        "--input-size",
        "32",
        "32",
        "--mean",
        "0.49",
        "0.48",
        "0.45",
        "--std",
        "0.25",
        "--port",
        str(port),
    ]
    with running(command, ARTIFACTS / "serve-factory.log", "cnnvis:") as (url, _):
        context, page = new_page(browser)
        page.goto(url)
        settle(page, panels=2)
        sidebar = page.get_by_test_id("stSidebar")
        assert "toy_net.py:build (yours)" in page.locator(".st-key-_w_model input").input_value()
        assert "toy_net.py:build · your model as you gave it" in summary(page)
        assert panel_picture(page, "gradcam", "serve-toy").std() > 5
        assert sum(sidebar.get_by_text(name).count() for name in ("plane", "car", "bird", "cat")) >= 1
        page.screenshot(path=ARTIFACTS / "serve-toy.png", full_page=True)
        go_to(page, "Compare")
        settle(page, panels=1)
        main = page.get_by_test_id("stMain")
        assert main.get_by_text("toy_net.py:build").count() >= 1  # offered and chosen as a row
        page.screenshot(path=ARTIFACTS / "serve-toy-compare.png", full_page=True)
        go_to(page, "Sanity")
        page.get_by_role("button", name="Run the test").click()
        settle(page)
        page.get_by_text("Spearman rank correlation: 1").wait_for()
        page.screenshot(path=ARTIFACTS / "serve-toy-sanity.png", full_page=True)
        context.close()


@pytest.mark.browser
def test_a_timm_cnn_by_name_in_the_sidebar_with_random_weights(browser, toy_files):
    port = free_port()  # served with the small toy model first, so the first page costs little
    command = [sys.executable, "-m", "cnnvis", "serve", "--model", f"{toy_files[0]}:build", "--port", str(port)]
    with running(command, ARTIFACTS / "serve-plain.log", "cnnvis:") as (url, _):
        context, page = new_page(browser)
        page.goto(url)
        settle(page)
        choose(page, "_w_model", "timm:resnet10t")
        page.get_by_test_id("stSidebar").get_by_text("could not be downloaded").wait_for()
        page.get_by_role("button", name="Use random weights for timm:resnet10t").click()
        settle(page, panels=3)
        assert "timm:resnet10t · random weights" in summary(page)
        assert panel_picture(page, "gradcam", "timm-resnet10t").std() > 5
        page.screenshot(path=ARTIFACTS / "serve-timm.png", full_page=True)
        context.close()


RESTART = textwrap.dedent("""
    import sys
    import urllib.request

    from torch import nn

    import cnnvis
    from cnnvis_engine.models import list_models


    def net(classes):
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
        )


    def healthy(url):
        try:
            return urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False


    port = int(sys.argv[1])
    url = cnnvis.show(net(3), name="Net", port=port, inline=False, block=False)
    assert healthy(url)
    assert cnnvis.show(net(5), name="Net", port=port, inline=False, block=False) == url  # the same server, the new model
    assert list_models()[0].title == "Net" and len(cnnvis.load_model("Net").class_names) == 5
    try:
        cnnvis.show(net(1), name="Bad", inline=False, block=False)
    except cnnvis.EngineError as error:
        print("REFUSED", error)
    assert healthy(url)  # a refused model leaves the dashboard running
    cnnvis.stop()
    assert not healthy(url) and list_models()[0].name == "efficientnet_lite0"
    again = cnnvis.show(net(2), name="Other", port=port, inline=False, block=False)  # a second server in the same process
    assert again == url and healthy(again)
    cnnvis.stop()
    print("OK")
""")


def test_show_stop_and_show_again_in_one_process(tmp_path):
    script = tmp_path / "restart.py"
    script.write_text(RESTART)
    result = subprocess.run(
        [sys.executable, str(script), str(free_port())],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]
    assert "REFUSED The model has a single output" in result.stdout


# ----- the command line, no browser --------------------------------------------------------------------------
def cnnvis(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnvis", *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "missing.py:build"), "error: There is no file missing.py."),
        (("--model", "toy_net.py:broken"), "error: toy_net.py:broken() raised ValueError: no config for this size."),
        (
            ("--model", "toy_net.py:not_a_model"),
            "error: toy_net.py:not_a_model() returned a dict, not a torch.nn.Module",
        ),
        (("--model", "toy_net.py:one_output"), "error: The model has a single output"),
        (("--model", "toy_net.py:build", "--weights", "wrong.pt"), "error: The weights do not fit toy_net.py:build"),
        (("--model", "resnet50"), "error: resnet50 is one of the dashboard's built-in models"),
    ],
)
def test_serve_refuses_bad_input_with_a_sentence(tmp_path, monkeypatch, capsys, args, message):
    """In this process: the model is loaded, and refused, before any server starts."""
    from cnnvis.cli import main

    (tmp_path / "toy_net.py").write_text(NET)
    torch.save({"stem.0.weight": torch.zeros(5, 3, 3, 3)}, tmp_path / "wrong.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *args, "--port", str(free_port())]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)


def test_cnnvis_command_lists_serve_and_report(tmp_path, capsys):
    from cnnvis.cli import main

    result = cnnvis("--help", cwd=tmp_path)  # python -m cnnvis, from another folder
    assert result.returncode == 0 and "serve" in result.stdout and "report" in result.stdout
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--input-size" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "--images" in capsys.readouterr().out


def test_server_options_match_the_projects_streamlit_config():
    from cnnvis.server import OPTIONS

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": value for section, values in config.items() for key, value in values.items()}
    assert OPTIONS == flat
