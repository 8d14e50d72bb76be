// The page of `multibox serve`: one request per image (with the most boxes the slider can show); the
// top-k and score sliders redraw from that reply without a new request. The page's state is in
// document.body.dataset (boxesDrawn, state) and window.multibox, so a test can read it.
"use strict";

const MAX_BOXES = 100;  // asked once per image; the top-k slider shows a prefix of them
const BOX = "#ff2d95", OUTLINE = "#000000";  // a bright box on a dark outline: visible on any background
const $ = (id) => document.getElementById(id);
const state = window.multibox = { image: null, result: null, boxesDrawn: 0, classifier: false };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function loadModel() {
  const reply = await fetch("/v1/model", { headers: headers() });
  if (!reply.ok) { $("model").textContent = (await reply.json()).detail; return; }
  const info = await reply.json(), loc = info.localizer;
  state.classifier = info.classifier !== null;
  $("classify").disabled = !state.classifier;
  $("classify").checked = state.classifier;
  $("model").textContent = `${loc.backbone} ${loc.head} head, K = ${loc.num_boxes}, ${loc.image_size} px` +
    (state.classifier ? `, classifier: ${info.classifier.class_names.join(", ")}` : "");
}

function visible() {
  const r = state.result, k = Number($("topk").value), min = Number($("score").value);
  const shown = [];
  for (let i = 0; i < r.boxes.length && shown.length < k; i++) {
    if (r.scores[i] >= min) shown.push(i);
  }
  return shown;
}

function label(ctx, text, x, y, size) {
  // White text on a dark plate: readable whatever the image is underneath.
  ctx.font = `bold ${size}px system-ui, sans-serif`;
  const pad = Math.round(size / 3), w = ctx.measureText(text).width + 2 * pad, h = size + pad;
  const top = Math.max(0, y - h);
  ctx.fillStyle = "rgba(0, 0, 0, 0.75)";
  ctx.fillRect(x, top, w, h);
  ctx.fillStyle = "#ffffff";
  ctx.fillText(text, x + pad, top + size);
}

function scoreText(s) {
  return s >= 0.1 ? s.toFixed(2) : s.toPrecision(2);
}

function draw() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d"), img = state.image;
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  ctx.drawImage(img, 0, 0);
  const shown = state.result ? visible() : [];
  const side = Math.max(canvas.width, canvas.height);
  const line = Math.max(2, Math.round(side / 300)), font = Math.max(12, Math.round(side / 45));
  for (const i of shown) {
    const [x1, y1, x2, y2] = state.result.boxes[i];
    ctx.lineWidth = line + 2; ctx.strokeStyle = OUTLINE; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.lineWidth = line; ctx.strokeStyle = BOX; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  for (const i of shown) {
    const r = state.result, name = r.labels ? `${r.labels[i]} ` : "";
    label(ctx, `${name}${scoreText(r.scores[i])}`, r.boxes[i][0], r.boxes[i][1], font);
  }
  state.boxesDrawn = shown.length;
  document.body.dataset.boxesDrawn = String(shown.length);
  $("topk-value").textContent = $("topk").value;
  $("score-value").textContent = Number($("score").value).toFixed(2);
  if (state.result) {
    const t = state.result.timing;
    setStatus(`${shown.length} of ${state.result.boxes.length} boxes drawn.\n` +
      `${t.total_ms.toFixed(1)} ms on the server (batch of ${t.batch_size}), ${state.roundTrip.toFixed(0)} ms round trip.`);
  }
}

async function detect(file) {
  document.body.dataset.state = "busy";
  setStatus("Detecting…");
  state.result = null;
  state.image = await imageOf(file);
  draw();
  const classify = $("classify").checked && state.classifier;
  const started = performance.now();
  const reply = await fetch(`/v1/detect?top_k=${MAX_BOXES}&classifier=${classify}`, {
    method: "POST", body: file, headers: headers({ "Content-Type": file.type || "application/octet-stream" }),
  });
  state.roundTrip = performance.now() - started;
  const body = await reply.json();
  if (!reply.ok) {
    document.body.dataset.state = "error";
    setStatus(`${reply.status}: ${body.detail}`, true);
    return;
  }
  state.result = body;
  draw();
  document.body.dataset.state = "done";
}

function imageOf(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = URL.createObjectURL(file);
  });
}

function start(file) {
  if (!file) return;
  detect(file).catch((err) => { document.body.dataset.state = "error"; setStatus(String(err), true); });
}

$("file").addEventListener("change", (e) => start(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); start(e.dataTransfer.files[0]); });
for (const id of ["topk", "score"]) $(id).addEventListener("input", () => state.image && draw());
$("token").addEventListener("change", loadModel);
loadModel().catch((err) => { $("model").textContent = String(err); });
