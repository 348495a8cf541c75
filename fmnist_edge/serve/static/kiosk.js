// The kiosk page: camera frame or dropped photo -> POST /predict -> top-3 bars. No libraries, no network
// beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_UPLOAD_FALLBACK = 10 * 1024 * 1024;
// The server's preprocessing never uses more than this many pixels on a frame's short side: larger frames
// are scaled down here before upload (the server says its figure in /health as frame_short_side).
const FRAME_SHORT_SIDE_FALLBACK = 240;
let maxUpload = MAX_UPLOAD_FALLBACK;
let frameShortSide = FRAME_SHORT_SIDE_FALLBACK;
let stream = null;
let previewUrl = null;

function show(el, on) { el.hidden = !on; }

function showMessage(text) {
  $("message").textContent = text;
  show($("message"), true);
  show($("result"), false);
}

function showResult(r) {
  show($("message"), false);
  $("label").textContent = r.label;
  $("confidence").textContent = `${(r.confidence * 100).toFixed(0)}%`;
  const bars = $("bars");
  bars.replaceChildren();
  for (const { label, confidence } of r.top_k) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.max(1, confidence * 100).toFixed(1)}%`;
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(confidence * 100).toFixed(1)}%`;
    li.append(name, track, pct);
    bars.append(li);
  }
  $("latency").textContent = r.inference_ms.toFixed(1);
  show($("result"), true);
}

function setPreview(blob) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  $("preview").src = previewUrl;
  show($("preview"), true);
}

async function classify(body, headers) {
  show($("busy"), true);
  try {
    const response = await fetch("/predict", { method: "POST", body, headers });
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON: handled below */ }
    if (!response.ok) {
      showMessage(data && data.error ? `Sorry, that picture could not be used: ${data.error}`
                                     : `Sorry, the classifier answered ${response.status}. Please try again.`);
    } else {
      showResult(data);
    }
  } catch (err) {
    showMessage("The classifier cannot be reached. Please ask staff for help.");
  } finally {
    show($("busy"), false);
  }
}

// The size (w, h) a picture of width x height is uploaded at: its short side at most frameShortSide.
function uploadSize(width, height) {
  const f = Math.min(1, frameShortSide / Math.min(width, height));
  return [Math.max(1, Math.round(width * f)), Math.max(1, Math.round(height * f))];
}

// Draw `source` (a video or a decoded picture) scaled down to the upload size -> a JPEG blob.
function downsized(source, width, height) {
  const [w, h] = uploadSize(width, height);
  const canvas = $("frame");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, w, h);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

async function classifyFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage(`"${file.name}" is not a picture. Please choose a photo (PNG, JPEG, BMP or WebP).`);
    return;
  }
  setPreview(file);
  // A large photo is scaled down here (EXIF orientation applied by the browser); one the browser cannot
  // decode goes up as it is, and the server says what is wrong with it.
  let small = null;
  try {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    if (Math.min(bitmap.width, bitmap.height) > frameShortSide) small = await downsized(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
  } catch (_) { /* not decodable here: send the original */ }
  if (!small && file.size > maxUpload) {
    showMessage(`That photo is too large (${(file.size / 2 ** 20).toFixed(1)} MB). Please choose a smaller one.`);
    return;
  }
  if (small) {
    classify(small, { "Content-Type": "image/jpeg" });
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  classify(form);
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage("This screen has no camera access. Drop a photo instead.");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    $("video").srcObject = stream;
    show($("camera-off"), false);
    $("classify").disabled = false;
    $("start-camera").textContent = "Camera on";
    $("start-camera").disabled = true;
  } catch (err) {
    showMessage("The camera could not be started. Drop a photo instead.");
  }
}

function classifyFrame() {
  const video = $("video");
  if (!stream || !video.videoWidth) {
    showMessage("The camera is not ready yet. Please wait a moment and try again.");
    return;
  }
  downsized(video, video.videoWidth, video.videoHeight).then((blob) => {
    if (!blob) { showMessage("The camera picture could not be taken. Please try again."); return; }
    setPreview(blob);
    classify(blob, { "Content-Type": "image/jpeg" });
  });
}

async function loadInfo() {
  try {
    const h = await (await fetch("/health")).json();
    maxUpload = h.max_upload_bytes || MAX_UPLOAD_FALLBACK;
    frameShortSide = h.frame_short_side || FRAME_SHORT_SIDE_FALLBACK;
    $("model-info").textContent =
      `fmnist-edge kiosk · ${h.model.precision} on ${h.model.device} · OpenVINO ${h.packages.openvino || ""}`;
  } catch (_) { /* the footer is decoration */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("start-camera").addEventListener("click", startCamera);
  $("classify").addEventListener("click", classifyFrame);
  $("file").addEventListener("change", (e) => { classifyFile(e.target.files[0]); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    classifyFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  loadInfo();
});
