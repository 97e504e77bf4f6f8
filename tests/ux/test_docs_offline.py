"""The built user guide works with no network (air-gapped clusters): no page makes the browser
fetch anything from another host (no web fonts, no CDN scripts), and the mermaid diagrams
render from the copy of mermaid that the site serves itself.

The site is built as `make docs` builds it (`mkdocs build --strict`, mkdocs comes with the
`test` extra); the diagram check opens a page in headless Chromium with every host name
unresolvable, as on a machine without network.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.ux.pipelines import require_program

MERMAID = "assets/mermaid/mermaid.min.js"
EXTERNAL = re.compile(r"^\s*(https?:)?//", re.I)  # http://, https:// and protocol-relative //host
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)|@import\s+['"]([^'"]+)""", re.I)
# attributes whose URL the browser loads by itself (an <a href> only when clicked)
FETCHED = {("script", "src"), ("link", "href"), ("img", "src"), ("img", "srcset"), ("iframe", "src"),
           ("source", "src"), ("source", "srcset"), ("video", "src"), ("video", "poster"),
           ("audio", "src"), ("embed", "src"), ("object", "data"), ("input", "src")}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


class _Fetches(HTMLParser):
    """The URLs an HTML page makes the browser load: fetching attributes, and url()/@import in
    <style> elements and style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if (tag, name) in FETCHED and value:
                self.urls += [(f"<{tag} {name}>", url.split()[0]) for url in value.split(",") if url.strip()]
            if name == "style" and value:
                self.urls += [(f"<{tag} style>", url) for url in _css_urls(value)]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.urls += [("<style>", url) for url in _css_urls(data)]


def _css_urls(css: str) -> list[str]:
    return [a or b for a, b in CSS_URL.findall(css)]


def _page_fetches(page: Path) -> list[tuple[str, str]]:
    parser = _Fetches()
    parser.feed(page.read_text())
    return parser.urls


def test_no_page_or_stylesheet_loads_anything_from_another_host(site):
    external = []
    for page in site.rglob("*.html"):
        external += [(str(page.relative_to(site)), where, url) for where, url in _page_fetches(page)
                     if EXTERNAL.match(url)]
    for css in site.rglob("*.css"):
        external += [(str(css.relative_to(site)), "css", url) for url in _css_urls(css.read_text())
                     if EXTERNAL.match(url)]
    assert external == [], external[:10]


def test_pages_with_diagrams_load_the_sites_own_mermaid(site):
    pages = [p for p in site.rglob("*.html") if 'class="mermaid"' in p.read_text()]
    assert {p.name for p in pages} >= {"guide.html", "tutorial.html"}
    for page in pages:
        scripts = [(page.parent / url).resolve() for where, url in _page_fetches(page) if where == "<script src>"]
        assert (site / MERMAID).resolve() in scripts, page
    mermaid = (site / MERMAID).read_text()
    assert mermaid.startswith("/*! mermaid ") and "MIT License" in mermaid.splitlines()[0]
    assert "Permission is hereby granted" in (site / MERMAID).with_name("LICENSE").read_text()


# Forces the shadow roots that material renders each diagram into to be open, and copies what
# they hold into <div id="probe"> once the page has settled, so that --dump-dom shows it.
PROBE = """<script>
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
window.addEventListener("load", () => setTimeout(() => {
  const probe = document.createElement("div");
  probe.id = "probe";
  for (const e of document.querySelectorAll("div.mermaid"))
    if (e.shadowRoot) probe.innerHTML += e.shadowRoot.innerHTML;
  document.body.appendChild(probe);
}, 3000));
</script>"""


def test_diagram_renders_in_a_browser_without_network(site, tmp_path):
    chromium = require_program("chromium")
    page = site / "guide.html"
    probed = page.with_name("probe.html")
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    net_log = tmp_path / "net-log.json"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         # no host name resolves: nothing can leave this machine, as on an air-gapped cluster
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={net_log}",
         "--virtual-time-budget=15000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = result.stdout.partition('<div id="probe">')[2]
    assert "<svg" in probe and "flowchart" in probe, result.stdout[-2000:]
    assert all(f">{node}<" in probe for node in ("t1", "t2", "t3")), probe[:2000]
    assert _page_requests(net_log) == []


def _page_requests(net_log: Path) -> list[str]:
    """The network requests the page made: Chromium's own background requests (updates,
    spelling dictionaries) carry no initiator and are left out."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e["params"] for e in log["events"] if e["type"] == start_job and "url" in e.get("params", {})]
    return [p["url"] for p in starts if p.get("initiator") != "not an origin"]
