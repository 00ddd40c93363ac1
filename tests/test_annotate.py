"""`medprompt annotate`: the box file it keeps, the requests it refuses, and the page driven in headless Chromium
with the real LiteMedSAM preview (skipped where Chromium, its driver or selenium is not installed)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from helpers import SHARED_DATA, expect_error
from medprompt.annotate.box_store import BoxStore
from medprompt.annotate.images import CaseImage, CaseImages
from medprompt.annotate.overlay import PredictionOverlay
from medprompt.annotate.server import Session, make_server
from medprompt.cli.main import main
from medprompt.data.boxes import read_box_csv, read_source_table
from medprompt.data.dataset import PreprocessedDataset
from medprompt.data.volume_io import read_volume

ACDC_IMAGE = SHARED_DATA / "ACDC" / "training" / "patient001" / "patient001_frame01.nii.gz"


def write_phantom(folder: Path, name: str = "heart") -> Path:
    """A 4-slice NIfTI of 80 rows x 96 columns with a bright disc (and its label map beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[:80, :96]
    disc = ((rows - 40) ** 2 + (cols - 50) ** 2 < 15 ** 2).astype(np.uint8)
    volume = np.stack([disc * 200.0 + 20.0] * 4)  # [slices, rows, cols]
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0).astype(np.float32), affine), folder / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([disc] * 4).transpose(2, 1, 0), affine), folder / f"{name}_gt.nii.gz")
    return folder / f"{name}.nii.gz"


