"""The web lab in a real browser: Playwright drives Debian's Chromium against ``cnnlab serve``.

Each test starts from the page, acts as a person would (mouse strokes, a file upload, the
training form, the convolution buttons) and checks numbers on the page. Screenshots go to
``test-artifacts/`` (git-ignored). Console errors fail the test.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package)", allow_module_level=True)

from web_helpers import (  # noqa: E402
    MODEL_RUN,
    Server,
    digit_png,
    make_runs_dir,
    sample_digits,
    trained_model_file,
)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def model_file(request: pytest.FixtureRequest) -> Path:
    return trained_model_file(Path(request.config.cache.mkdir("cnnlab-web")))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> Iterator[Server]:
    import cnnlab

    runs = make_runs_dir(tmp_path_factory.mktemp("lab") / "runs", model_file)
    # A colour run newer than the digit model: the lab still starts with the digit model, the
    # one the Draw tab reads (the tests below draw on it and find MODEL_RUN in the model chip).
    colour = runs / "colour" / "model.npz"
    colour.parent.mkdir()
    cnnlab.build("vgg", input_shape=(3, 16, 16), n_classes=3).save(colour)
    later = (runs / MODEL_RUN / "model.npz").stat().st_mtime + 60
    os.utime(colour, (later, later))
    lab = Server("--runs-dir", str(runs))
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[sync_api.Playwright]:
    with sync_api.sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: sync_api.Playwright) -> Iterator[sync_api.Browser]:
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
    )
    yield chromium
    chromium.close()


class Page:
    """A page of the lab at one viewport size, recording console errors."""

    def __init__(self, browser: sync_api.Browser, url: str, width: int, height: int) -> None:
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_selector("#model-chip.ready, #no-model:not([hidden])")

    def stroke(self, points: list[tuple[float, float]]) -> None:
        """Draw one stroke through ``points`` given as fractions of the pad's width/height."""
        box = self.page.locator("#pad").bounding_box()
        at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
        self.page.mouse.move(*at[0])
        self.page.mouse.down()
        for x, y in at[1:]:
            self.page.mouse.move(x, y, steps=6)
        self.page.mouse.up()

    def wait_for_prediction(self, after: int = 0) -> dict:
        """Wait until more than ``after`` predictions have been shown; return label and bars,
        read in one turn of the page's script (a prediction made while the stroke was still
        being drawn can arrive between two separate reads and mix two answers' bars)."""
        self.page.wait_for_selector(f"#bars[data-count='{after + 1}']")
        return self.page.evaluate(
            """() => ({
                label: document.getElementById("pred-label").innerText,
                probabilities: Array.from(
                    document.querySelectorAll("#bars li"), (bar) => parseFloat(bar.dataset.p)
                ),
            })"""
        )

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def desktop(browser, server) -> Iterator[Page]:
    page = Page(browser, server.url, 1280, 800)
    yield page
    page.close()
    assert page.errors == []


@pytest.fixture
def phone(browser, server) -> Iterator[Page]:
    page = Page(browser, server.url, 390, 844)
    yield page
    page.close()
    assert page.errors == []


ONE = [(0.5, 0.18), (0.5, 0.5), (0.5, 0.82)]  # a vertical stroke: the most reliable digit


def test_drawing_a_one_predicts_1_with_bars_summing_to_1(desktop):
    desktop.stroke(ONE)
    result = desktop.wait_for_prediction()
    assert result["label"] == "1"
    assert len(result["probabilities"]) == 10
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-3)
    assert max(result["probabilities"]) == result["probabilities"][1]
    steps = desktop.page.locator("#steps figure")
    assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [
        "raw",
        "cropped",
        "upright",
        "fitted",
        "centred",
    ]
    assert desktop.page.locator("#maps .layer-maps").count() == 2  # LeNet-5's conv layers
    assert desktop.page.locator("#maps .layer-maps").first.locator("img").count() == 6
    assert MODEL_RUN in desktop.page.inner_text("#model-chip")

    desktop.page.click("#occlude")
    desktop.page.wait_for_selector("#occlusion figure")
    assert desktop.page.locator("#occlusion figure").count() == 3
    desktop.screenshot("lab-draw-desktop")

    desktop.page.click("#undo")
    assert desktop.page.inner_text("#pred-label") == "?"
    assert desktop.page.is_disabled("#undo")


