"""Upload limits and plain text as a person (or a script) meets them: a real `streamlit run dashboard.py` and
Debian's Chromium. A 120 MB "image" sent straight to the upload route (past the browser's 50 MB check) is
refused with a sentence and freed; uploads no widget claims, and those of a closed tab, are freed within seconds
(the reaper's times shortened through the environment); class names such as `www.evil.example/login` and a
file named `![x](https://203.0.113.9/p.png).pt` show as text: no link, no picture, no request off the machine.

Server RSS and the upload store's bytes (Streamlit's /_stcore/metrics) are recorded to test-artifacts/limits/.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ROOT, dashboard_server
from PIL import Image
from test_hardening_browser import Session, load_own_model

pytestmark = pytest.mark.browser

FIGURES = ROOT / "test-artifacts" / "limits"
SERVER_LOG = ROOT / "test-artifacts" / "limits-server.log"
ORPHAN_SECONDS, GONE_SECONDS = 15, 4  # the reaper's times for this server (60 and 30 by default)
MB = 2**20


@pytest.fixture(scope="module")
def server():
    saved = {key: os.environ.get(key) for key in ("CNNVIS_UPLOAD_ORPHAN_SECONDS", "CNNVIS_UPLOAD_GONE_SECONDS")}
    os.environ.update(CNNVIS_UPLOAD_ORPHAN_SECONDS=str(ORPHAN_SECONDS), CNNVIS_UPLOAD_GONE_SECONDS=str(GONE_SECONDS))
    try:
        with dashboard_server(SERVER_LOG, "--server.fileWatcherType", "none") as (url, process):
            yield url, process
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def record(name: str, **figures: object) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))


def rss_mb(process) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def stored_mb(url: str) -> float:
    """The bytes in Streamlit's upload store, from its own metrics (computed at most every 5 s)."""
    text = urllib.request.urlopen(f"{url}/_stcore/metrics?families=cache_memory_bytes", timeout=10).read().decode()
    return (
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if "UploadedFileManager" in line and not line.startswith("#")
        )
        / MB
    )


def wait_until(condition, timeout: float) -> float:
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < timeout, "timed out"
        time.sleep(0.25)
    return time.perf_counter() - start


