// cnnlab lab, Teach tab: name your own classes, add examples by drawing, uploading or from the
// webcam, train in the background through the lab's one training job, then watch live
// predictions with probability bars and an occlusion map. Plain JavaScript, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const panel = $("panel-teach");
  if (!panel) return;

  async function call(path, options = {}) {
    const response = await fetch(path, options);
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error((body && body.detail) || `request failed (${response.status})`);
    }
    return body;
  }

  const status = $("teach-status");
  function say(text, isError = false) {
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  // -- drawing pad (white paper, dark ink) ---------------------------------------------------

  const pad = $("teach-pad");
  const ctx = pad.getContext("2d");
  let drawn = false;

  function clearPad() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    drawn = false;
  }
  clearPad();

  let last = null;
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * pad.width) / box.width,
      ((event.clientY - box.top) * pad.height) / box.height,
    ];
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    last = point(event);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    ctx.strokeStyle = $("teach-colour").value;
    ctx.lineWidth = 14;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
    drawn = true;
  });
  const penUp = () => {
    if (!last) return;
    last = null;
    if (source() === "pad") predictSoon();
  };
  pad.addEventListener("pointerup", penUp);
  pad.addEventListener("pointercancel", penUp);
  $("teach-clear").addEventListener("click", clearPad);

  // toDataURL, not toBlob: Chromium encodes a toBlob in an idle period and waits up to a second
  // for one (measured: 1.0 s from "Add" to the count shown, 12 times in 15, right after drawing
  // in headless Chromium; 16 ms median this way). The 224 px pad as PNG, or a camera frame as
  // JPEG, encodes in a few milliseconds at once.
  function canvasBlob(canvas, type, quality) {
    const bytes = atob(canvas.toDataURL(type, quality).split(",")[1]);
    return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], { type });
  }
  const padBlob = () => Promise.resolve(canvasBlob(pad, "image/png"));

  // -- webcam ---------------------------------------------------------------------------------

  const video = $("teach-video");
  let stream = null;

  $("teach-camera").addEventListener("click", async () => {
    if (stream) {
      stream.getTracks().forEach((track) => track.stop());
      stream = null;
      video.hidden = true;
      $("teach-camera").textContent = "Start camera";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      $("teach-camera").textContent = "Stop camera";
      say("Camera on: pick “camera” as the source to add snapshots or predict live.");
    } catch (err) {
      say(`No camera: ${err.message}`, true);
    }
  });

  function cameraBlob() {
    if (!stream || !video.videoWidth) return Promise.resolve(null);
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return Promise.resolve(canvasBlob(canvas, "image/jpeg", 0.9));
  }

  const source = () => document.querySelector('input[name="teach-source"]:checked').value;

  async function currentPicture() {
    if (source() === "camera") {
      const blob = await cameraBlob();
      if (!blob) throw new Error("start the camera first");
      return blob;
    }
    if (!drawn) throw new Error("draw something first");
    return padBlob();
  }

  // -- classes and examples ---------------------------------------------------------------------

  let classes = [];

  function render(state) {
    classes = state.classes;
    const list = $("teach-list");
    list.replaceChildren();
    for (const item of classes) {
      const add = document.createElement("button");
      add.type = "button";
      add.className = "btn";
      add.dataset.class = item.name;
      add.textContent = `Add to “${item.name}”`;
      const count = document.createElement("span");
      count.className = "count";
      count.dataset.count = item.name;
      count.textContent = `${item.examples} example${item.examples === 1 ? "" : "s"}`;
      const upload = document.createElement("input");
      upload.type = "file";
      upload.multiple = true;
      upload.accept = "image/*";
      upload.dataset.upload = item.name;
      upload.setAttribute("aria-label", `Upload pictures of ${item.name}`);
      const row = document.createElement("li");
      row.append(add, count, upload);
      list.append(row);
    }
    $("teach-train").disabled = classes.length < 2;
    $("teach-folder").textContent = classes.length ? `saved in ${state.folder}` : "";
  }

  async function addExample(name, blob) {
    const state = await call(`/api/teach/examples?label=${encodeURIComponent(name)}`, {
      method: "POST",
      headers: { "Content-Type": blob.type || "application/octet-stream" },
      body: blob,
    });
    render(state);
  }

  $("teach-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-class]");
    if (!button) return;
    try {
      await addExample(button.dataset.class, await currentPicture());
      if (source() === "pad") clearPad();
      say(`Added an example to “${button.dataset.class}”.`);
    } catch (err) {
      say(err.message, true);
    }
  });

  $("teach-list").addEventListener("change", async (event) => {
    const input = event.target.closest("input[data-upload]");
    if (!input) return;
    try {
      for (const file of input.files) await addExample(input.dataset.upload, file);
      say(`Added ${input.files.length} picture(s) to “${input.dataset.upload}”.`);
    } catch (err) {
      say(err.message, true);
    }
    input.value = "";
  });

  $("teach-setup").addEventListener("submit", async (event) => {
    event.preventDefault();
    const names = $("teach-names").value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      render(await call("/api/teach/project", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ classes: names }),
      }));
      say("Classes ready: draw, upload or snap examples of each, then train.");
    } catch (err) {
      say(err.message, true);
    }
  });

  // -- training ---------------------------------------------------------------------------------

  let trained = false;

  async function follow() {
    for (;;) {
      const job = await call("/api/teach/train");
      const done = job.state !== "running";
      $("teach-progress").textContent = done
        ? ""
        : `training… epoch ${job.epoch || 0} of ${job.epochs || "?"}`;
      if (done) return job;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  $("teach-train").addEventListener("click", async () => {
    $("teach-train").disabled = true;
    try {
      await call("/api/teach/train", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      });
      say("Training in the background…");
      const job = await follow();
      if (job.state !== "finished") throw new Error(job.error || `training ${job.state}`);
      trained = true;
      say(`${job.accuracy_text} Draw or show something!`);
      predictSoon();
    } catch (err) {
      say(err.message, true);
    } finally {
      $("teach-train").disabled = classes.length < 2;
    }
  });

  // -- live prediction --------------------------------------------------------------------------

  let busy = false;

  async function predict() {
    // Never mid-stroke: a timer set before the pen went down (the one after training) would read
    // a half-drawn picture — the likely cause of the browser test reading "line" for a circle
    // once, under load; pen-up asks again.
    if (!trained || busy || (last && source() === "pad")) return;
    busy = true;
    try {
      const picture = await currentPicture();
      const result = await call("/api/teach/predict", {
        method: "POST",
        headers: { "Content-Type": picture.type || "application/octet-stream" },
        body: picture,
      });
      showPrediction(result);
    } catch (err) {
      $("teach-answer").textContent = err.message;
    } finally {
      busy = false;
    }
  }

  let timer = null;
  function predictSoon() {
    clearTimeout(timer);
    timer = setTimeout(predict, 150);
  }
  setInterval(() => {
    if (trained && source() === "camera" && $("teach-live").checked) predict();
  }, 700);

  let shown = 0;

  function showPrediction(result) {
    const top = `${(100 * result.probabilities[result.label]).toFixed(1)}%`;
    const answer = $("teach-answer");
    answer.textContent = result.known ? result.class_name : "none of these";
    answer.classList.toggle("unsure", result.unsure || !result.known);
    answer.classList.toggle("long", answer.textContent.length > 2);
    if (!result.known) $("teach-conf").textContent = `none of these (closest: ${result.class_name}, ${top})`;
    else if (result.unsure) $("teach-conf").textContent = `unsure: ${top} for ${result.class_name}, maybe ${result.runner_up}`;
    else $("teach-conf").textContent = `${top} sure it is ${result.class_name}`;
    const bars = $("teach-bars");
    bars.replaceChildren();
    bars.dataset.count = String(++shown);
    result.class_names.forEach((name, i) => {
      const p = result.probabilities[i];
      const bar = document.createElement("li");
      bar.className = i === result.label ? "top" : "";
      const label = document.createElement("span");
      label.textContent = name;
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(100 * p).toFixed(1)}%`;
      bar.setAttribute("aria-label", `${name}: ${value.textContent}`);
      bar.append(label, fill, value);
      bars.append(bar);
    });
    $("teach-occlusion").src = `data:image/png;base64,${result.occlusion}`;
    $("teach-occlusion").hidden = false;
  }

  call("/api/teach/project").then(render).catch((err) => say(err.message, true));
})();