def test_an_unsure_model_says_so_and_names_the_runner_up(browser, tmp_path):
    import cnnlab

    # A model that ignores its input and gives every class 10 %: always unsure.
    model = cnnlab.Sequential([cnnlab.Flatten(), cnnlab.Dense(784, 10)], input_shape=(1, 28, 28))
    for array in model.layers[1].params.values():
        array[...] = 0
    model.save(tmp_path / "flat.npz")
    lab = Server("--model", str(tmp_path / "flat.npz"), "--runs-dir", str(tmp_path / "runs"))
    try:
        page = Page(browser, lab.url, 1280, 800)
        page.stroke(ONE)
        page.wait_for_prediction()
        assert page.page.inner_text("#pred-conf") == "unsure: 10.0% for 0, maybe 1"
        assert "unsure" in page.page.get_attribute("#pred-label", "class")
        page.screenshot("lab-unsure")
        page.close()
        assert page.errors == []
    finally:
        lab.close()


def test_a_drawing_that_is_no_digit_says_so_and_names_the_closest(desktop):
    # The server's answer, with "none of these classes" as the model's assessment would say it.
    def not_a_digit(route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "known": False})

    desktop.page.route("**/api/predict*", not_a_digit)
    desktop.stroke(ONE)
    shown = desktop.wait_for_prediction()
    closest = max(range(10), key=lambda i: shown["probabilities"][i])
    conf = desktop.page.inner_text("#pred-conf")
    assert conf.startswith(f"not a digit (closest: {closest}, ") and conf.endswith("%)")
    assert shown["label"] == "?"
    assert "unsure" in desktop.page.get_attribute("#pred-label", "class")


def test_phone_layout_stacks_and_still_predicts(phone):
    phone.stroke(ONE)
    assert phone.wait_for_prediction()["label"] == "1"
    pad = phone.page.locator("#pad").bounding_box()
    bars = phone.page.locator("#bars").bounding_box()
    assert bars["y"] > pad["y"] + pad["height"]  # the prediction sits below the pad
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing sticks out sideways
    phone.screenshot("lab-draw-phone")


def test_uploading_an_image_file_reads_it(desktop, tmp_path, model_file):
    import cnnlab

    images, labels = sample_digits("test")
    model = cnnlab.Sequential.load(model_file)
    said = np.asarray(model.predict(cnnlab.to_input(images[:20])))
    index = int(np.flatnonzero(said == labels[:20])[0])  # a clear digit the model reads
    picture = tmp_path / "digit.png"
    picture.write_bytes(digit_png(images[index], scale=10, invert=True))  # dark ink on paper
    desktop.page.set_input_files("#upload", str(picture))
    result = desktop.wait_for_prediction()
    assert result["label"] == str(labels[index])
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-3)
    assert "inverted" in desktop.page.inner_text("#draw-status")
    raw = desktop.page.locator("#steps figure[data-step='raw'] img")
    assert "(280×280)" in raw.get_attribute("alt")  # the uploaded picture's own size
    desktop.screenshot("lab-upload-desktop")


def test_keyboard_moves_between_tabs(desktop):
    desktop.page.focus("#tab-draw")
    desktop.page.keyboard.press("ArrowRight")
    assert desktop.page.is_visible("#panel-train")
    assert desktop.page.evaluate("document.activeElement.id") == "tab-train"
    desktop.page.keyboard.press("ArrowRight")
    assert desktop.page.is_visible("#panel-convolution")
    assert desktop.page.is_hidden("#panel-draw")


def test_convolution_demo_steps_and_recomputes(desktop, server):
    from cnnlab.explain.article import ARTICLE_FILTER, ARTICLE_IMAGE

    image = np.asarray(ARTICLE_IMAGE, float)
    kernel = np.asarray(ARTICLE_FILTER, float)
    size = image.shape[0] - kernel.shape[0] + 1

    def entry(r: int, c: int, k: np.ndarray) -> float:
        return float((image[r : r + k.shape[0], c : c + k.shape[1]] * k).sum())

    page = desktop.page
    page.click("#tab-convolution")
    page.wait_for_selector("#conv-map button")
    assert float(page.inner_text("#conv-total")) == entry(0, 0, kernel)
    for _ in range(4):
        page.click("#conv-next")
    assert "position 5 of 9" in page.inner_text("#conv-pos")
    assert float(page.inner_text("#conv-total")) == entry(1, 1, kernel)
    assert page.locator("#conv-image .cell.inwin").count() == kernel.size
    desktop.screenshot("lab-convolution-desktop")

    page.click("#conv-map button[data-pos='6']")  # row 3, column 1
    assert float(page.inner_text("#conv-total")) == entry(2, 0, kernel)

    page.fill("#conv-filter input[data-i='0'][data-j='0']", "-2")
    edited = kernel.copy()
    edited[0, 0] = -2
    assert float(page.inner_text("#conv-total")) == entry(2, 0, edited)
    shown = [float(t) for t in page.locator("#conv-map button").all_inner_texts()]
    expected = [entry(r, c, edited) for r in range(size) for c in range(size)]
    assert shown == expected
    page.click("#conv-reset")
    assert float(page.inner_text("#conv-total")) == entry(2, 0, kernel)