@contextmanager
def serving(session: Session):
    server = make_server(session, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield session
    finally:
        server.shutdown()
        server.server_close()


def request(session: Session, method: str, path: str, body: dict | None = None, host: str | None = None,
            headers: dict | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    """A raw request: the path is sent as written (no client-side normalisation of `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", session.port, timeout=60)
    connection.putrequest(method, path, skip_host=True)
    connection.putheader("Host", host or session.authority)
    for key, value in (headers or {}).items():
        connection.putheader(key, value)
    data = json.dumps(body).encode() if body is not None else b""
    connection.putheader("Content-Length", str(len(data)))
    connection.endheaders(data)
    response = connection.getresponse()
    return response.status, response.read(), response


def phantom_session(tmp_path: Path) -> Session:
    image = write_phantom(tmp_path / "images")
    return Session(CaseImages([CaseImage("heart", image, tmp_path / "images" / "heart_gt.nii.gz")]),
                   BoxStore(tmp_path / "boxes.csv"))


def test_two_writers_never_lose_a_box_and_the_later_one_is_told(tmp_path):
    path = tmp_path / "boxes.csv"
    first, second = BoxStore(path), BoxStore(path)
    version, _ = first.snapshot()
    assert version == ""
    one = first.save_slice("heart", 1, [[10, 12, 30, 40]], version, [])
    assert not one.changed_elsewhere and not one.replaced_other
    two = second.save_slice("heart", 2, [[5, 6, 7, 8], [20, 21, 22, 23]], version, [])  # a page opened earlier
    assert two.changed_elsewhere and not two.replaced_other
    assert two.boxes == {("heart", 1): [[10, 12, 30, 40]], ("heart", 2): [[5, 6, 7, 8], [20, 21, 22, 23]]}
    three = second.save_slice("heart", 1, [[11, 12, 30, 40]], version, [])  # it had seen no box on slice 1
    assert three.replaced_other and three.boxes[("heart", 1)] == [[11, 12, 30, 40]]
    table = read_source_table(path)
    assert table.case.tolist() == ["heart"] * 3
    assert table[["slice_index", "x_min", "y_min", "x_max", "y_max"]].astype(int).values.tolist() == [
        [1, 11, 12, 30, 40], [2, 5, 6, 7, 8], [2, 20, 21, 22, 23]]
    emptied = first.save_slice("heart", 2, [], three.version, two.boxes[("heart", 2)])
    assert not emptied.changed_elsewhere and ("heart", 2) not in emptied.boxes


def test_boxes_saved_over_http_are_what_train_reads(tmp_path):
    session = phantom_session(tmp_path)
    with serving(session):
        status, body, _ = request(session, "GET", "/api/state")
        state = json.loads(body)
        assert status == 200 and state["cases"] == [{"name": "heart", "slices": None, "has_label": True}]
        assert json.loads(request(session, "GET", "/api/case?case=0")[1]) == {"slices": [0, 1, 2, 3]}
        assert request(session, "GET", "/api/case?case=1")[0] == 404
        status, body, response = request(session, "GET", "/api/slice?case=0&slice=2")
        assert status == 200 and (response.headers["X-Rows"], response.headers["X-Cols"]) == ("80", "96")
        image, _ = read_volume(tmp_path / "images" / "heart.nii.gz")
        assert np.array_equal(np.frombuffer(body, "<f4").reshape(80, 96), image[2])
        box = [35, 25, 64, 54]  # x_min, y_min, x_max, y_max around the disc (columns 36-64, rows 26-54)
        status, body, _ = request(session, "POST", "/api/boxes",
                                  {"case": 0, "slice": 2, "boxes": [box], "version": state["version"], "seen": []})
        assert status == 200 and json.loads(body)["boxes"] == [{"case": 0, "name": "heart", "slice": 2, "boxes": [box]}]
    assert main(["preprocess", "folder", str(tmp_path / "images"), str(tmp_path / "data")]) == 0
    dataset = PreprocessedDataset(tmp_path / "data")
    boxes = read_box_csv(tmp_path / "boxes.csv", dataset)
    (slice_id,) = boxes
    row = dataset.manifest.iloc[dataset.index_of[slice_id]]
    assert (row.case, int(row.slice_index)) == ("heart", 2)
    mask = dataset.masks([dataset.index_of[slice_id]])[0] == dataset.target_label
    ys, xs = np.nonzero(mask)
    tight = [xs.min(), ys.min(), xs.max(), ys.max()]  # the box drawn one pixel wider than the disc on each side
    assert np.abs(boxes[slice_id][0] - tight).max() <= 3


def test_requests_outside_the_inputs_are_refused(tmp_path):
    session = phantom_session(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    (tmp_path / "images" / "link.txt").symlink_to(secret)
    with serving(session):
        for path in ("/../secret.txt", "/static/../../secret.txt", "/static/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                     "//etc/passwd", f"/{secret}", "/images/link.txt", "/link.txt", "/static/annotate.js/../../x",
                     "/api/slice?case=0&slice=9", "/api/slice?case=../secret&slice=0", "/api/slice?case=1&slice=0"):
            status, body, _ = request(session, "GET", path)
            assert status == 404, path
            assert b"not for the page" not in body
        assert request(session, "GET", "/static/annotate.js")[0] == 200
        assert request(session, "GET", "/api/state", host="attacker.example:80")[0] == 403
        assert request(session, "GET", "/", host=f"localhost:{session.port}")[0] == 403
        outside = {"case": 0, "slice": 1, "boxes": [[0, 0, 96, 10]], "version": "", "seen": []}  # column 96 of 0-95
        status, body, _ = request(session, "POST", "/api/boxes", outside)
        assert status == 400 and "outside" in json.loads(body)["error"]
        assert request(session, "POST", "/api/boxes", {"case": 0, "slice": 1, "boxes": [[1.5, 0, 3, 4]]})[0] == 400
    assert not (tmp_path / "boxes.csv").exists()


def test_a_prediction_is_shown_with_its_dice_on_each_slice(tmp_path):
    session = phantom_session(tmp_path)
    predicted = tmp_path / "predictions"
    predicted.mkdir()
    shutil.copy(tmp_path / "images" / "heart_gt.nii.gz", predicted / "heart.nii.gz")  # a perfect prediction
    session.overlay = PredictionOverlay(predicted, session.images)
    with serving(session):
        status, body, response = request(session, "GET", "/api/prediction?case=0&slice=3")
        assert status == 200 and response.headers["X-Dice"] == "1.0000"
        expected = read_volume(tmp_path / "images" / "heart_gt.nii.gz")[0][3]
        assert np.array_equal(np.frombuffer(body, np.uint8).reshape(80, 96), expected)
        assert json.loads(request(session, "GET", "/api/state")[1])["predictions"] is True


def test_a_token_guards_the_page_when_it_is_opened_wider(tmp_path):
    session = phantom_session(tmp_path)
    session.token = "s3cret-token"
    with serving(session):
        assert session.url.endswith("/?token=s3cret-token")
        assert request(session, "GET", "/api/state")[0] == 403
        assert request(session, "GET", "/?token=wrong")[0] == 403
        status, _, response = request(session, "GET", "/?token=s3cret-token")
        assert status == 200
        cookie = response.headers["Set-Cookie"].split(";")[0]
        assert request(session, "GET", "/api/state", headers={"Cookie": cookie})[0] == 200


def test_bad_inputs_are_refused_in_one_line_and_a_damaged_box_file_is_kept(tmp_path, capsys):
    expect_error(capsys, ["annotate", str(tmp_path / "missing"), "--boxes", str(tmp_path / "b.csv"), "--no-browser"],
                 "missing", "no such file or folder")
    write_phantom(tmp_path / "images")
    damaged = tmp_path / "boxes.csv"
    damaged.write_text("case,slice_index,x_min\nheart,0,3\n")
    expect_error(capsys, ["annotate", str(tmp_path / "images"), "--boxes", str(damaged), "--no-browser"],
                 "boxes.csv", "missing columns")
    assert damaged.read_text() == "case,slice_index,x_min\nheart,0,3\n"
    (tmp_path / "predictions").mkdir()
    write_phantom(tmp_path / "predictions", "another")
    expect_error(capsys, ["annotate", str(tmp_path / "images"), "--boxes", str(tmp_path / "b.csv"), "--no-browser",
                          "--predictions", str(tmp_path / "predictions")], "--predictions", "no file named after")


def browser():
    """Headless Debian Chromium through selenium, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def wait_for(condition, timeout: float = 90.0, what: str = "the page"):
    """Poll `condition` until it returns something true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rows_of(path: Path) -> list[list]:
    if not path.exists():
        return []
    table = read_source_table(path)
    return [[r.case, int(r.slice_index), *(int(getattr(r, c)) for c in ("x_min", "y_min", "x_max", "y_max"))]
            for r in table.itertuples()]


def test_a_box_drawn_in_chromium_is_saved_in_source_pixels_and_previewed_by_lite_medsam(tmp_path):
    driver = browser()
    images = tmp_path / "images"
    if ACDC_IMAGE.is_file():
        images.mkdir()
        shutil.copy(ACDC_IMAGE, images / ACDC_IMAGE.name)
    else:
        write_phantom(images, "patient001_frame01")
    boxes = tmp_path / "boxes.csv"
    server = subprocess.Popen([sys.executable, "-m", "medprompt", "annotate", str(images), "--boxes", str(boxes),
                               "--port", "0", "--no-browser", "--engine", "torch"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/"), url
        driver.get(url)
        ready = wait_for(lambda: driver.execute_script("return document.body.dataset.ready"))
        case, slice_index = 0, int(ready.split(":")[1])
        canvas = driver.find_element("id", "slice")
        rows, cols = driver.execute_script("return [state.rows, state.cols]")
        width, height = canvas.size["width"], canvas.size["height"]

        def drag(start, end):
            """A mouse drag between two points given in canvas CSS pixels from its top-left corner."""
            from selenium.webdriver import ActionChains

            def offset(p):
                return int(p[0] - width / 2), int(p[1] - height / 2)

            (ActionChains(driver).move_to_element_with_offset(canvas, *offset(start)).click_and_hold()
             .move_to_element_with_offset(canvas, *offset(end)).release().perform())

        start, end = (0.35 * width, 0.30 * height), (0.62 * width, 0.58 * height)
        drag(start, end)
        expected = [start[0] * cols / width, start[1] * rows / height, end[0] * cols / width, end[1] * rows / height]
        saved = wait_for(lambda: rows_of(boxes), what="the box in boxes.csv")
        assert len(saved) == 1 and saved[0][:2] == ["patient001_frame01", slice_index]
        assert np.abs(np.array(saved[0][2:]) - np.floor(expected)).max() <= 1, (saved, expected)

        wait_for(lambda: driver.execute_script("return document.body.dataset.preview") == ready, what="the preview")
        mask = np.frombuffer(request_mask(url, case, slice_index, saved[0][2:]), np.uint8).reshape(rows, cols)
        x0, y0, x1, y1 = saved[0][2:]
        assert mask.sum() > 50 and mask[y0:y1 + 1, x0:x1 + 1].sum() >= 0.95 * mask.sum()
        driver.save_screenshot(str(tmp_path / "annotate.png"))
        assert (tmp_path / "annotate.png").stat().st_size > 10_000
        if os.environ.get("MEDPROMPT_SCREENSHOT"):  # how docs/annotate.png was taken
            shutil.copy(tmp_path / "annotate.png", os.environ["MEDPROMPT_SCREENSHOT"])

        driver.refresh()
        wait_for(lambda: driver.execute_script("return document.body.dataset.ready") == ready, what="the reload")
        assert driver.execute_script("return state.current") == [saved[0][2:]]
        canvas = driver.find_element("id", "slice")

        other = {"case": case, "slice": slice_index - 1, "boxes": [[1, 2, 3, 4]], "version": "", "seen": []}
        post(url, "/api/boxes", other)  # another page saves a box on the slice before
        centre = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        from selenium.webdriver import ActionChains, Keys

        ActionChains(driver).move_to_element_with_offset(canvas, int(centre[0] - width / 2),
                                                         int(centre[1] - height / 2)).click().perform()
        canvas.send_keys(Keys.DELETE)
        wait_for(lambda: [r[1] for r in rows_of(boxes)] == [slice_index - 1], what="the deleted box's row to go")
        notice = wait_for(lambda: driver.find_element("id", "notice").text, what="the notice")
        assert "another page" in notice
        canvas.send_keys(Keys.ARROW_RIGHT)
        following = f"0:{slice_index + 1}"
        wait_for(lambda: driver.execute_script("return document.body.dataset.ready") == following, what="next slice")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)


def post(url: str, path: str, body: dict) -> bytes:
    host, port = url.split("//")[1].strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    return response.read()


def request_mask(url: str, case: int, slice_index: int, box: list[int]) -> bytes:
    return post(url, "/api/mask", {"case": case, "slice": slice_index, "boxes": [box]})
