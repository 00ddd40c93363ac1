"""The annotation page's HTTP server: the standard library's threaded server, bound to one host, serving the
package's assets and a few routes over the session's cases, box file, backbone preview and predictions.

No route takes a file path: cases and slices are list positions, assets come from
a fixed list, so nothing outside the inputs and the box file can be read or written.
Requests whose Host header is not the printed one are refused (DNS rebinding); on a
host other than the loopback one, a token in the printed URL (kept as a cookie) is
required as well.
"""

from __future__ import annotations

import errno
import json
import secrets
import socket
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from medprompt.annotate.box_store import BoxStore, SliceBoxes
from medprompt.annotate.images import CaseImages
from medprompt.annotate.overlay import PredictionOverlay
from medprompt.annotate.preview import MaskPreview
from medprompt.common.errors import MedpromptError

BOXES_NEEDED = 10  # slices with a box that a training run of the default recipe takes (`train --shots 10`)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/annotate.js": ("annotate.js", "text/javascript; charset=utf-8"),
          "/static/annotate.css": ("annotate.css", "text/css; charset=utf-8")}
COOKIE = "medprompt_token"
MAX_BODY = 1 << 20


@dataclass
class Session:
    """Everything the page works on."""

    images: CaseImages
    store: BoxStore
    preview: MaskPreview | None = None
    overlay: PredictionOverlay | None = None
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def url(self) -> str:
        """The URL to open (with the token where one is needed)."""
        return f"http://{self.authority}/" + (f"?token={self.token}" if self.token else "")

    @property
    def authority(self) -> str:
        """host:port as printed, the only Host header accepted."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def state(self) -> dict[str, Any]:
        """What the page needs on opening: the cases, the saved boxes and what the server can do."""
        version, boxes = self.store.snapshot()
        # a folder's slice counts come with each case's first slice (`/api/case`): no volume is read to open the page
        return {"cases": [{"name": c.name, "slices": None if c.slices is None else list(c.slices),
                           "has_label": c.label is not None} for c in self.images.cases],
                "needed": BOXES_NEEDED, "preview": self.preview is not None, "predictions": self.overlay is not None,
                "box_file": str(self.store.path), **self.boxes_json(version, boxes)}

    def boxes_json(self, version: str, boxes: SliceBoxes) -> dict[str, Any]:
        """Boxes keyed by case list position, as the page holds them."""
        listed = []
        for (name, k), arr in sorted(boxes.items()):
            listed.append({"case": self.images.index_of(name), "name": name, "slice": k, "boxes": arr})
        return {"version": version, "boxes": listed}


def make_server(session: Session, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the page's server (port 0: a free one) and record the host and port it prints."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("AnnotationServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    try:
        server = server_class((host, port), _handler(session))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MedpromptError(f"--port {port}: already in use; choose another, or --port 0 for a free one") from None
        raise MedpromptError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    session.port = server.server_address[1]
    session.host = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if session.host not in LOOPBACK and session.token is None:
        session.token = secrets.token_urlsafe(16)
    return server


def _handler(session: Session) -> type[BaseHTTPRequestHandler]:
    class Handler(AnnotationHandler):
        pass

    Handler.session = session
    return Handler


class RequestError(Exception):
    """A request the page should not have sent: answered with its status and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status