@pytest.mark.slow
def test_training_one_epoch_updates_the_curve_and_takes_over(browser, tmp_path, model_file):
    lab = Server("--runs-dir", str(make_runs_dir(tmp_path / "runs", model_file)))
    try:
        desktop = Page(browser, lab.url + "#train", 1280, 800)
        page = desktop.page
        page.select_option("#f-preset", "lenet5")
        page.fill("#f-epochs", "1")
        page.fill("#f-subset", "300")
        page.fill("#f-batch", "30")
        page.fill("#f-lr", "0.002")
        page.click("#train-start")
        page.wait_for_selector("#chart-points:not([data-points='0'])")  # the curve grows
        page.wait_for_selector("#filters canvas")
        page.wait_for_selector("#train-status[data-state='finished']", timeout=120_000)
        # 300 digits and the 75 generated non-digits the digit recipe mixes in, 30 a step
        assert int(page.get_attribute("#chart-points", "data-points")) == 13
        status = page.inner_text("#train-status")
        assert "test accuracy" in status
        run = status.split("run ")[1].split(",")[0]
        assert run != MODEL_RUN
        page.wait_for_selector(f"#model-chip:has-text('{run}')")
        in_use = page.locator("#models-body tr.active td").first.inner_text()
        assert in_use == run
        assert page.locator("#filters canvas").count() == 6
        desktop.screenshot("lab-train-desktop")

        page.click("#tab-draw")
        desktop.stroke(ONE)
        desktop.wait_for_prediction()
        assert run in page.inner_text("#pred-model")  # the new model reads the drawing
        desktop.close()
        assert desktop.errors == []
    finally:
        lab.close()


# -- Teach -------------------------------------------------------------------------------------

FAKE_CAMERA = [
    "--use-fake-device-for-media-stream",  # a generated test pattern instead of a camera
    "--use-fake-ui-for-media-stream",  # and no permission prompt
]
TEACH_CLASSES = ("circle", "cross", "line")


@pytest.fixture(scope="module")
def teach_page(
    playwright: sync_api.Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sync_api.Page]:
    """The Teach tab of a lab with no model yet, in a Chromium with a fake camera."""
    lab = Server("--runs-dir", str(tmp_path_factory.mktemp("teach") / "runs"))
    errors: list[str] = []
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=[*LAUNCH_ARGS, *FAKE_CAMERA]
    )
    tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    tab.set_default_timeout(30_000)
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(lab.url + "#teach")
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "lab-teach.png"), full_page=True)
    browser.close()
    lab.close()
    assert errors == []


def teach_strokes(kind: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Strokes of one drawing, as fractions of the pad's size."""
    cx, cy = rng.uniform(0.4, 0.6, 2)
    r = rng.uniform(0.22, 0.3)
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 24)
        return [[(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]]
    if kind == "cross":
        return [[(cx - r, cy - r), (cx + r, cy + r)], [(cx - r, cy + r), (cx + r, cy - r)]]
    return [[(cx - r, cy), (cx + r, cy + rng.uniform(-0.05, 0.05))]]


def draw_on_teach_pad(page: sync_api.Page, strokes: list[list[tuple[float, float]]]) -> None:
    box = page.locator("#teach-pad").bounding_box()
    for stroke in strokes:
        at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*at[0])
        page.mouse.down()
        for x, y in at[1:]:
            page.mouse.move(x, y, steps=3)
        page.mouse.up()


