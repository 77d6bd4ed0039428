"""The operator page in a real headless browser (Debian's chromium, driven by selenium through
/usr/bin/chromedriver), with a screenshot of each step in the module's tmp dir.

One browser for the module; the back office has no broker (the page does not need one) and its
fleet is fed straight into its store. Where chromium or chromedriver is missing the module is
skipped saying why, except in CI (``$CI`` set), where that is a failure (``make test`` installs them).
``BACKOFFICE_SHOTS=DIR`` copies the screenshots there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.backoffice.pki import Pki
from sync.backoffice import accounts as accounts_module
from sync.backoffice.accounts import Accounts
from sync.backoffice.service import BackOffice, BackOfficeSettings
from sync.backoffice.store import Incoming
from tests.sync.backoffice.web_login import PASSWORD

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
    "--lang=fr-FR",
)

pytestmark = pytest.mark.timeout(120)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _telemetry(device: str, version: str, depth: int, at: float) -> Incoming:
    body = {"versions": {"comptoir": version}, "outbox": {"depth": depth}, "last_sync": at}
    return Incoming(f"comptoir/{device}/telemetry", json.dumps(body).encode(), at)


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[BackOffice]:
    """A back office whose boxes moved from 0.1.0 to 0.2.0 over the last day; ph3/c1 is offline, not
    seen for 2 hours, with a deep outbox; ph2/c1 has a rejected claim."""
    tmp = tmp_path_factory.mktemp("office")
    issued = pki.client("backoffice")
    settings = BackOfficeSettings(
        "127.0.0.1", 9, pki.ca.cert, issued.cert, issued.key, tmp / "bo.db", Ed25519PrivateKey.generate(),
        rollout_interval=0,
    )  # fmt: skip
    made = BackOffice(settings)
    made.rollouts.send = lambda device, kind, args: f"cmd-{device}"
    now = time.time()
    boxes = [f"ph{p}/c{c}" for p in (1, 2, 3, 4) for c in (1, 2)]
    store = made.store
    store.apply(_telemetry(d, "0.1.0", 0, now - 86400 + n * 60) for n, d in enumerate(boxes))
    store.apply(_telemetry(d, "0.2.0", 1, now - 40000 + n * 3000) for n, d in enumerate(boxes[:5]))
    store.apply([_telemetry("ph3/c1", "0.1.0", 42, now - 7200)])
    store.apply(Incoming(f"comptoir/{d}/state", b"online", now - 60) for d in boxes if d != "ph3/c1")
    store.apply([Incoming("comptoir/ph3/c1/state", b"offline", now - 7200)])
    rejected = {"claim": 12, "reason": "NIR inconnu", "action": "Vérifier la carte"}
    ack = {"key": "ack-1", "seq": 1, "stream": "events", "type": "batch.acknowledged", "batch": 3}
    ack["rejected"] = [rejected]
    store.apply([Incoming("comptoir/ph2/c1/events", json.dumps(ack).encode(), now - 30)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts_module, "KDF", "scrypt$ln=8,r=8,p=1")
        Accounts(store).add("vera", "viewer", PASSWORD)
        Accounts(store).add("oscar", "operator", PASSWORD)
    made.start()
    try:
        yield made
    finally:
        made.stop()


class Page:
    """The browser on the office's page, with a numbered screenshot per step."""

    def __init__(self, driver: Any, office: BackOffice, shots: Path) -> None:
        self.driver, self.office, self.shots = driver, office, shots

    def go(self, path: str) -> None:
        self.driver.get(self.office.url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def submit(self, css: str) -> None:
        """Click a submit button and wait for the next page."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.find("html")
        self.find(css).click()

        def gone(driver: Any) -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException:  # chromium asked about a node mid-navigation: ask again
                return False
            return False

        WebDriverWait(self.driver, 10, poll_frequency=0.02).until(gone)
        WebDriverWait(self.driver, 10, poll_frequency=0.02).until(
            lambda driver: driver.execute_script("return document.readyState") == "complete"
        )

    def shot(self, name: str) -> Path:
        path = self.shots / f"{len(list(self.shots.iterdir())):02d}-{name}.png"
        assert self.driver.save_screenshot(str(path))
        return path

    def login(self, name: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.go("/login")
        self.find("#name").send_keys(name)
        self.find("#password").send_keys(password)
        self.submit("#login")

    def boxes(self) -> list[str]:
        return [row.get_attribute("data-device") for row in self.all("#boxes tr[data-device]")]

    def rollout_state(self) -> str:
        return str(self.find("#rollouts tr[data-rollout]").get_attribute("data-state"))


@pytest.fixture
def web(browser: Any, office: BackOffice, shots: Path) -> Page:
    return Page(browser, office, shots)


def test_anonymous_is_sent_to_the_login_then_a_wrong_password_is_refused(web: Page) -> None:
    web.driver.delete_all_cookies()
    web.go("/")
    assert web.driver.current_url.endswith("/login") and web.find("#login").text == "Se connecter"
    web.shot("login")
    web.login("oscar", "not the password")
    assert "incorrect" in web.find("#message").text
    web.shot("login-refused")
    web.login("oscar", PASSWORD)
    assert web.driver.current_url == web.office.url + "/"
    assert "oscar" in web.find("#who").text
    assert web.driver.get_cookie("comptoir_bo")["httpOnly"] is True
    assert web.driver.get_cookie("comptoir_bo")["sameSite"] == "Strict"


def test_a_viewer_sees_no_roll_out_button_and_its_post_is_refused(web: Page) -> None:
    web.office.rollouts.start("0.2.5", "https://updates.example/0.2.5", time.time())
    web.login("vera", PASSWORD)
    assert "vera (lecture)" in web.find("#who").text
    assert web.all("#start") == [] and web.all("#rollouts button") == [] and web.all("#journal") == []
    web.shot("viewer")
    # the viewer's own session and CSRF token, from the browser: the server still refuses the action
    cookie = web.driver.get_cookie("comptoir_bo")["value"]
    csrf = web.find("#who input[name=csrf]").get_attribute("value")
    with httpx.Client(base_url=web.office.url, cookies={"comptoir_bo": cookie}, timeout=5) as http:
        form = {"csrf": csrf, "version": "0.3.0", "url": "https://updates.example/0.3.0"}
        assert http.post("/rollouts", data=form).status_code == 403
        assert http.post("/rollouts/1/pause", data={"csrf": csrf}).status_code == 403
        assert http.get("/api/session").json()["role"] == "viewer"
    assert [r["version"] for r in web.office.store.rollouts()] == ["0.2.5"]
    assert web.office.store.rollouts()[0]["state"] == "running"


def test_an_operator_filters_boxes_and_starts_pauses_resumes_a_roll_out(web: Page) -> None:
    from selenium.webdriver.support.ui import Select

    web.login("oscar", PASSWORD)
    assert len(web.boxes()) == 8
    Select(web.find("#f-etat")).select_by_value("offline")
    web.submit("#f-apply")
    assert web.boxes() == ["ph3/c1"] and "1 poste(s) sur 8" in web.find("#count").text
    web.shot("filter-offline")
    web.go("/")
    Select(web.find("#f-version")).select_by_value("0.2.0")
    web.submit("#f-apply")
    assert web.boxes() == ["ph1/c1", "ph1/c2", "ph2/c1", "ph2/c2"]
    web.go("/")
    web.find("#f-file").send_keys("5")
    web.submit("#f-apply")
    assert web.boxes() == ["ph3/c1"]
    web.go("/")
    web.find("#f-vu").send_keys("60")
    web.submit("#f-apply")
    assert web.boxes() == ["ph3/c1"]
    web.go("/")
    web.find("#f-rejets").click()
    web.submit("#f-apply")
    assert web.boxes() == ["ph2/c1"] and "NIR inconnu" in web.find("#boxes").text
    web.shot("filter-rejects")

    web.go("/")
    web.find("#r-version").send_keys("0.3.0")
    web.find("#r-url").send_keys("https://updates.example/0.3.0")
    web.submit("#start")
    assert "Déploiement démarré" in web.find("#message").text
    (rollout,) = [r for r in web.office.store.rollouts() if r["version"] == "0.3.0"]
    ident = int(rollout["id"])
    assert rollout["state"] == "running"
    web.shot("rollout-started")
    web.submit(f"#pause-{ident}")
    assert "mis en pause" in web.find("#message").text
    assert web.office.store.rollouts()[ident - 1]["state"] == "paused"
    assert web.office.store.rollouts()[ident - 1]["pause_reason"] == "mis en pause par oscar"
    assert web.find(f"tr[data-rollout='{ident}']").get_attribute("data-state") == "paused"
    web.shot("rollout-paused")
    web.submit(f"#resume-{ident}")
    assert "repris" in web.find("#message").text
    assert web.office.store.rollouts()[ident - 1]["state"] == "running"
    journal = {
        (row.find_element("css selector", "td:nth-child(2)").text, row.get_attribute("data-action"))
        for row in web.all("#journal tr[data-action]")
    }
    assert {("oscar", "rollout.started"), ("oscar", "rollout.paused"), ("oscar", "rollout.resumed")} <= journal
    assert "déploiement mis en pause" in web.find("#journal").text
    web.shot("rollout-resumed")


def test_the_chart_shows_the_versions_over_time(web: Page) -> None:
    web.login("vera", PASSWORD)
    chart = web.find("#versions-chart")
    web.driver.execute_script("arguments[0].scrollIntoView()", chart)
    versions = {bar.get_attribute("data-version") for bar in web.all("#versions-chart rect")}
    assert versions == {"0.1.0", "0.2.0"}
    legend = web.find(".legend").text
    assert "0.1.0" in legend and "0.2.0" in legend
    assert chart.size["width"] == 640 and chart.size["height"] == 240
    web.shot("chart")
    if os.environ.get("BACKOFFICE_SHOTS"):  # keep them past pytest's tmp dirs, to look at
        shutil.copytree(web.shots, Path(os.environ["BACKOFFICE_SHOTS"]), dirs_exist_ok=True)
