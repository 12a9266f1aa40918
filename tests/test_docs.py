"""The course site: it builds with its documented command, offline, and a browser shows every lesson right.

The browser test opens each page of the built site in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) served from 127.0.0.1, and checks that it loads without console
errors, that every image is loaded, that the math is typeset (no raw LaTeX left, no MathJax error),
that every request stays on the site and that the download links resolve. It saves a screenshot of
each page under docs/_build/screenshots/.
"""

import functools
import html
import http.server
import json
import pathlib
import re
import shutil
import tempfile
import threading
import urllib.request

import pytest

from _site import DOCS, ROOT, build, built_site, course_notebooks, needs_docs_packages

SCREENSHOTS = DOCS / "_build" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Every page written in docs/ (the landing page, the course's pages, the guides that hold what the README
# links to): each must be built, and each is opened in the browser.
PAGES = tuple(sorted(f"{page.stem}.html" for page in DOCS.glob("*.md")))
RAW_LATEX = re.compile(r"\\(frac|sum|begin|mathrm|sqrt|partial|hat|cdot|text)\b|\$\$")


def test_the_site_builds_with_the_documented_command():
    site = built_site()
    code, output, seconds = build()
    print(f"site built in {seconds:.0f} s")
    readme = (ROOT / "README.md").read_text()
    assert "python -m sphinx -W --keep-going -b html docs docs/_build/html" in readme
    nb = course_notebooks()
    for lesson in nb.lessons():
        assert (site / "lessons" / f"{lesson.stem}.html").is_file(), f"no page for {lesson.name}"
    for exercise in nb.exercises():
        assert (site / "exercises" / f"{exercise.stem}.html").is_file(), f"no page for {exercise.name}"
    assert {"index.html", "course.html", "grader.html", "training.html", "speed.html"} <= set(PAGES), PAGES
    for page in ("results/index.html", "api/module.html", "api/layers.html", "api/fast.html", "api/models.html",
                 "api/optim.html", "api/data.html", "api/distributed.html", "api/gradcheck.html") + PAGES:
        assert (site / page).is_file(), page
    # The landing page is a page of its own (not the README), with the main command; the sidebar gives the
    # exercises a heading of their own, after the lessons'; the results page shows the benchmarks' figures.
    index = (site / "index.html").read_text()
    assert "Residual networks (ResNet, He et al. 2016) written from scratch" in index
    main_command = re.search(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert main_command in html.unescape(re.sub(r"<[^>]+>", "", index)), "the landing page lacks the main command"
    captions = re.findall(r'caption-text">([^<]*)<', index)
    assert "Lessons" in captions and "Exercises" in captions, captions
    sidebar = {caption: part for caption, part in zip(captions, re.split(r'caption-text">[^<]*<', index)[1:])}
    assert "exercises/ex01" not in sidebar["Lessons"] and "exercises/ex01" in sidebar["Exercises"]
    assert "lessons/01" in sidebar["Lessons"] and "lessons/01" not in sidebar["Exercises"]
    # Each lesson's setup cell (imports, argparse, matplotlib's backend) is folded away.
    for lesson in nb.lessons():
        text = (site / "lessons" / f"{lesson.stem}.html").read_text()
        folded = text.find('<details class="admonition hide above-input">')
        assert 0 <= folded < text.find("ArgumentParser") < text.find("</details>", folded), \
            f"{lesson.name}: the setup cell is not folded away"
    results = (site / "results" / "index.html").read_text()
    for png in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert png.name in results
    # The layers' docstring formulas are math, e.g. batch norm's backward pass.
    layers = (site / "api" / "layers.html").read_text()
    assert "\\mathrm{dx\\_hat}" in layers and 'class="math' in layers


def test_the_site_loads_nothing_from_the_network():
    site = built_site()
    pages = list(site.rglob("*.html"))
    external = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    for page in pages:
        assert not external.search(page.read_text()), f"{page.relative_to(site)} loads something from the network"
    assert (site / "_static" / "mathjax" / "tex-svg.js").is_file(), "MathJax is served with the site"
    for css in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?https?:|url\(\s*['\"]?https?://", css.read_text()), css


# ----------------------------------------------------------------------------------------------------------
# The browser
# ----------------------------------------------------------------------------------------------------------

def _browser_missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (pathlib.Path(CHROMIUM).exists() and pathlib.Path(CHROMEDRIVER).exists()):
        return (f"Debian's chromium and chromium-driver are not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver (.ci/run does it)")
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    site = built_site()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--window-size=1280,1400", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages():
    """Every lesson and exercise page, the landing page, the course's pages, the results and the layers' API."""
    try:
        nb = course_notebooks()
    except pytest.skip.Exception:
        return ["lessons/01_arrays_and_xp.html"]
    pages = [f"lessons/{p.stem}.html" for p in nb.lessons()] + [f"exercises/{p.stem}.html" for p in nb.exercises()]
    return pages + list(PAGES) + ["results/index.html", "api/layers.html"]


WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
const settle = () => Promise.all(Array.from(document.images, img => img.complete ? null :
    new Promise(ok => { img.onload = img.onerror = ok; })));
const typeset = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
(typeset ? window.MathJax.startup.promise : Promise.resolve()).then(settle)
  .then(() => done(true), e => done(String(e)));
"""

INSPECT = """
const visible = node => !node.closest('pre, code, script, style, .highlight, mjx-container, .MathJax');
const walker = document.createTreeWalker(document.querySelector('article') || document.body, NodeFilter.SHOW_TEXT);
let text = '';
while (walker.nextNode()) { if (visible(walker.currentNode.parentElement)) text += walker.currentNode.textContent; }
return {
  images: Array.from(document.querySelectorAll('article img'), img => [img.getAttribute('src'), img.naturalWidth]),
  outputImages: document.querySelectorAll('article .cell_output img, article .output img').length,
  math: document.querySelectorAll('mjx-container').length,
  mathErrors: document.querySelectorAll('mjx-merror, .mjx-merror').length,
  text: text,
  downloads: Array.from(document.querySelectorAll('a.download, a.reference.download'), a => a.href),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  wideMath: Array.from(document.querySelectorAll('article mjx-container[display="true"] > svg'),
                       svg => [svg.getBoundingClientRect().width, svg.parentElement.getBoundingClientRect().width])
    .filter(([svg, column]) => svg > column + 1).length,
  cutCommands: Array.from(document.querySelectorAll('article div.highlight-bash pre'),
                          pre => pre.scrollWidth > pre.clientWidth + 1 ? pre.textContent.slice(0, 60) : null)
    .filter(Boolean),
  height: document.documentElement.scrollHeight,
};
"""


def _screenshot(driver, path, height):
    """A screenshot of the whole page (up to 9000 pixels down), through Chromium's DevTools protocol."""
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 9000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("page", _pages())
def test_a_browser_shows_the_page(page, server, browser):
    url = server + page
    browser.get("about:blank")
    browser.get_log("browser")  # drop what came before
    browser.get(url)
    assert browser.execute_async_script(WAIT_FOR_MATH) is True, "MathJax or an image did not finish"
    seen = browser.execute_script(INSPECT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _screenshot(browser, SCREENSHOTS / (page.replace("/", "__").replace(".html", ".png")), seen["height"])

    problems = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not problems, f"{page}: console errors: {problems}"
    assert all(width > 0 for _, width in seen["images"]), f"{page}: images not loaded: {seen['images']}"
    offsite = [r for r in seen["resources"] if not r.startswith(server)]
    assert not offsite, f"{page}: requests that leave the site: {offsite}"
    assert seen["mathErrors"] == 0, f"{page}: MathJax could not typeset {seen['mathErrors']} formula(s)"
    assert seen["wideMath"] == 0, f"{page}: {seen['wideMath']} formula(s) wider than the column (they must scale)"
    assert not seen["cutCommands"], f"{page}: shell commands cut off behind a scroll: {seen['cutCommands']}"
    raw = RAW_LATEX.search(seen["text"])
    assert raw is None, f"{page}: raw LaTeX left: ...{seen['text'][max(0, raw.start() - 80):raw.end() + 40]}"

    if page.startswith(("lessons/", "exercises/")):
        stem = pathlib.Path(page).stem
        if page.startswith("lessons/"):
            assert seen["outputImages"] >= 1, f"{page}: no figure among the outputs"
        folder = ROOT / "lessons" if page.startswith("lessons/") else ROOT / "lessons" / "exercises"
        if "$" in (folder / f"{stem}.py").read_text():  # a lesson with formulas shows them typeset
            assert seen["math"] >= 1, f"{page}: no typeset math"
        downloads = {pathlib.PurePosixPath(u).name: u for u in seen["downloads"]}
        assert f"{stem}.ipynb" in downloads and f"{stem}.py" in downloads, f"{page}: downloads {list(downloads)}"
        for name, link in downloads.items():
            with urllib.request.urlopen(link, timeout=30) as response:
                assert response.status == 200, f"{page}: {link}"
                body = response.read()
            if name.endswith(".ipynb"):
                notebook = json.loads(body)
                assert notebook["nbformat"] == 4 and notebook["cells"], f"{page}: {name} is no notebook"
                assert not any(c.get("outputs") for c in notebook["cells"]), f"{name}: a download has no outputs"
            else:
                assert body.startswith(b"# %%") or name == "_common.py", f"{page}: {name}"


def test_docstring_prose_is_plain_text():
    """A lone star or bar in a docstring's prose is a character, not reStructuredText markup; *emphasis*,
    ``literals``, list bullets and the docstring's own code blocks stay as written."""
    needs_docs_packages()
    import importlib.util
    import sys

    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        spec = importlib.util.spec_from_file_location("course_ext", DOCS / "_ext" / "course.py")
        course = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(course)
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    lines = ["Every rank's ``array``: shape (size, *array.shape), error |a - b|, the *biased* variance.",
             "",
             "* a list item with *args",
             "",
             "Example::",
             "",
             "    y = x * w    # |y| stays as written",
             "",
             ">>> 2 * 3",
             "6"]
    course.formula_blocks(None, "function", "f", None, {}, lines)
    assert lines[0] == r"Every rank's ``array``: shape (size, \*array.shape), error \|a - b\|, the *biased* variance."
    assert lines[2] == r"* a list item with \*args"
    assert lines[6] == "    y = x * w    # |y| stays as written" and lines[8] == ">>> 2 * 3"