def test_teach_drawn_classes_then_the_camera_adds_and_predicts(teach_page) -> None:
    page = teach_page
    rng = np.random.default_rng(0)
    page.fill("#teach-names", ", ".join(TEACH_CLASSES))
    page.click("#teach-create")
    page.wait_for_selector("#teach-list button[data-class='line']")
    started = time.monotonic()
    for round_ in range(10):
        for name in TEACH_CLASSES:
            draw_on_teach_pad(page, teach_strokes(name, rng))
            page.click(f"#teach-list button[data-class='{name}']")
            count = f"{round_ + 1} example{'' if round_ == 0 else 's'}"
            page.wait_for_selector(f"#teach-list [data-count='{name}']:has-text('{count}')")
    # The examples answer at once, before any training, and the page says so.
    page.click("#teach-clear")
    shown = int(page.get_attribute("#teach-bars", "data-count") or 0)
    draw_on_teach_pad(page, teach_strokes("circle", rng))
    page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
    assert page.inner_text("#teach-answer") == "circle"
    note = page.inner_text("#teach-source-note")
    assert note == "answered from 30 examples, before training"
    training = time.monotonic()
    page.click("#teach-train")
    page.wait_for_selector("#teach-status:has-text('Trained')", timeout=180_000)
    trained = page.inner_text("#teach-status")  # the accuracy with its count of examples
    assert "held" in trained and re.search(r"\bof \d+\b", trained), trained
    answers = []
    for name in TEACH_CLASSES:
        page.click("#teach-clear")
        shown = int(page.get_attribute("#teach-bars", "data-count") or 0)
        draw_on_teach_pad(page, teach_strokes(name, rng))
        page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
        answers.append(page.inner_text("#teach-answer"))
        if len(answers) == 1:
            now = time.monotonic()
            print(f"first example to a trained model answering: {now - started:.1f} s "
                  f"(of which Train to the answer {now - training:.1f} s)")  # fmt: skip
    assert answers == list(TEACH_CLASSES)
    note = page.inner_text("#teach-source-note")
    assert note == "answered by the model trained on these 30 examples"
    bars = page.locator("#teach-bars li")
    assert bars.count() == 3
    assert page.is_visible("#teach-occlusion")
    # The occlusion map lies over the picture the answer is for, and a caption says what it
    # shows: in words alone when covering no part of the picture changes the answer.
    assert page.get_attribute("#teach-picture", "src").startswith("blob:")
    caption = page.inner_text("#teach-occlusion figcaption")
    if page.is_visible("#teach-occlusion-map"):
        assert caption.startswith(f"Where “{answers[-1]}” comes from: covering a red part")
        assert page.is_visible("#teach-scale")
    else:
        assert caption.startswith("Covering any part of the picture changes the probability")
    conf = page.inner_text("#teach-conf")  # worded as the Draw tab words its answers
    assert conf.endswith(f"sure it is {answers[-1]}") or conf.startswith("unsure: ")
    assert bars.first.get_attribute("aria-label").startswith(f"{TEACH_CLASSES[0]}: ")

    # An answer that is none of the classes, as the model's assessment would say it.
    def none_of_these(route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "known": False})

    page.route("**/api/teach/predict", none_of_these)
    page.click("#teach-clear")
    shown = int(page.get_attribute("#teach-bars", "data-count"))
    draw_on_teach_pad(page, teach_strokes("circle", rng))
    page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
    assert page.inner_text("#teach-answer") == "none of these"
    assert page.inner_text("#teach-conf").startswith("none of these (closest: ")
    page.unroute("**/api/teach/predict")

    # A map with one place that matters: drawn over the picture, red there, with its scale.
    rows, cols = np.mgrid[0:32, 0:32]
    spot = (0.4 * np.exp(-((rows - 20) ** 2 + (cols - 12) ** 2) / 20)).round(4)

    def one_spot(route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "occlusion_drop": spot.tolist()})

    page.route("**/api/teach/predict", one_spot)
    shown = int(page.get_attribute("#teach-bars", "data-count"))
    draw_on_teach_pad(page, teach_strokes("line", rng))
    page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
    assert page.is_visible("#teach-occlusion-map") and page.is_visible("#teach-scale")
    assert page.inner_text("#teach-scale").replace("\n", " ").endswith("−40 points")
    assert "by up to 40 points" in page.inner_text("#teach-occlusion figcaption")
    assert "red where covering it lowers" in page.get_attribute(
        "#teach-occlusion-map", "aria-label"
    )
    red, clear = page.evaluate(
        """() => {
            const c = document.getElementById("teach-occlusion-map").getContext("2d");
            return [Array.from(c.getImageData(12, 20, 1, 1).data),
                    Array.from(c.getImageData(30, 2, 1, 1).data)];
        }"""
    )
    assert red[0] > 200 and red[1] < 60 and red[3] > 180  # red and nearly opaque at the spot
    assert clear[3] == 0  # and clear where covering changes nothing
    page.unroute("**/api/teach/predict")

    # The fake camera: one snapshot becomes an example, and live predictions follow it.
    page.check("input[name='teach-source'][value='camera']")
    page.click("#teach-camera")
    page.wait_for_selector("#teach-camera:has-text('Stop camera')")  # the video plays
    page.click("#teach-list button[data-class='line']")
    page.wait_for_selector("#teach-list [data-count='line']:has-text('11 examples')")
    shown = int(page.get_attribute("#teach-bars", "data-count"))
    page.wait_for_selector(f"#teach-bars[data-count='{shown + 2}']")  # live, twice
    assert page.inner_text("#teach-answer") in TEACH_CLASSES
    page.click("#teach-camera")  # stop it


