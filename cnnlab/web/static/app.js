// cnnlab lab: the page's behaviour. Plain JavaScript, no build step, no network beyond this
// server's /api. Sections: helpers, tabs, model status, drawing and prediction, training,
// convolution demo.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // -- helpers -------------------------------------------------------------------------------

  /** Call the lab's API; resolves to the parsed JSON, rejects with Error(detail). */
  async function api(path, options = {}) {
    const response = await fetch(path, options);
    if (response.status === 204) return null;
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      const error = new Error(detail || `request failed (${response.status})`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  const postJSON = (path, data) =>
    api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of [].concat(children)) node.append(child);
    return node;
  }

  const pngSrc = (b64) => `data:image/png;base64,${b64}`;
  const percent = (p) => `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;

  function setStatus(node, text, isError = false) {
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  // -- tabs ----------------------------------------------------------------------------------

  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

  function showTab(name, focus = false) {
    for (const tab of tabs) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    if (name === "train") redrawCharts();
  }

  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const next = tabs[(i + moves[event.key] + tabs.length) % tabs.length];
      showTab(next.dataset.tab, true);
    });
  });
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (tabs.some((t) => t.dataset.tab === name)) showTab(name);
  });

  // -- model status --------------------------------------------------------------------------

  let activeModel = null;

  async function refreshModels() {
    const listing = await api("/api/models");
    activeModel = listing.active;
    const info = listing.models.find((m) => m.active);
    const chip = $("model-chip");
    chip.classList.toggle("ready", Boolean(activeModel));
    const accuracy = info && info.accuracy != null ? ` · ${(info.accuracy * 100).toFixed(1)}%` : "";
    $("model-chip-text").textContent = activeModel ? `Model ${activeModel}${accuracy}` : "No model yet";
    $("pred-model").textContent = activeModel ? `model ${activeModel}` : "";
    $("no-model").hidden = Boolean(activeModel);
    renderModelTable(listing.models);
    return listing;
  }

  function renderModelTable(models) {
    const body = $("models-body");
    body.replaceChildren();
    if (!models.length) {
      body.append(el("tr", {}, el("td", { colspan: "5", class: "placeholder", text: "No models yet: train one above." })));
      return;
    }
    for (const model of models) {
      const action = model.active
        ? el("span", { class: "badge", text: "in use" })
        : el("button", { type: "button", class: "btn", "data-model": model.name, text: "Use" });
      if (!model.active) action.setAttribute("aria-label", `Use model ${model.name}`);
      const created = new Date(model.created);
      body.append(
        el("tr", { class: model.active ? "active" : "" }, [
          el("td", { text: model.name }),
          el("td", { class: "num", text: model.accuracy != null ? `${(model.accuracy * 100).toFixed(1)}%` : "–" }),
          el("td", { text: model.preset || "–" }),
          el("td", { text: isNaN(created) ? "–" : created.toLocaleString() }),
          el("td", {}, action),
        ]),
      );
    }
  }

  $("models-body").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-model]");
    if (!button) return;
    button.disabled = true;
    try {
      await postJSON("/api/models/select", { name: button.dataset.model });
      await refreshModels();
      predictNow();
    } catch (err) {
      setStatus($("train-status"), err.message, true);
      button.disabled = false;
    }
  });

  $("goto-train").addEventListener("click", () => showTab("train", true));

  // -- drawing pad ---------------------------------------------------------------------------

  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const strokes = []; // each stroke: {width, points: [[x, y], ...]} in canvas pixels
  let current = null;
  let uploaded = null; // an uploaded picture shown on the pad instead of strokes

  function paintBackground() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  function drawStroke(stroke) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = stroke.width;
    const pts = stroke.points;
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }

  function redrawPad() {
    paintBackground();
    if (uploaded) {
      const scale = Math.min(pad.width / uploaded.width, pad.height / uploaded.height);
      const w = uploaded.width * scale;
      const h = uploaded.height * scale;
      ctx.drawImage(uploaded, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    }
    strokes.forEach(drawStroke);
    const empty = !strokes.length && !uploaded;
    $("pad-empty").hidden = !empty;
    $("undo").disabled = !strokes.length && !uploaded;
    $("clear").disabled = empty;
  }

  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * pad.width,
      ((event.clientY - rect.top) / rect.height) * pad.height,
    ];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    if (uploaded) uploaded = null; // drawing replaces an uploaded picture
    current = { width: Number($("brush").value), points: [padPoint(event)] };
    strokes.push(current);
    redrawPad();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!current) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) current.points.push(padPoint(e));
    redrawPad();
    schedulePredict();
  });
  const endStroke = () => {
    if (!current) return;
    current = null;
    schedulePredict();
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  $("undo").addEventListener("click", () => {
    if (strokes.length) strokes.pop();
    else uploaded = null;
    redrawPad();
    if (strokes.length || uploaded) predictNow();
    else resetPrediction();
  });
  $("clear").addEventListener("click", () => {
    strokes.length = 0;
    uploaded = null;
    redrawPad();
    resetPrediction();
  });

  // -- uploads and drops ---------------------------------------------------------------------

  const MAX_UPLOAD = 2 * 1024 * 1024;

  async function useFile(file) {
    if (!file) return;
    if (file.size > MAX_UPLOAD) {
      setStatus($("draw-status"), `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is 2 MB.`, true);
      return;
    }
    strokes.length = 0;
    uploaded = null;
    lastInput = { blob: file, type: file.type || "application/octet-stream", name: file.name };
    try {
      uploaded = await createImageBitmap(file);
    } catch (err) {
      uploaded = null; // the server decides whether it is an image; the pad just stays empty
    }
    redrawPad();
    runPrediction(lastInput);
  }

  $("upload").addEventListener("change", (event) => {
    useFile(event.target.files[0]);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    useFile(event.dataTransfer.files[0]);
  });
  // A file dropped beside the pad must not navigate away from the lab.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // -- prediction ----------------------------------------------------------------------------

  let lastInput = null; // what was last sent: {blob, type}
  let inFlight = false;
  let queued = false;
  let requestCount = 0;

  function buildBars(names) {
    const bars = $("bars");
    if (bars.children.length === names.length && bars.dataset.names === names.join("|")) return;
    bars.replaceChildren();
    bars.dataset.names = names.join("|");
    names.forEach((name, i) => {
      bars.append(
        el("li", { class: "bar", "data-class": String(i), "data-p": "0" }, [
          el("span", { class: "name", text: name, title: name }),
          el("span", { class: "track", "aria-hidden": "true" }, el("span", { class: "fill" })),
          el("span", { class: "pct", text: "0%" }),
        ]),
      );
    });
  }

  function resetPrediction() {
    lastInput = null;
    buildBars($("bars").dataset.names ? $("bars").dataset.names.split("|") : [..."0123456789"]);
    for (const bar of $("bars").children) {
      bar.classList.remove("top");
      bar.dataset.p = "0";
      bar.querySelector(".fill").style.width = "0%";
      bar.querySelector(".pct").textContent = "0%";
      bar.setAttribute("aria-label", `${bar.querySelector(".name").textContent}: 0%`);
    }
    $("pred-label").textContent = "?";
    $("pred-label").classList.remove("long");
    $("pred-conf").textContent = "Draw a digit to see what the network reads.";
    $("steps").replaceChildren(el("p", { class: "placeholder", text: "The preprocessing steps appear here: raw → cropped → filled, upright → 20×20 → centred 28×28." }));
    $("maps").replaceChildren(el("p", { class: "placeholder", text: "Each conv layer's maps appear here while you draw." }));
    $("occlusion").replaceChildren();
    $("occlude").disabled = true;
    setStatus($("draw-status"), "");
  }

  function showPrediction(result) {
    buildBars(result.class_names);
    const probs = result.probabilities;
    Array.from($("bars").children).forEach((bar, i) => {
      const p = probs[i];
      bar.dataset.p = String(p);
      bar.classList.toggle("top", i === result.label);
      bar.querySelector(".fill").style.width = `${(p * 100).toFixed(2)}%`;
      bar.querySelector(".pct").textContent = percent(p);
      bar.setAttribute("aria-label", `${result.class_names[i]}: ${percent(p)}`);
    });
    const label = $("pred-label");
    const top = percent(probs[result.label]);
    label.textContent = result.known ? result.class_name : "?";
    label.classList.toggle("long", label.textContent.length > 2);
    label.dataset.label = String(result.label);
    if (!result.known) $("pred-conf").textContent = `not a digit (closest: ${result.class_name}, ${top})`;
    else if (result.unsure) $("pred-conf").textContent = `unsure: ${top} for ${result.class_name}, maybe ${result.runner_up}`;
    else $("pred-conf").textContent = `${top} sure it is ${result.class_name}`;
    label.classList.toggle("unsure", result.unsure || !result.known);
    showSteps(result.steps || []);
    showMaps(result.activations || []);
    $("occlude").disabled = false;
    $("occlusion").replaceChildren();
    setStatus($("draw-status"), result.inverted ? "Dark ink on a light background: inverted to match MNIST." : "");
  }

  function showSteps(steps) {
    const row = $("steps");
    row.replaceChildren();
    steps.forEach((step, i) => {
      if (i) row.append(el("span", { class: "arrow", "aria-hidden": "true", text: "→" }));
      const img = el("img", { src: pngSrc(step.png), alt: `${step.title} (${step.width}×${step.height})` });
      if (Math.max(step.width, step.height) <= 64) img.classList.add("pixelated");
      row.append(el("figure", { class: "step", "data-step": step.name }, [img, el("figcaption", { text: step.title })]));
    });
  }

  function showMaps(layers) {
    const box = $("maps");
    box.replaceChildren();
    for (const layer of layers) {
      const grid = el("div", { class: `map-grid${layer.maps.length > 20 ? " small" : ""}` });
      layer.maps.forEach((png, i) => grid.append(el("img", { src: pngSrc(png), alt: `map ${i + 1}` })));
      box.append(el("div", { class: "layer-maps", "data-layer": String(layer.layer) }, [el("h3", { text: layer.title }), grid]));
    }
  }

  function padBlob() {
    return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  }

  const schedulePredict = debounce(() => predictNow(), 120);

  async function predictNow() {
    if (!activeModel) return;
    if (uploaded && lastInput && !strokes.length) return runPrediction(lastInput);
    if (!strokes.length) return;
    const blob = await padBlob();
    lastInput = { blob, type: "image/png" };
    runPrediction(lastInput);
  }

  async function runPrediction(input) {
    if (!activeModel) {
      setStatus($("draw-status"), "No model yet: train one in the Train tab.", true);
      return;
    }
    if (inFlight) {
      queued = true;
      return;
    }
    inFlight = true;
    try {
      const result = await api("/api/predict?activations=true", {
        method: "POST",
        headers: { "Content-Type": input.type },
        body: input.blob,
      });
      if (input === lastInput) {
        showPrediction(result);
        requestCount += 1;
        $("bars").dataset.count = String(requestCount);
      }
    } catch (err) {
      if (input === lastInput) setStatus($("draw-status"), err.message, true);
    } finally {
      inFlight = false;
      if (queued) {
        queued = false;
        predictNow();
      }
    }
  }

  $("occlude").addEventListener("click", async () => {
    if (!lastInput) return;
    const button = $("occlude");
    button.disabled = true;
    setStatus($("draw-status"), "Computing the occlusion map…");
    try {
      const result = await api("/api/occlusion", {
        method: "POST",
        headers: { "Content-Type": lastInput.type },
        body: lastInput.blob,
      });
      const input = el("img", { src: pngSrc(result.input), alt: "network input" });
      const heat = el("img", { src: pngSrc(result.map), alt: "occlusion map" });
      const overlay = el("div", { class: "overlay", role: "img", "aria-label": "occlusion map over the input" }, [
        el("img", { src: pngSrc(result.input), alt: "" }),
        el("img", { src: pngSrc(result.map), alt: "" }),
      ]);
      $("occlusion").replaceChildren(
        el("figure", {}, [input, el("figcaption", { text: "input" })]),
        el("figure", {}, [heat, el("figcaption", { text: `drop in P(${result.label})` })]),
        el("figure", {}, [overlay, el("figcaption", { text: "overlay" })]),
      );
      setStatus($("draw-status"), `Bright regions matter most for “${result.label}” (P = ${percent(result.probability)}).`);
    } catch (err) {
      setStatus($("draw-status"), err.message, true);
    } finally {
      button.disabled = false;
    }
  });

  // -- training ------------------------------------------------------------------------------

  const chart = { loss: [], testLoss: [], trainAcc: [], testAcc: [], epochs: 1 };
  let events = null;

  function fillSelect(select, values, chosen) {
    select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
    if (values.includes(chosen)) select.value = chosen;
  }

  let recipes = {};

  // A recipe brings a schedule, Adam's betas and label smoothing, and fills in its own preset,
  // optimizer, learning rate and batch size, which the other fields may then change.
  function describeRecipe(name) {
    const r = recipes[name];
    if (!r) return "";
    const extras = [`${r.schedule} learning rate`];
    if (r.betas[0] !== 0.9 || r.betas[1] !== 0.999) extras.push(`Adam betas ${r.betas.join("/")}`);
    if (r.label_smoothing) extras.push(`label smoothing ${r.label_smoothing}`);
    if (r.weight_decay) extras.push(`weight decay ${r.weight_decay}`);
    if (r.augment) extras.push("augmented images");
    return `Recipe ${name}: ${extras.join(", ")}.`;
  }

  function applyRecipe(name) {
    const r = recipes[name];
    if (!r) return;
    $("f-preset").value = r.model;
    $("f-optimizer").value = r.optimizer;
    $("f-lr").value = r.lr;
    $("f-batch").value = r.batch_size;
    $("f-recipe-note").textContent = describeRecipe(name);
  }

  async function loadTrainOptions() {
    const options = await api("/api/train/options");
    const d = options.defaults;
    recipes = options.recipes;
    fillSelect($("f-dataset"), options.datasets, d.dataset);
    fillSelect($("f-recipe"), Object.keys(recipes), d.recipe);
    $("f-recipe").addEventListener("change", () => applyRecipe($("f-recipe").value));
    // Colour pictures train with the pictures recipe, digits with the default one.
    $("f-dataset").addEventListener("change", () => {
      const recipe = options.dataset_kinds[$("f-dataset").value] === "images" ? "pictures" : d.recipe;
      $("f-recipe").value = recipe;
      applyRecipe(recipe);
    });
    $("f-recipe-note").textContent = describeRecipe(d.recipe);
    fillSelect($("f-preset"), options.presets, d.preset);
    fillSelect($("f-activation"), options.activations, d.activation);
    fillSelect($("f-optimizer"), options.optimizers, d.optimizer);
    fillSelect($("f-loss"), options.losses, d.loss);
    $("f-epochs").value = d.epochs;
    $("f-lr").value = d.learning_rate;
    $("f-batch").value = d.batch_size;
    $("f-subset").value = d.subset == null ? "" : d.subset;
  }

  function formConfig() {
    const subset = $("f-subset").value.trim();
    return {
      dataset: $("f-dataset").value,
      recipe: $("f-recipe").value,
      preset: $("f-preset").value,
      activation: $("f-activation").value,
      epochs: Number($("f-epochs").value),
      learning_rate: Number($("f-lr").value),
      optimizer: $("f-optimizer").value,
      loss: $("f-loss").value,
      batch_size: Number($("f-batch").value),
      subset: subset === "" ? null : Number(subset),
    };
  }

  function setTraining(running) {
    $("train-start").disabled = running;
    $("train-stop").disabled = !running;
    $("model-chip").classList.toggle("busy", running);
    for (const field of $("train-form").querySelectorAll("select, input")) field.disabled = running;
  }

  function setProgress(fraction) {
    const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    $("train-progress-fill").style.width = `${pct}%`;
    $("train-progress").setAttribute("aria-valuenow", String(pct));
  }

  $("train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!$("train-form").reportValidity()) return;
    setStatus($("train-status"), "Starting…");
    try {
      await postJSON("/api/train", formConfig());
      setTraining(true);
      followTraining();
    } catch (err) {
      setStatus($("train-status"), err.message, true);
    }
  });

  $("train-stop").addEventListener("click", async () => {
    $("train-stop").disabled = true;
    try {
      await postJSON("/api/train/stop", {});
      setStatus($("train-status"), "Stopping after the current step…");
    } catch (err) {
      setStatus($("train-status"), err.message, true);
    }
  });

  function followTraining() {
    if (events) events.close();
    chart.loss = [];
    chart.testLoss = [];
    chart.trainAcc = [];
    chart.testAcc = [];
    events = new EventSource("/api/train/events");
    events.onmessage = (message) => handleEvent(JSON.parse(message.data));
    events.onerror = () => {
      // The server ends the stream after the final event; anything else is retried.
      if (events && events.readyState === EventSource.CLOSED) events = null;
    };
  }

  function handleEvent(event) {
    switch (event.type) {
      case "start":
        chart.epochs = event.config.epochs;
        setStatus($("train-status"), `Training ${event.config.model} on ${event.train_size.toLocaleString()} ${event.config.dataset} images…`);
        showFilters(event.filters);
        redrawCharts();
        break;
      case "progress": {
        const x = event.epoch - 1 + event.batch / event.batches;
        chart.loss.push([x, event.loss]);
        chart.trainAcc.push([x, event.accuracy]);
        setProgress(x / chart.epochs);
        setStatus($("train-status"), `Epoch ${event.epoch}/${chart.epochs}, batch ${event.batch}/${event.batches}: loss ${event.loss.toFixed(3)}, accuracy ${percent(event.accuracy)}`);
        redrawCharts();
        break;
      }
      case "epoch":
        if (event.test_accuracy != null) chart.testAcc.push([event.epoch, event.test_accuracy]);
        if (event.test_loss != null) chart.testLoss.push([event.epoch, event.test_loss]);
        redrawCharts();
        break;
      case "filters":
        showFilters(event.filters);
        break;
      case "done":
        if (events) events.close();
        events = null;
        setTraining(false);
        setProgress(event.stopped ? 0 : 1);
        setStatus(
          $("train-status"),
          event.stopped
            ? `Stopped. Saved as run ${event.run} (test accuracy ${percent(event.test_accuracy)}); choose it below to use it.`
            : event.activated
              ? `Done: run ${event.run}, test accuracy ${percent(event.test_accuracy)}. It now reads your drawings.`
              : `Done: run ${event.run}, test accuracy ${percent(event.test_accuracy)}, no better than guessing: the model in use stays.`,
        );
        $("train-status").dataset.state = event.stopped ? "stopped" : "finished";
        refreshModels().then(() => predictNow());
        break;
      case "error":
        if (events) events.close();
        events = null;
        setTraining(false);
        setStatus($("train-status"), event.message, true);
        $("train-status").dataset.state = "failed";
        break;
      default:
        break;
    }
  }

  /** Draw the loss and accuracy charts from `chart`. */
  function redrawCharts() {
    const maxLoss = niceCeil(Math.max(0.5, ...chart.loss.concat(chart.testLoss).map((p) => p[1])));
    lineChart(
      $("loss-chart"),
      [
        { points: chart.loss, color: cssVar("--loss") },
        { points: chart.testLoss, color: cssVar("--test"), dots: true },
      ],
      [0, maxLoss],
      chart.epochs,
      (v) => v.toFixed(2),
    );
    lineChart(
      $("acc-chart"),
      [
        { points: chart.trainAcc, color: cssVar("--train") },
        { points: chart.testAcc, color: cssVar("--test"), dots: true },
      ],
      [0, 1],
      chart.epochs,
      (v) => `${Math.round(v * 100)}%`,
    );
    const n = chart.loss.length;
    $("chart-points").textContent = `${n} point${n === 1 ? "" : "s"}`;
    $("chart-points").dataset.points = String(n);
  }

  /** The smallest of 1, 2, 2.5, 5 × 10^k at or above v, so the axis ticks are round. */
  function niceCeil(v) {
    const base = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 2.5, 5, 10].map((m) => m * base).find((n) => n >= v);
  }

  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function lineChart(canvas, series, [yMin, yMax], epochs, format) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 44;
    const right = 10;
    const top = 8;
    const bottom = 24;
    const w = width - left - right;
    const h = height - top - bottom;
    const xMax = Math.max(1, epochs);
    const px = (x) => left + (x / xMax) * w;
    const py = (y) => top + h - ((y - yMin) / (yMax - yMin)) * h;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#5f6681";
    g.strokeStyle = "#e3e6ef";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = yMin + ((yMax - yMin) * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(py(y)) + 0.5);
      g.lineTo(left + w, Math.round(py(y)) + 0.5);
      g.stroke();
      g.textAlign = "right";
      g.textBaseline = "middle";
      g.fillText(format(y), left - 6, py(y));
    }
    const step = Math.max(1, Math.ceil(xMax / 10));
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let e = step; e <= xMax; e += step) g.fillText(String(e), px(e), top + h + 6);
    g.textAlign = "right";
    g.fillText("epoch", left - 6, top + h + 6);
    for (const s of series) {
      if (!s.points.length) continue;
      g.strokeStyle = s.color;
      g.fillStyle = s.color;
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.beginPath();
      s.points.forEach(([x, y], i) => (i ? g.lineTo(px(x), py(y)) : g.moveTo(px(x), py(y))));
      g.stroke();
      if (s.dots || s.points.length === 1) {
        for (const [x, y] of s.points) {
          g.beginPath();
          g.arc(px(x), py(y), 3.5, 0, Math.PI * 2);
          g.fill();
        }
      }
    }
  }

  /** Paint each first-layer filter (kH × kW weights) on its own small canvas. */
  function showFilters(filters) {
    const box = $("filters");
    if (!filters || !filters.length) return;
    const scale = Math.max(1e-6, ...filters.flat(2).map(Math.abs));
    if (box.children.length !== filters.length || !box.querySelector("canvas")) {
      box.replaceChildren(
        ...filters.map((f, i) => el("canvas", { width: String(f[0].length), height: String(f.length), "aria-label": `filter ${i + 1}`, role: "img" })),
      );
    }
    const neg = [47, 111, 219];
    const pos = [232, 136, 42];
    filters.forEach((f, i) => {
      const canvas = box.children[i];
      const g = canvas.getContext("2d");
      const image = g.createImageData(f[0].length, f.length);
      f.flat().forEach((v, j) => {
        const t = Math.min(1, Math.abs(v) / scale);
        const base = v < 0 ? neg : pos;
        for (let c = 0; c < 3; c++) image.data[j * 4 + c] = Math.round(255 + (base[c] - 255) * t);
        image.data[j * 4 + 3] = 255;
      });
      g.putImageData(image, 0, 0);
    });
  }

  window.addEventListener("resize", debounce(redrawCharts, 150));

  // -- convolution demo ----------------------------------------------------------------------

  const conv = { image: [], filter: [], original: [], pos: 0, size: 0 };

  async function loadArticle() {
    try {
      const article = await api("/api/article");
      conv.image = article.image;
      conv.original = article.filter.map((row) => row.slice());
      conv.filter = article.filter.map((row) => row.slice());
      buildConv();
    } catch (err) {
      setStatus($("conv-status"), `The convolution demo is unavailable: ${err.message}`, true);
    }
  }

  const mapSize = () => conv.image.length - conv.filter.length + 1;

  /** Entry (r, c) of the activation map and its products. */
  function convEntry(r, c) {
    const terms = [];
    conv.filter.forEach((row, i) => row.forEach((w, j) => terms.push([conv.image[r + i][c + j], w])));
    return { terms, sum: terms.reduce((acc, [x, w]) => acc + x * w, 0) };
  }

  function buildConv() {
    const n = conv.image.length;
    const k = conv.filter.length;
    conv.size = mapSize();
    const imageBox = $("conv-image");
    imageBox.replaceChildren();
    conv.image.forEach((row, r) =>
      row.forEach((v, c) => {
        const cell = el("div", { class: `cell${v ? " ink" : ""}`, "data-r": String(r), "data-c": String(c), text: String(v) });
        imageBox.append(cell);
      }),
    );
    const filterBox = $("conv-filter");
    filterBox.replaceChildren();
    conv.filter.forEach((row, i) =>
      row.forEach((w, j) => {
        const input = el("input", { type: "number", step: "1", value: String(w), "aria-label": `filter weight row ${i + 1} column ${j + 1}`, "data-i": String(i), "data-j": String(j) });
        filterBox.append(input);
      }),
    );
    const mapBox = $("conv-map");
    mapBox.replaceChildren();
    for (let p = 0; p < conv.size * conv.size; p++) {
      mapBox.append(el("button", { type: "button", "data-pos": String(p) }));
    }
    imageBox.style.gridTemplateColumns = `repeat(${n}, var(--cell, 42px))`;
    filterBox.style.gridTemplateColumns = `repeat(${k}, 48px)`;
    mapBox.style.gridTemplateColumns = `repeat(${conv.size}, 56px)`;
    renderConv();
  }

  function renderConv() {
    const size = conv.size;
    const r0 = Math.floor(conv.pos / size);
    const c0 = conv.pos % size;
    const k = conv.filter.length;
    for (const cell of $("conv-image").children) {
      const r = Number(cell.dataset.r);
      const c = Number(cell.dataset.c);
      cell.classList.toggle("inwin", r >= r0 && r < r0 + k && c >= c0 && c < c0 + k);
    }
    for (const input of $("conv-filter").children) {
      const w = Number(input.value);
      input.classList.toggle("pos", w > 0);
      input.classList.toggle("neg", w < 0);
    }
    const values = [];
    for (let p = 0; p < size * size; p++) values.push(convEntry(Math.floor(p / size), p % size).sum);
    const top = Math.max(1e-9, ...values.map(Math.abs));
    Array.from($("conv-map").children).forEach((button, p) => {
      const v = values[p];
      button.textContent = formatNumber(v);
      button.dataset.value = String(v);
      button.classList.toggle("current", p === conv.pos);
      button.setAttribute("aria-pressed", String(p === conv.pos));
      button.setAttribute("aria-label", `row ${Math.floor(p / size) + 1}, column ${(p % size) + 1}: ${formatNumber(v)}`);
      const t = Math.abs(v) / top;
      button.style.background = v >= 0 ? `rgba(79, 70, 229, ${0.08 + 0.8 * t})` : `rgba(47, 111, 219, ${0.08 + 0.5 * t})`;
      button.style.color = t > 0.55 && v > 0 ? "#fff" : "";
    });
    const { terms, sum } = convEntry(r0, c0);
    const box = $("conv-sum");
    box.replaceChildren();
    terms.forEach(([x, w], i) => {
      if (i) box.append(" + ");
      box.append(el("span", { class: `term${x * w !== 0 ? " hit" : ""}`, text: `${formatNumber(x)}×${formatNumber(w)}` }));
    });
    box.append(" = ", el("span", { class: "total", id: "conv-total", text: formatNumber(sum) }));
    $("conv-pos").textContent = `position ${conv.pos + 1} of ${size * size} (row ${r0 + 1}, column ${c0 + 1})`;
    $("conv-prev").disabled = conv.pos === 0;
    $("conv-next").disabled = conv.pos === size * size - 1;
  }

  const formatNumber = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(2));

  $("conv-next").addEventListener("click", () => {
    conv.pos = Math.min(conv.size * conv.size - 1, conv.pos + 1);
    renderConv();
  });
  $("conv-prev").addEventListener("click", () => {
    conv.pos = Math.max(0, conv.pos - 1);
    renderConv();
  });
  $("conv-reset").addEventListener("click", () => {
    conv.filter = conv.original.map((row) => row.slice());
    buildConv();
  });
  $("conv-map").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-pos]");
    if (!button) return;
    conv.pos = Number(button.dataset.pos);
    renderConv();
  });
  $("conv-image").addEventListener("click", (event) => {
    const cell = event.target.closest(".cell");
    if (!cell) return;
    const r = Math.min(Number(cell.dataset.r), conv.size - 1);
    const c = Math.min(Number(cell.dataset.c), conv.size - 1);
    conv.pos = r * conv.size + c;
    renderConv();
  });
  $("conv-filter").addEventListener("input", (event) => {
    const input = event.target;
    const value = Number(input.value);
    if (input.value.trim() === "" || !Number.isFinite(value)) return;
    conv.filter[Number(input.dataset.i)][Number(input.dataset.j)] = value;
    renderConv();
  });

  // -- start ---------------------------------------------------------------------------------

  async function start() {
    const initial = location.hash.slice(1);
    showTab(tabs.some((t) => t.dataset.tab === initial) ? initial : "draw");
    redrawPad();
    resetPrediction();
    await Promise.all([
      refreshModels().catch((err) => setStatus($("draw-status"), err.message, true)),
      loadTrainOptions().catch((err) => setStatus($("train-status"), err.message, true)),
      loadArticle(),
    ]);
    redrawCharts();
    const status = await api("/api/train").catch(() => null);
    if (status && status.state === "running") {
      setTraining(true);
      followTraining();
    }
  }

  start();
})();
