"""`mnist-bench report`: the site's files, hostile results rendered as text, and the page in a real browser (Debian's
chromium, headless, from file:// with the network off), on synthetic runs, a sweep folder and a verify.json."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.studies.report_scale import synthetic_history, synthetic_run
from common.results import save_results

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
browser = pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                             reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them "
                                    "with apt-get: `apt-get install chromium chromium-driver`)")
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp;'


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    """A history of 12 runs (flax 30% slower from the 7th), one run with markup in its hostname, backend label and
    error message, a sweep folder, a verify.json and a suite's benchmarks.json; the report written from them."""
    root = tmp_path_factory.mktemp("results")
    synthetic_history(root / "history", 12, steps=[(6, "flax", 1.3)])
    hostile = synthetic_run(datetime.datetime(2026, 2, 1, tzinfo=datetime.timezone.utc),
                            {"keras": 1.9, HOSTILE: 0.6}, hostname=HOSTILE, error=HOSTILE)
    hostile.runs[-1].status = "failed"
    save_results(hostile, root / "hostile")
    sweep = root / "sweep-1"
    trials = []
    for batch in (32, 64):
        levels = {"flax": 0.56 * 32 / batch}
        run = synthetic_run(datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc), levels, timing_rounds=2,
                            hostname="sweep-host")
        run.job = type(run.job)(backends=("flax",), config=type(run.job.config)(batch_size=batch), timing_rounds=2)
        save_results(run, sweep / "trials" / f"b{batch}")
        trials.append({"id": f"b{batch}", "job": run.job.to_dict(), "status": "done"})
    (sweep / "sweep.json").write_text(json.dumps({"schema_version": 1, "created": "2026-03-01T00:00:00+00:00",
                                                  "executor": "local", "trials": trials}))
    verify = root / "verify-1"
    verify.mkdir()
    check = {"value": 1e-7, "tolerance": 1e-5, "passed": True}
    (verify / "verify.json").write_text(json.dumps({
        "schema_version": 2, "created": "2026-03-02T00:00:00+00:00", "environment": {"hostname": "bench-host"},
        "job": {"config": {"model": "mlp"}}, "steps": 50, "passed": True, "pairs": [],
        "backends": {name: {"passed": True, "checks": {"forward": check, "loss_rel": check},
                            "loss_rel_per_step": [1e-7 * (1 + step) for step in range(50)]}
                     for name in ("keras", "flax")}}))
    suite = root / "suite-1"
    suite.mkdir()  # as pytest-benchmark writes it (`mnist-bench suite`'s benchmarks.json), the fields the page reads
    (suite / "benchmarks.json").write_text(json.dumps({
        "machine_info": {"cpu": {"brand_raw": "Synthetic CPU"}}, "datetime": "2026-03-03T00:00:00",
        "benchmarks": [{"name": f"test_train_step[{name}]", "group": "train step, batch 32",
                        "stats": {"mean": mean, "stddev": mean / 10, "rounds": 5}}
                       for name, mean in (("keras", 2e-3), ("flax", 5e-4))]}))
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["report", str(root), "--out", str(out)]) == 0
    return root, out


def _data(out: Path) -> dict:
    text = (out / "data.js").read_text()
    return json.loads(text.removeprefix("window.MNIST_BENCH_REPORT = ").removesuffix(";\n"))


def test_the_site_is_self_contained(site):
    _, out = site
    assert sorted(path.name for path in (out / "assets").iterdir()) == ["plotly.min.js", "report.css", "report.js"]
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # every script and style is a local file
    data = _data(out)
    assert len(data["runs"]) == 12 + 1 + 2 and len(data["sweeps"]) == 1 and len(data["verifies"]) == 1
    assert [b["name"] for b in data["suites"][0]["benchmarks"]] == ["test_train_step[keras]", "test_train_step[flax]"]
    flax = next(s for s in data["series"] if s["backend"] == "flax" and "history" in s["points"][0]["run"])
    assert [change["index"] for change in flax["changes"]] == [6]


