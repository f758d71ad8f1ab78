// The draw page: a canvas drawn on with Pointer Events (mouse, touch, pen); at the end of each
// stroke its PNG goes to POST predict, and the answer is shown: the 28x28 input, the ten
// probabilities and the first convolution layer's feature maps.
"use strict";

const INK_WIDTH = 18;
const MAP_SCALE = 2;  // feature maps are drawn at twice their size, pixelated

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const result = document.getElementById("result");
const message = document.getElementById("message");
const label = document.getElementById("label");
const confidence = document.getElementById("confidence");
const prepared = document.getElementById("prepared");
const bars = document.getElementById("bars");
const mapsSection = document.getElementById("maps-section");
const maps = document.getElementById("maps");
const model = document.getElementById("model");

let pointer = null;   // the id of the pointer drawing now
let last = null;      // the stroke's previous point
let drawn = false;    // anything on the canvas since the last Clear
let seq = 0;          // the latest request; older answers are dropped
let predictions = 0;  // answers shown, for tests and assistive status

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = ctx.fillStyle = "#000";
  ctx.lineWidth = INK_WIDTH;
  ctx.lineCap = ctx.lineJoin = "round";
}

function point(e) {
  const r = pad.getBoundingClientRect();  // the border box: the drawing starts inside the border
  return {x: (e.clientX - r.left - pad.clientLeft) * pad.width / pad.clientWidth,
          y: (e.clientY - r.top - pad.clientTop) * pad.height / pad.clientHeight};
}

function dot(p) {
  ctx.beginPath();
  ctx.arc(p.x, p.y, INK_WIDTH / 2, 0, 2 * Math.PI);
  ctx.fill();
}

function lineTo(p) {
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
}

pad.addEventListener("pointerdown", (e) => {
  if (pointer !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault();
  pointer = e.pointerId;
  pad.setPointerCapture(e.pointerId);
  last = point(e);
  dot(last);
  drawn = true;
});

pad.addEventListener("pointermove", (e) => {
  if (e.pointerId !== pointer) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const c of events.length ? events : [e]) lineTo(point(c));
});

function endStroke(e) {
  if (e.pointerId !== pointer) return;
  pointer = null;
  last = null;
  predict();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function say(text, isError) {
  message.textContent = text;
  message.classList.toggle("error", Boolean(isError));
}

function predict() {
  if (!drawn) return;
  const mine = ++seq;
  result.setAttribute("aria-busy", "true");
  pad.toBlob(async (blob) => {
    try {
      const response = await fetch("predict", {method: "POST", headers: {"Content-Type": "image/png"}, body: blob});
      const data = await response.json().catch(() => ({error: `the server answered HTTP ${response.status}`}));
      if (mine !== seq) return;
      if (!response.ok || data.error) say(data.error || `the server answered HTTP ${response.status}`, true);
      else show(data);
    } catch (err) {
      if (mine === seq) say(`The server did not answer: ${err.message}`, true);
    } finally {
      if (mine === seq) result.setAttribute("aria-busy", "false");
    }
  }, "image/png");
}

function grey(canvas, rows, lo, hi) {
  const h = rows.length, w = rows[0].length, img = canvas.getContext("2d").createImageData(w, h);
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x), v = Math.round((rows[y][x] - lo) * scale);
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function showMaps(list) {
  mapsSection.hidden = !list;
  if (!list) return;
  if (maps.children.length !== list.length) {
    maps.replaceChildren(...list.map((m, k) => {
      const c = document.createElement("canvas");
      c.width = m[0].length;
      c.height = m.length;
      c.style.width = `${MAP_SCALE * c.width}px`;
      c.setAttribute("role", "img");
      c.setAttribute("aria-label", `Feature map ${k + 1} of ${list.length}`);
      return c;
    }));
  }
  list.forEach((m, k) => {
    const flat = m.flat();
    grey(maps.children[k], m, Math.min(...flat), Math.max(...flat));
  });
}

function setBars(probabilities, top) {
  probabilities.forEach((p, d) => {
    const li = bars.children[d];
    li.classList.toggle("top", d === top);
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
  });
}

function show(data) {
  label.textContent = String(data.label);
  confidence.textContent = `p = ${data.probabilities[data.label].toFixed(3)}`;
  grey(prepared, data.prepared, 0, 1);
  setBars(data.probabilities, data.label);
  showMaps(data.feature_maps);
  model.textContent = data.model;
  say("", false);
  result.dataset.predictions = String(++predictions);
}

function clear() {
  seq++;
  drawn = false;
  blank();
  label.textContent = "\u2013";
  confidence.textContent = "";
  prepared.getContext("2d").clearRect(0, 0, prepared.width, prepared.height);
  setBars(new Array(10).fill(0), -1);
  mapsSection.hidden = true;
  result.setAttribute("aria-busy", "false");
  say("", false);
}

for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="digit">${d}</span><span class="track" aria-hidden="true">` +
                 `<span class="fill"></span></span><span class="pct">0.0%</span>`;
  bars.append(li);
}
document.getElementById("clear").addEventListener("click", clear);
clear();
