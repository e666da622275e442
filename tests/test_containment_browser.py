"""Containment as a person sees it (a real server, Chromium): a TorchScript upload that would write a file gets a
sentence in the sidebar and the file never appears; while one session's upload loops forever, a second session
gets the default page, and the first gets "did not answer within 30 s". Engine side: test_containment.py.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import ROOT, dashboard_server
from containment_cases import LoopsForever, SavesAFile
from hardening_cases import torchscript
from test_hardening_browser import Session, load_own_model, record

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::FutureWarning")]
SERVER_LOG = ROOT / "test-artifacts" / "containment-server.log"
TIMEOUT_S = 30  # long enough that the second session renders while the first waits, even at load average 18


@pytest.fixture(scope="module")
def server():
    before = os.environ.get("CNNVIS_MODEL_TIMEOUT_S")
    os.environ["CNNVIS_MODEL_TIMEOUT_S"] = str(TIMEOUT_S)  # the server (and so its workers) reads it
    try:
        with dashboard_server(SERVER_LOG, "--server.fileWatcherType", "none") as (url, process):
            yield url, process
    finally:
        if before is None:
            os.environ.pop("CNNVIS_MODEL_TIMEOUT_S", None)
        else:
            os.environ["CNNVIS_MODEL_TIMEOUT_S"] = before


def test_a_hostile_upload_is_contained_and_other_sessions_go_on(server, browser, tmp_path):
    url, _ = server
    target = tmp_path / "written-by-the-model"
    writer = tmp_path / "writer.pt"
    writer.write_bytes(torchscript(SavesAFile(str(target))))
    looping = tmp_path / "loop.pt"
    looping.write_bytes(torchscript(LoopsForever()))
    first = Session(browser, url)
    first.open()

    load_own_model(first, writer)
    refused = first.sidebar_alerts()
    assert "writer.pt is refused: its code calls torch.save (file access)" in refused, refused
    assert not target.exists()
    assert "efficientnet_lite0" in first.summary()  # still the model we had

    form_button = first.page.get_by_role("button", name="Load my model")
    before = first.runs()
    first.upload("_w_model_file", looping)
    first.settle(since=before)
    start = time.perf_counter()
    form_button.click()  # the probe starts; the loop holds this session until the timeout
    second = Session(browser, url)
    second.open()  # another person's page renders meanwhile
    other_seconds = time.perf_counter() - start
    first_still_waiting = first.page.locator("[data-testid='stApp'][data-test-script-state='running']").count() == 1
    first.page.get_by_test_id("stSidebar").get_by_text(f"did not answer within {TIMEOUT_S} s").wait_for(timeout=120_000)
    first.settle()
    loop_seconds = time.perf_counter() - start
    stopped = first.sidebar_alerts()
    first.page.get_by_test_id("stSidebar").screenshot(path=ROOT / "test-artifacts" / "containment-sidebar.png")
    assert f"The model did not answer within {TIMEOUT_S} s, so it was stopped." in stopped, stopped
    assert first_still_waiting, f"the second page took {other_seconds:.1f} s, longer than the first's wait"
    assert first.exceptions() == 0 and second.exceptions() == 0
    first.page.locator(".st-key-top5-1 button").click()  # the first session goes on too
    first.settle(panels=6)
    record(
        "contain-browser",
        refused=refused,
        stopped=stopped,
        other_session_rendered_seconds=round(other_seconds, 1),
        loop_answered_seconds=round(loop_seconds, 1),
        first_still_waiting=first_still_waiting,
        written=target.exists(),
    )
    first.close("contain-first")
    second.close("contain-second")
