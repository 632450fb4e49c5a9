// cnnlab lab, Teach tab: name your own classes, add examples by drawing, uploading or from the
// webcam, and watch live predictions with probability bars and an occlusion map: from the
// examples as soon as every class has one, and from a model trained on them (in the background,
// through the lab's one training job) once it is. Plain JavaScript, no build step.
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
  const thumbs = new Map(); // "class/id/version" → its thumbnail button, kept between renders

  function thumbnail(name, example, index) {
    const key = `${name}/${example.id}/${example.version}`;
    let button = thumbs.get(key);
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.dataset.remove = name;
      button.dataset.example = example.id;
      const img = document.createElement("img");
      img.alt = "";
      img.width = 48;
      img.height = 48;
      img.loading = "lazy";
      img.src = `/api/teach/examples/${encodeURIComponent(name)}/${example.id}?v=${example.version}`;
      button.append(img);
      thumbs.set(key, button);
    }
    const label = `Remove example ${index + 1} of “${name}”`;
    button.title = label;
    button.setAttribute("aria-label", label);
    return [key, button];
  }

  const uploadIcon =
    '<svg aria-hidden="true" viewBox="0 0 24 24"><path d="M12 16V4"/><path d="m7 9 5-5 5 5"/><path d="M4 20h16"/></svg>';

  // Where training starts: shown only when there is a choice (a published network that
  // `cnnlab train --from` has downloaded into the cache, beside the shipped extractor).
  const START_NAMES = {
    extractor: "cnnlab's own features (offline)",
    "resnet18-imagenet": "ResNet-18 trained on ImageNet (slower)",
  };
  function showStarts(starts) {
    const select = $("teach-start");
    const chosen = select.value;
    select.replaceChildren(...starts.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = START_NAMES[name] || name;
      return option;
    }));
    if (starts.includes(chosen)) select.value = chosen;
    $("teach-start-field").hidden = starts.length < 2;
  }

  let rendered = false; // a newer state has been shown: the page's first request is stale
  function render(state) {
    rendered = true;
    classes = state.classes;
    const list = $("teach-list");
    const kept = new Set();
    const rows = classes.map((item) => {
      const name = document.createElement("strong");
      name.className = "teach-class-name";
      name.textContent = item.name;
      const count = document.createElement("span");
      count.className = "count";
      count.dataset.count = item.name;
      count.textContent = `${item.examples} example${item.examples === 1 ? "" : "s"}`;
      const add = document.createElement("button");
      add.type = "button";
      add.className = "btn";
      add.dataset.class = item.name;
      add.textContent = "Add example";
      add.setAttribute("aria-label", `Add the example shown to “${item.name}”`);
      const upload = document.createElement("label");
      upload.className = "btn";
      upload.innerHTML = `${uploadIcon}Upload`;
      const input = document.createElement("input");
      input.type = "file";
      input.multiple = true;
      input.accept = "image/*";
      input.className = "visually-hidden";
      input.dataset.upload = item.name;
      input.setAttribute("aria-label", `Upload pictures of ${item.name}`);
      upload.append(input);
      const head = document.createElement("div");
      head.className = "teach-class-head";
      head.append(name, count, add, upload);
      const strip = document.createElement("div");
      strip.className = "thumbs";
      strip.dataset.thumbs = item.name;
      const pictures = item.pictures || [];
      if (!pictures.length) {
        const empty = document.createElement("span");
        empty.className = "thumbs-empty";
        empty.textContent = "No examples yet.";
        strip.append(empty);
      }
      pictures.forEach((example, i) => {
        const [key, button] = thumbnail(item.name, example, i);
        kept.add(key);
        strip.append(button);
      });
      const row = document.createElement("li");
      row.className = "teach-class";
      row.append(head, strip);
      return row;
    });
    for (const key of [...thumbs.keys()]) if (!kept.has(key)) thumbs.delete(key);
    list.replaceChildren(...rows);
    showStarts(state.starts || []);
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
    const thumb = event.target.closest("button[data-remove]");
    if (thumb) {
      const name = thumb.dataset.remove;
      try {
        render(await call(`/api/teach/examples/${encodeURIComponent(name)}/${thumb.dataset.example}`, {
          method: "DELETE",
          headers: { "Content-Type": "application/json" },
        }));
        say(`Removed an example of “${name}”.`);
      } catch (err) {
        say(err.message, true);
      }
      return;
    }
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
      say("Classes ready: draw, upload or snap examples of each; answers start with one each.");
    } catch (err) {
      say(err.message, true);
    }
  });

  // -- training ---------------------------------------------------------------------------------

  // The lab answers once every class has an example: from the examples, before any training.
  const ready = () => classes.length >= 2 && classes.every((c) => c.examples > 0);

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

  // The accuracy with what it was measured on: 100 % of 3 held-out examples says little. The
  // server words it when it can (with its 95 % interval); otherwise the count and share.
  function trainedText(job) {
    if (job.accuracy_text) return job.accuracy_text;
    const share = `${(100 * (job.test_accuracy || 0)).toFixed(0)} %`;
    if (!job.test_count) return `Trained: ${share} of the held-out examples right.`;
    const right = Math.round((job.test_accuracy || 0) * job.test_count);
    const plural = job.test_count === 1 ? "" : "s";
    return `Trained: ${right} of ${job.test_count} held-out example${plural} right (${share}).`;
  }

  $("teach-train").addEventListener("click", async () => {
    $("teach-train").disabled = true;
    try {
      const field = $("teach-start-field");
      await call("/api/teach/train", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(field.hidden ? {} : { start_from: $("teach-start").value }),
      });
      say("Training in the background…");
      const job = await follow();
      if (job.state !== "finished") throw new Error(job.error || `training ${job.state}`);
      say(`${trainedText(job)} Draw or show something!`);
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
    if (!ready() || busy || (source() === "pad" && (last || !drawn))) return;
    busy = true;
    try {
      const picture = await currentPicture();
      const result = await call("/api/teach/predict", {
        method: "POST",
        headers: { "Content-Type": picture.type || "application/octet-stream" },
        body: picture,
      });
      showPrediction(result, picture);
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
    if (ready() && source() === "camera" && $("teach-live").checked) predict();
  }, 700);

  // The occlusion map over the picture: clear where covering the picture changes nothing, then
  // amber to red where it lowers the answer's probability most (the scale beside it is the same).
  const FLAT = 0.02; // a largest drop under 2 points: no one part of the picture decides
  const LOW = [245, 158, 11]; // amber
  const HIGH = [220, 38, 38]; // red
  let pictureUrl = null;

  function showOcclusion(result, picture) {
    const drop = result.occlusion_drop;
    if (!drop) return;
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    pictureUrl = URL.createObjectURL(picture);
    $("teach-picture").src = pictureUrl;
    const most = Math.max(0, ...drop.flat());
    const points = (100 * most).toFixed(0);
    const name = result.class_name;
    const canvas = $("teach-occlusion-map");
    const caption = $("teach-occlusion-caption");
    const flat = most < FLAT;
    canvas.hidden = flat;
    $("teach-scale").hidden = flat;
    $("teach-occlusion").classList.toggle("flat", flat);
    if (flat) {
      caption.textContent = `Covering any part of the picture changes the probability of “${name}” by less than ${100 * FLAT} points: no single part decides this answer.`;
    } else {
      const h = drop.length;
      const w = drop[0].length;
      canvas.width = w;
      canvas.height = h;
      const image = new ImageData(w, h);
      drop.flat().forEach((value, i) => {
        const t = Math.min(1, Math.max(0, value / most));
        for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.round(LOW[c] + t * (HIGH[c] - LOW[c]));
        image.data[4 * i + 3] = Math.round(215 * t);
      });
      canvas.getContext("2d").putImageData(image, 0, 0);
      canvas.setAttribute(
        "aria-label",
        `Occlusion map over the picture: red where covering it lowers the probability of “${name}” most (by up to ${points} points), amber where less, clear where it changes nothing`,
      );
      $("teach-scale-max").textContent = `−${points} points`;
      caption.textContent = `Where “${name}” comes from: covering a red part of the picture lowers its probability most, by up to ${points} points; covering a clear part changes nothing.`;
    }
    $("teach-occlusion").hidden = false;
  }

  let shown = 0;

  function showPrediction(result, picture) {
    const top = `${(100 * result.probabilities[result.label]).toFixed(1)}%`;
    const answer = $("teach-answer");
    $("teach-conf").classList.remove("idle");
    answer.textContent = result.known ? result.class_name : "none of these";
    answer.classList.toggle("unsure", result.unsure || !result.known);
    answer.classList.toggle("long", answer.textContent.length > 2);
    if (!result.known) $("teach-conf").textContent = `none of these (closest: ${result.class_name}, ${top})`;
    else if (result.unsure) $("teach-conf").textContent = `unsure: ${top} for ${result.class_name}, maybe ${result.runner_up}`;
    else $("teach-conf").textContent = `${top} sure it is ${result.class_name}`;
    // Where the answer comes from: the examples alone, or the model trained on them.
    const plural = result.examples === 1 ? "" : "s";
    $("teach-source-note").textContent =
      result.source === "trained"
        ? `answered by the model trained on these ${result.examples} examples`
        : `answered from ${result.examples} example${plural}, before training`;
    const bars = $("teach-bars");
    bars.replaceChildren();
    bars.dataset.count = String(++shown);
    // The bars in the order the classes were typed, as the list of classes shows them.
    const typed = classes.map((c) => c.name);
    const rank = (name) => (typed.includes(name) ? typed.indexOf(name) : typed.length);
    const order = result.class_names.map((_, i) => i);
    order.sort((a, b) => rank(result.class_names[a]) - rank(result.class_names[b]) || a - b);
    for (const i of order) {
      const name = result.class_names[i];
      const p = result.probabilities[i];
      const bar = document.createElement("li");
      bar.className = i === result.label ? "top" : "";
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(100 * p).toFixed(1)}%`;
      bar.setAttribute("aria-label", `${name}: ${value.textContent}`);
      bar.append(label, track, value);
      bars.append(bar);
    }
    if (picture) showOcclusion(result, picture);
  }

  // A project kept from before: its classes in the names field, in their order (unless the
  // page has already shown a newer state, e.g. a project created while this answer was slow).
  call("/api/teach/project")
    .then((state) => {
      if (rendered) return;
      if (state.classes.length) $("teach-names").value = state.classes.map((c) => c.name).join(", ");
      render(state);
    })
    .catch((err) => say(err.message, true));
})();