def test_a_slow_first_answer_does_not_undo_a_project_made_meanwhile(teach_page) -> None:
    page = teach_page.context.new_page()
    held: list[tuple[sync_api.Route, sync_api.APIResponse]] = []

    def hold_the_first_look(route: sync_api.Route) -> None:
        if route.request.method == "GET" and not held:  # the server answers now, with no
            held.append((route, route.fetch()))  # project; the page gets it only later
        else:
            route.continue_()

    page.route("**/api/teach/project", hold_the_first_look)
    page.goto(teach_page.url.split("#")[0] + "#teach")
    page.wait_for_selector("#teach-create")
    page.fill("#teach-names", "sun, moon")
    page.click("#teach-create")
    page.wait_for_selector("#teach-list button[data-class='moon']")
    with page.expect_response(lambda r: r.request.method == "GET" and "teach/project" in r.url):
        held[0][0].fulfill(response=held[0][1])
    page.wait_for_timeout(300)  # the page's handler of that answer has run
    assert page.locator("#teach-list .teach-class-name").all_inner_texts() == ["sun", "moon"]
    page.close()


def test_teach_lists_classes_as_typed_with_thumbnails_a_click_removes(teach_page, tmp_path):
    page = teach_page
    page.check("input[name='teach-source'][value='pad']")  # drawings, whatever came before
    typed = ["line", "cross", "circle"]  # not alphabetical: the list keeps this order
    page.fill("#teach-names", ", ".join(typed))
    page.click("#teach-create")
    page.wait_for_selector("#teach-list li:first-child [data-count='line']:has-text('0 examples')")
    assert page.locator("#teach-list .teach-class-name").all_inner_texts() == typed
    rng = np.random.default_rng(5)
    for n in (1, 2):
        page.click("#teach-clear")
        draw_on_teach_pad(page, teach_strokes("line", rng))
        page.click("#teach-list button[data-class='line']")
        page.wait_for_selector(f"[data-thumbs='line'] .thumb >> nth={n - 1}")
    # An uploaded picture, through the styled Upload button's file input.
    picture = tmp_path / "square.png"
    picture.write_bytes(digit_png(np.pad(np.full((8, 8), 255, np.uint8), 10), scale=4))
    page.set_input_files("input[data-upload='circle']", str(picture))
    page.wait_for_selector("[data-thumbs='circle'] .thumb")
    thumbs = page.locator("[data-thumbs='line'] .thumb")
    assert thumbs.count() == 2
    loaded = "(img) => img.complete && img.naturalWidth"
    page.wait_for_function(
        "() => [...document.querySelectorAll('#teach-list .thumb img')]"
        ".every((img) => img.complete && img.naturalWidth === 64)"
    )
    assert page.locator("[data-thumbs='circle'] .thumb img").evaluate(loaded) == 64
    assert thumbs.first.get_attribute("aria-label") == "Remove example 1 of “line”"

    thumbs.first.click()
    page.wait_for_selector("#teach-list [data-count='line']:has-text('1 example')")
    assert page.locator("[data-thumbs='line'] .thumb").count() == 1
    assert page.locator("[data-thumbs='line'] .thumb").get_attribute("data-example") == "0001"
    assert page.inner_text("#teach-status") == "Removed an example of “line”."

    page.reload()  # the server remembers the order, and the examples left
    page.wait_for_selector("#teach-list [data-count='line']:has-text('1 example')")
    assert page.locator("#teach-list .teach-class-name").all_inner_texts() == typed
    assert page.locator("#teach-list .thumb").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-teach-thumbnails.png"), full_page=True)
