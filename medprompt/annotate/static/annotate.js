"use strict";
// The annotation page: one slice on a canvas in source pixels, boxes drawn, moved, resized and deleted with the
// mouse, every change saved to the server at once, the backbone's mask of the boxes and a prediction over it.

const HANDLE_PX = 7;  // screen pixels around a corner that grab it

const $ = (id) => document.getElementById(id);
const canvas = $("slice");
const context = canvas.getContext("2d");

const state = {
  cases: [], needed: 10, preview: false, predictions: false,
  version: "", saved: new Map(),          // "case:slice" -> boxes as the server last sent them
  caseIndex: 0, slicePos: 0,
  image: null, rows: 0, cols: 0, min: 0, max: 1, autoWindow: [0, 1], level: 0.5, width: 1,
  current: [], selected: -1,              // the shown slice's boxes while they are edited
  previewMask: null, predictionMask: null, request: 0,
  drag: null,
};

const key = (c, s) => `${c}:${s}`;
const sliceIndex = () => state.cases[state.caseIndex].slices[state.slicePos];
const copyBoxes = (boxes) => (boxes || []).map((b) => b.slice());

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text || "";
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  if (!response.ok) {
    let reason = response.statusText;
    try { reason = (await response.json()).error; } catch (e) { /* not JSON */ }
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return response;
}

function takeBoxes(answer) {
  state.version = answer.version;
  state.saved = new Map(answer.boxes.map((entry) => [key(entry.case, entry.slice), entry.boxes]));
  document.body.dataset.version = answer.version;
  updateCounter();
}

function updateCounter() {
  const boxed = [...state.saved.values()].filter((boxes) => boxes.length > 0).length;
  $("counter").textContent = `${boxed} / ${state.needed} slices boxed`;
  $("counter").classList.toggle("enough", boxed >= state.needed);
}

async function start() {
  const answer = await (await api("/api/state")).json();
  Object.assign(state, {cases: answer.cases, needed: answer.needed, preview: answer.preview,
                        predictions: answer.predictions});
  $("box-file").textContent = answer.box_file;
  $("show-preview").disabled = !answer.preview;
  $("show-prediction").disabled = !answer.predictions;
  answer.cases.forEach((c, i) => $("case").add(new Option(c.name, i)));
  takeBoxes(answer);
  await showCase(0);
}

async function showCase(index) {
  state.caseIndex = Math.max(0, Math.min(state.cases.length - 1, index));
  $("case").value = state.caseIndex;
  state.autoWindow = null;
  const shown = state.cases[state.caseIndex];
  if (shown.slices === null) {
    shown.slices = (await (await api(`/api/case?case=${state.caseIndex}`)).json()).slices;
  }
  await showSlice(Math.floor(state.cases[state.caseIndex].slices.length / 2));
}

async function showSlice(position) {
  const slices = state.cases[state.caseIndex].slices;
  state.slicePos = Math.max(0, Math.min(slices.length - 1, position));
  const c = state.caseIndex, s = sliceIndex();
  document.body.dataset.ready = "";
  const response = await api(`/api/slice?case=${c}&slice=${s}`);
  if (c !== state.caseIndex || s !== sliceIndex()) return;
  state.rows = Number(response.headers.get("X-Rows"));
  state.cols = Number(response.headers.get("X-Cols"));
  state.image = new Float32Array(await response.arrayBuffer());
  state.min = state.image.reduce((a, b) => Math.min(a, b), Infinity);
  state.max = state.image.reduce((a, b) => Math.max(a, b), -Infinity);
  if (!state.autoWindow) {
    state.autoWindow = [Number(response.headers.get("X-Window-Low")), Number(response.headers.get("X-Window-High"))];
    autoWindow();
  }
  canvas.width = state.cols;
  canvas.height = state.rows;
  state.current = copyBoxes(state.saved.get(key(c, s)));
  state.selected = -1;
  state.previewMask = null;
  state.predictionMask = null;
  $("slice-label").textContent = `slice ${s} (${state.slicePos + 1} of ${slices.length})`;
  $("dice").textContent = "";
  draw();
  document.body.dataset.ready = key(c, s);
  $("status").textContent = `${state.cases[c].name}, ${state.cols} x ${state.rows} pixels`;
  requestPreview();
  requestPrediction();
}

function autoWindow() {
  const [low, high] = state.autoWindow;
  state.level = (low + high) / 2;
  state.width = Math.max(high - low, 1e-6);
  syncSliders();
  draw();
}

function syncSliders() {
  const span = Math.max(state.max - state.min, 1e-6);
  $("level").value = Math.round(((state.level - state.min) / span) * 1000);
  $("window").value = Math.max(1, Math.round((state.width / span) * 1000));
}