def test_hostile_strings_are_data_never_markup(site):
    _, out = site
    text = (out / "data.js").read_text()
    assert "<" not in text and ">" not in text  # escaped: no `</script>` can end the data early
    data = _data(out)
    hostile = next(run for run in data["runs"] if run["id"] == "hostile")
    assert hostile["machine"]["hostname"] == HOSTILE  # the exact string, given back as data
    assert {group["backend"] for group in hostile["groups"]} == {"keras", HOSTILE}


def test_a_second_report_into_the_same_folder_keeps_plotly_and_refreshes_the_rest(site, tmp_path):
    root, out = site
    copy = tmp_path / "site"
    shutil.copytree(out, copy)
    (copy / ".mnist-bench.lock").unlink(missing_ok=True)
    before = (copy / "assets" / "plotly.min.js").stat().st_mtime_ns
    assert main(["report", str(root / "history"), "--out", str(copy)]) == 0
    assert (copy / "assets" / "plotly.min.js").stat().st_mtime_ns == before
    assert len(_data(copy)["runs"]) == 12


@pytest.fixture(scope="module")
def driver():
    """Headless chromium through chromedriver, with no route to any network and its console and requests logged."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 # The network off: every host name fails to resolve and every connection goes to a dead proxy.
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    yield chrome
    chrome.quit()


def _open(driver, url: str, view: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    if driver.current_url.split("#")[0] == url.split("#")[0]:
        driver.execute_script("location.hash = arguments[0]", url.split("#")[1])
    else:
        driver.get(url)
    # The page's own signal: set once the view's plots have rendered (or to 'error').
    WebDriverWait(driver, 120, poll_frequency=0.1).until(
        lambda d: d.execute_script("return document.documentElement.dataset.ready") in (view, "error"))
    assert driver.execute_script("return document.documentElement.dataset.ready") == view


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@browser
def test_every_view_renders_offline_in_chromium(site, driver):
    root, out = site
    base = (out / "index.html").resolve().as_uri()
    # hash: (view, the fewest plots it has)
    views = {"runs": ("runs", 0), "run/history%2Frun-0005": ("run", 9),
             "compare/history%2Frun-0000,history%2Frun-0011": ("compare", 1), "history": ("history", 1),
             "regressions": ("regressions", 0), "sweeps": ("sweeps", 1), "verify": ("verify", 1), "suites": ("suites", 1),
             "run/hostile": ("run", 9)}
    for hash_, (view, fewest) in views.items():
        _open(driver, f"{base}#{hash_}", view)
        plots = driver.execute_script("return document.querySelectorAll('.plot').length")
        rendered = driver.execute_script("return document.querySelectorAll('.plot.js-plotly-plot .main-svg').length")
        assert plots >= fewest and rendered >= plots, f"{hash_}: {rendered} of {plots} plots rendered"
    # The hostile run: its markup shown as text, nothing of it run or inserted as elements.
    body = driver.execute_script("return document.body.innerText")
    assert HOSTILE in body
    assert driver.execute_script("return window.pwned") is None
    assert driver.execute_script("return document.querySelectorAll('main img[src=x], main script').length") == 0
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    outside = [url for url in _requests(driver) if not url.startswith(out.resolve().as_uri() + "/")
               and not url.startswith("data:")]
    assert outside == []


@browser
def test_history_view_toggles_and_deep_links(site, driver):
    _, out = site
    base = (out / "index.html").resolve().as_uri()
    key = "mlp/flax/cpu/x1/b32/highest/full/bench-host"
    _open(driver, f"{base}#history/{key.replace('/', '%2F')}", "history")
    assert driver.execute_script("return document.querySelectorAll('#regressions tbody tr').length") == 1
    driver.execute_script("document.querySelector('.controls input[type=checkbox]').click()")
    _open(driver, driver.current_url, "history")  # the redrawn plot signals ready again
    assert driver.execute_script("return document.querySelector('.plot')._fullLayout.yaxis.type") == "log"