def put(url: str, headers: dict[str, str], name: str, data: bytes) -> int:
    """PUT one file to an upload URL as the browser does (multipart, the XSRF header and cookie)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        url,
        data=body,
        method="PUT",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Xsrftoken": headers["x-xsrftoken"],
            "Cookie": headers["cookie"],
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def png(path: Path) -> Path:
    Image.new("RGB", (64, 48), (30, 160, 60)).save(path)
    return path


def capture_upload_route(session: Session) -> dict[str, str]:
    """Let the next real upload through and keep its URL and headers (session id, XSRF token, cookie)."""
    seen: dict[str, str] = {}

    def keep(route) -> None:
        if route.request.method == "PUT" and not seen:
            seen.update(route.request.all_headers(), url=route.request.url)
        route.continue_()

    session.page.route("**/_stcore/upload_file/**", keep)
    return seen


def test_an_image_over_its_limit_sent_straight_to_the_route_is_refused_and_freed(server, browser, tmp_path):
    url, process = server
    session = Session(browser, url)
    session.open()
    big = png(tmp_path / "head.png").read_bytes() + bytes(120 * MB)  # a PNG head: decodable if let through
    sent: dict[str, object] = {}

    def swap(route) -> None:  # the browser uploads a small picture; the server receives 120 MB under its id
        request = route.request
        if request.method != "PUT":
            route.continue_()
            return
        start = time.perf_counter()
        sent["status"] = put(request.url, request.all_headers(), "huge.png", big)
        sent["seconds"] = round(time.perf_counter() - start, 2)
        sent["rss_after_put_mb"] = round(rss_mb(process))
        route.fulfill(
            status=204, headers={"Access-Control-Allow-Origin": url, "Access-Control-Allow-Credentials": "true"}
        )

    rss_before = rss_mb(process)
    session.page.route("**/_stcore/upload_file/**", swap)
    before = session.runs()
    session.upload("_w_image_uploader", png(tmp_path / "small.png"))
    session.settle(since=before)
    alerts = session.sidebar_alerts()
    assert sent["status"] == 204  # the route itself took it: only the server's cap (500 MB) applies there
    assert "huge.png was not used: it is 120.0 MB, and the limit here is 50 MB." in alerts, alerts
    freed = wait_until(lambda: stored_mb(url) < 1, timeout=30)
    assert session.exceptions() == 0
    assert "efficientnet_lite0" in session.summary()  # still the picture and model we had
    rss_after = rss_mb(process)
    record(
        "browser-image-over-limit",
        message=alerts,
        put=sent,
        rss_before_mb=round(rss_before),
        rss_after_mb=round(rss_after),
        freed_after_s=round(freed, 2),
    )
    session.close("limits-image-over-limit")


def test_uploads_no_widget_claims_and_those_of_a_closed_tab_are_freed(server, browser, tmp_path):
    url, process = server
    session = Session(browser, url)
    session.open()
    seen = capture_upload_route(session)
    before = session.runs()
    session.upload("_w_image_uploader", png(tmp_path / "mine.png"))  # a real, claimed upload
    session.settle(since=before)
    base, _claimed = seen["url"].rsplit("/", 1)
    figures: dict[str, object] = {"rss_start_mb": round(rss_mb(process)), "stored_start_mb": round(stored_mb(url), 2)}

    orphan = bytes(100 * MB)
    start = time.perf_counter()
    for _ in range(4):  # 4 × 100 MB under ids no widget will ever ask for
        assert put(f"{base}/{uuid.uuid4()}", seen, "orphan.png", orphan) == 204
    figures.update(put_4x100_s=round(time.perf_counter() - start, 2), rss_after_put_mb=round(rss_mb(process)))
    assert figures["put_4x100_s"] > ORPHAN_SECONDS or figures["rss_after_put_mb"] - figures["rss_start_mb"] >= 300
    figures["orphans_freed_after_s"] = round(
        wait_until(lambda: stored_mb(url) < 1 and rss_mb(process) < figures["rss_after_put_mb"] - 300, timeout=60), 2
    )
    figures["rss_after_orphans_freed_mb"] = round(rss_mb(process))

    quarter = bytes(250 * MB)  # one session may not pile up more than its widgets could hold (560 MB)
    for _ in range(3):
        assert put(f"{base}/{uuid.uuid4()}", seen, "pile.png", quarter) == 204
    figures["rss_after_3x250_mb"] = round(rss_mb(process))
    assert figures["rss_after_3x250_mb"] - figures["rss_after_orphans_freed_mb"] < 620
    wait_until(lambda: rss_mb(process) < figures["rss_after_3x250_mb"] - 300, timeout=60)

    assert put(f"{base}/{uuid.uuid4()}", seen, "left.png", orphan) == 204
    figures["rss_before_close_mb"] = round(rss_mb(process))
    session.close("limits-orphans")  # the tab closes: Streamlit keeps the session (and files) for 120 s
    figures["closed_tab_freed_after_s"] = round(
        wait_until(lambda: stored_mb(url) == 0 and rss_mb(process) < figures["rss_before_close_mb"] - 80, timeout=60), 2
    )
    figures["rss_end_mb"] = round(rss_mb(process))
    record("browser-orphan-uploads", **figures)


class Three(torch.nn.Module):
    """224×224 RGB in, three class scores out; class 0 always on top."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
        self.fc = torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor([10.0, 5.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_link_like_labels_and_file_names_show_as_text(server, browser, tmp_path):
    url, _ = server
    session = Session(browser, url)
    session.open()
    names = ["www.evil.example/login", "me@evil.example", "\u202eexe.gnp"]
    model, labels = tmp_path / "three.pt", tmp_path / "labels.txt"
    torch.jit.script(Three().eval()).save(str(model))
    labels.write_text("\n".join(names) + "\n")
    load_own_model(session, model, labels=labels)
    session.settle(panels=3)
    page = session.page
    assert "explaining www.evil.example/login (class 0)" in session.summary(), session.summary()
    buttons = [page.locator(f".st-key-top5-{rank} button").inner_text() for rank in range(3)]
    assert [b.split(" · ")[0] for b in buttons] == ["www.evil.example/login", "me@evil.example", "exe.gnp"], buttons
    session.choose("_w_target", "(1)")
    assert "explaining me@evil.example (class 1)" in session.summary()
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [href for href in links if "evil" in href or href.startswith("mailto:")], links

    bad_name = "![x](https://203.0.113.9/p.png).pt"
    if not page.locator(".st-key-_w_model_file").is_visible():
        page.get_by_text("Use your own model").click()
    before = session.runs()
    page.locator(".st-key-_w_model_file").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        {"name": bad_name, "mimeType": "application/octet-stream", "buffer": b"not a model"}
    )
    session.settle(since=before)
    session.act(page.get_by_role("button", name="Load my model").click)
    alerts = session.sidebar_alerts()
    assert f"{bad_name} is not a PyTorch model file." in alerts, alerts
    assert page.locator("img[src*='203.0.113.9'], a[href*='203.0.113.9']").count() == 0
    assert session.exceptions() == 0
    record(
        "browser-text",
        summary=session.summary(),
        buttons=buttons,
        alerts=alerts,
        links=links,
        external_requests=session.external,
    )
    session.close("limits-text")  # fails if any request left 127.0.0.1