function readSliders() {
  const span = Math.max(state.max - state.min, 1e-6);
  state.level = state.min + (Number($("level").value) / 1000) * span;
  state.width = (Number($("window").value) / 1000) * span;
  draw();
}

function draw() {
  if (!state.image) return;
  const pixels = context.createImageData(state.cols, state.rows);
  const low = state.level - state.width / 2, scale = 255 / state.width;
  const preview = $("show-preview").checked ? state.previewMask : null;
  const prediction = $("show-prediction").checked ? state.predictionMask : null;
  for (let i = 0, p = 0; i < state.image.length; i += 1, p += 4) {
    const grey = Math.max(0, Math.min(255, (state.image[i] - low) * scale));
    let r = grey, g = grey, b = grey;
    if (prediction && prediction[i]) { r = 0.6 * r + 102; b = 0.6 * b + 102; g = 0.6 * g; }
    if (preview && preview[i]) { g = 0.6 * g + 102; r = 0.6 * r; b = 0.6 * b; }
    pixels.data[p] = r; pixels.data[p + 1] = g; pixels.data[p + 2] = b; pixels.data[p + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  const line = Math.max(1, state.cols / canvas.getBoundingClientRect().width);
  state.current.forEach((box, i) => {
    context.strokeStyle = i === state.selected ? "#00e5ff" : "#ffd400";
    context.lineWidth = line;
    context.strokeRect(box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1);
    if (i === state.selected) {
      context.fillStyle = "#00e5ff";
      corners(box).forEach(([x, y]) => context.fillRect(x - 2 * line, y - 2 * line, 4 * line, 4 * line));
    }
  });
  const drawing = state.drag && state.drag.mode === "draw" ? state.drag.box : null;
  if (drawing) {
    context.strokeStyle = "#ffd400";
    context.setLineDash([3 * line, 3 * line]);
    context.strokeRect(drawing[0], drawing[1], drawing[2] - drawing[0] + 1, drawing[3] - drawing[1] + 1);
    context.setLineDash([]);
  }
  $("delete-box").disabled = state.selected < 0;
}

// corners as [x, y] of the pixel edges: 0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left
const corners = (b) => [[b[0], b[1]], [b[2] + 1, b[1]], [b[2] + 1, b[3] + 1], [b[0], b[3] + 1]];

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  return {x: ((event.clientX - rect.left) * state.cols) / rect.width,
          y: ((event.clientY - rect.top) * state.rows) / rect.height,
          tolerance: (HANDLE_PX * state.cols) / rect.width};
}

const clampX = (x) => Math.max(0, Math.min(state.cols - 1, Math.floor(x)));
const clampY = (y) => Math.max(0, Math.min(state.rows - 1, Math.floor(y)));

function hitTest(point) {
  if (state.selected >= 0) {
    const corner = corners(state.current[state.selected]).findIndex(
      ([x, y]) => Math.abs(x - point.x) <= point.tolerance && Math.abs(y - point.y) <= point.tolerance);
    if (corner >= 0) return {mode: "resize", index: state.selected, corner};
  }
  for (let i = state.current.length - 1; i >= 0; i -= 1) {
    const b = state.current[i];
    if (point.x >= b[0] && point.x < b[2] + 1 && point.y >= b[1] && point.y < b[3] + 1) return {mode: "move", index: i};
  }
  return {mode: "draw"};
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.image || event.button !== 0) return;
  canvas.focus();
  const point = imagePoint(event);
  const hit = hitTest(point);
  state.drag = {...hit, start: point, moved: false};
  if (hit.mode === "draw") {
    state.selected = -1;
    const x = clampX(point.x), y = clampY(point.y);
    state.drag.box = [x, y, x, y];
  } else {
    state.selected = hit.index;
    state.drag.original = state.current[hit.index].slice();
  }
  draw();
  event.preventDefault();
});

window.addEventListener("mousemove", (event) => {
  const drag = state.drag;
  if (!drag) return;
  const point = imagePoint(event);
  drag.moved = drag.moved || Math.abs(point.x - drag.start.x) + Math.abs(point.y - drag.start.y) > 0.5;
  if (drag.mode === "draw") {
    const x0 = clampX(drag.start.x), y0 = clampY(drag.start.y), x1 = clampX(point.x), y1 = clampY(point.y);
    drag.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
  } else if (drag.mode === "move") {
    const o = drag.original;
    const dx = Math.max(-o[0], Math.min(state.cols - 1 - o[2], Math.round(point.x - drag.start.x)));
    const dy = Math.max(-o[1], Math.min(state.rows - 1 - o[3], Math.round(point.y - drag.start.y)));
    state.current[drag.index] = [o[0] + dx, o[1] + dy, o[2] + dx, o[3] + dy];
  } else {
    const o = drag.original, c = drag.corner;
    const x = c === 0 || c === 3 ? [clampX(point.x), o[2]] : [o[0], clampX(point.x - 1)];
    const y = c === 0 || c === 1 ? [clampY(point.y), o[3]] : [o[1], clampY(point.y - 1)];
    state.current[drag.index] = [Math.min(...x), Math.min(...y), Math.max(...x), Math.max(...y)];
  }
  draw();
});