class AnnotationHandler(BaseHTTPRequestHandler):
    session: Session
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL and errors only."""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        try:
            self._check_host()
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._check_token(url.path, query)
            route = ROUTES.get((method, url.path))
            if route is None:
                if url.path in ASSETS and method == "GET":
                    return self._asset(url.path, query)
                raise RequestError(HTTPStatus.NOT_FOUND, "not found")
            route(self, query)
        except RequestError as exc:
            self._send(exc.status, json.dumps({"error": str(exc)}).encode(), "application/json")
        except MedpromptError as exc:
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps({"error": str(exc)}).encode(), "application/json")

    def _check_host(self) -> None:
        if self.headers.get("Host") != self.session.authority:
            raise RequestError(HTTPStatus.FORBIDDEN, f"Host must be {self.session.authority}")

    def _check_token(self, path: str, query: dict[str, str]) -> None:
        token = self.session.token
        if token is None:
            return
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        given = query.get("token") or (cookie[COOKIE].value if COOKIE in cookie else "")
        if not secrets.compare_digest(given, token):
            raise RequestError(HTTPStatus.FORBIDDEN, "open the URL the server printed (it carries the token)")

    def _asset(self, path: str, query: dict[str, str]) -> None:
        name, content_type = ASSETS[path]
        body = (resources.files("medprompt.annotate") / "static" / name).read_bytes()
        headers = {}
        if self.session.token and "token" in query:
            headers["Set-Cookie"] = f"{COOKIE}={self.session.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(HTTPStatus.OK, body, content_type, headers)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(value).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise RequestError(HTTPStatus.BAD_REQUEST, "expected a JSON body")
        try:
            body = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _slice(self, values: dict[str, Any]) -> tuple[int, int, np.ndarray]:
        """The (case position, slice index, image slice) a request names, or 404."""
        try:
            case, k = int(values["case"]), int(values["slice"])
            if k not in self.session.images.slice_indices(case):
                raise KeyError(k)
            return case, k, self.session.images.image_slice(case, k)
        except (KeyError, ValueError, TypeError):
            raise RequestError(HTTPStatus.NOT_FOUND, "no such case or slice") from None

    def state(self, query: dict[str, str]) -> None:
        self._json(self.session.state())

    def case_slices(self, query: dict[str, str]) -> None:
        try:
            self._json({"slices": list(self.session.images.slice_indices(int(query["case"])))})
        except (KeyError, ValueError):
            raise RequestError(HTTPStatus.NOT_FOUND, "no such case") from None

    def image(self, query: dict[str, str]) -> None:
        case, k, image = self._slice(query)
        low, high = self.session.images.volume(case).window
        rows, cols = image.shape
        self._send(HTTPStatus.OK, np.ascontiguousarray(image, dtype="<f4").tobytes(), "application/octet-stream",
                   {"X-Rows": str(rows), "X-Cols": str(cols), "X-Window-Low": f"{low:g}", "X-Window-High": f"{high:g}"})

    def save_boxes(self, query: dict[str, str]) -> None:
        body = self._body()
        case, k, image = self._slice(body)
        boxes = _checked_boxes(body.get("boxes"), image.shape)
        seen = _checked_boxes(body.get("seen", []), None)
        name = self.session.images.case(case).name
        result = self.session.store.save_slice(name, k, boxes, str(body.get("version", "")), seen)
        self._json({**self.session.boxes_json(result.version, result.boxes),
                    "changed_elsewhere": result.changed_elsewhere, "replaced_other": result.replaced_other})

    def mask(self, query: dict[str, str]) -> None:
        if self.session.preview is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "the server runs without the backbone's preview (--no-preview)")
        body = self._body()
        case, k, image = self._slice(body)
        boxes = _checked_boxes(body.get("boxes"), image.shape)
        mask = self.session.preview.mask((self.session.images.case(case).name, k), image, boxes)
        self._send(HTTPStatus.OK, mask.tobytes(), "application/octet-stream")

    def prediction(self, query: dict[str, str]) -> None:
        if self.session.overlay is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "the server runs without --predictions")
        case, k, _ = self._slice(query)
        mask, score = self.session.overlay.slice(case, k)
        if mask is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no prediction for this case")
        self._send(HTTPStatus.OK, mask.tobytes(), "application/octet-stream",
                   {"X-Dice": "" if score is None else f"{score:.4f}"})


ROUTES = {("GET", "/api/state"): AnnotationHandler.state, ("GET", "/api/case"): AnnotationHandler.case_slices,
          ("GET", "/api/slice"): AnnotationHandler.image,
          ("POST", "/api/boxes"): AnnotationHandler.save_boxes, ("POST", "/api/mask"): AnnotationHandler.mask,
          ("GET", "/api/prediction"): AnnotationHandler.prediction}


def _checked_boxes(value: Any, shape: tuple[int, int] | None) -> list[list[int]]:
    """A list of [x_min, y_min, x_max, y_max] integer boxes, inside a slice of `shape` (rows, cols) when given."""
    if not isinstance(value, list) or not all(isinstance(b, list) and len(b) == 4 for b in value):
        raise RequestError(HTTPStatus.BAD_REQUEST, "boxes must be a list of [x_min, y_min, x_max, y_max]")
    if not all(isinstance(v, int) and not isinstance(v, bool) for b in value for v in b):
        raise RequestError(HTTPStatus.BAD_REQUEST, "box coordinates must be integers (source pixels)")
    for x0, y0, x1, y1 in value:
        inside = shape is None or (x1 <= shape[1] - 1 and y1 <= shape[0] - 1)
        if not (0 <= x0 <= x1 and 0 <= y0 <= y1 and inside):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"box {[x0, y0, x1, y1]} is outside the slice or inverted")
    return value