window.addEventListener("mouseup", () => {
  const drag = state.drag;
  if (!drag) return;
  state.drag = null;
  if (drag.mode === "draw") {
    const b = drag.box;
    if (drag.moved && b[2] > b[0] && b[3] > b[1]) {
      state.current.push(b);
      state.selected = state.current.length - 1;
      save();
    }
  } else if (drag.moved) {
    save();
  }
  draw();
});

function deleteSelected() {
  if (state.selected < 0) return;
  state.current.splice(state.selected, 1);
  state.selected = -1;
  draw();
  save();
}

async function save() {
  const c = state.caseIndex, s = sliceIndex();
  const boxes = copyBoxes(state.current);
  $("status").textContent = "saving...";
  try {
    const answer = await (await api("/api/boxes", {
      case: c, slice: s, boxes, version: state.version, seen: state.saved.get(key(c, s)) || [],
    })).json();
    takeBoxes(answer);
    const messages = [];
    if (answer.replaced_other) messages.push("another page had saved other boxes on this slice; yours replaced them");
    if (answer.changed_elsewhere) messages.push("the box file had been changed by another page; its boxes are shown");
    notice(messages.join(". "));
    $("status").textContent = `saved (${boxes.length} box${boxes.length === 1 ? "" : "es"} on this slice)`;
    if (c === state.caseIndex && s === sliceIndex() && !state.drag) {
      state.current = copyBoxes(state.saved.get(key(c, s)));
      state.selected = Math.min(state.selected, state.current.length - 1);
      draw();
    }
    requestPreview();
  } catch (error) {
    notice(`not saved: ${error.message}`);
  }
}

async function requestPreview() {
  if (!state.preview) return;
  const c = state.caseIndex, s = sliceIndex(), request = ++state.request;
  if (state.current.length === 0) {
    state.previewMask = null;
    draw();
    return;
  }
  $("status").textContent = "the backbone is segmenting the boxes...";
  try {
    const response = await api("/api/mask", {case: c, slice: s, boxes: copyBoxes(state.current)});
    const mask = new Uint8Array(await response.arrayBuffer());
    if (request !== state.request) return;
    state.previewMask = mask;
    $("status").textContent = "the backbone's mask of the boxes is shown in green";
    document.body.dataset.preview = key(c, s);
    draw();
  } catch (error) {
    notice(`no preview: ${error.message}`);
  }
}

async function requestPrediction() {
  if (!state.predictions) return;
  const c = state.caseIndex, s = sliceIndex();
  try {
    const response = await api(`/api/prediction?case=${c}&slice=${s}`);
    const score = response.headers.get("X-Dice");
    const mask = new Uint8Array(await response.arrayBuffer());
    if (c !== state.caseIndex || s !== sliceIndex()) return;
    state.predictionMask = mask;
    $("dice").textContent = score ? `Dice with the label on this slice: ${Number(score).toFixed(3)}` : "no label";
    draw();
  } catch (error) {
    $("dice").textContent = error.status === 404 ? "no prediction for this case" : `prediction: ${error.message}`;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "SELECT" || event.target.tagName === "INPUT") return;
  const moves = {ArrowLeft: () => showSlice(state.slicePos - 1), ArrowRight: () => showSlice(state.slicePos + 1),
                 ArrowUp: () => showCase(state.caseIndex - 1), ArrowDown: () => showCase(state.caseIndex + 1),
                 Delete: deleteSelected, Backspace: deleteSelected};
  if (moves[event.key]) {
    event.preventDefault();
    moves[event.key]();
  }
});

$("case").addEventListener("change", () => showCase(Number($("case").value)));
$("prev-slice").addEventListener("click", () => showSlice(state.slicePos - 1));
$("next-slice").addEventListener("click", () => showSlice(state.slicePos + 1));
$("level").addEventListener("input", readSliders);
$("window").addEventListener("input", readSliders);
$("auto-window").addEventListener("click", autoWindow);
$("show-preview").addEventListener("change", draw);
$("show-prediction").addEventListener("change", draw);
$("delete-box").addEventListener("click", deleteSelected);
start().catch((error) => notice(`cannot load: ${error.message}`));
