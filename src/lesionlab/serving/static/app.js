// LesionLab web page: upload or drop an image, send it to /v1/predict, render the result. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const TRIAGE = {
  1: "Priority 1 — possibly malignant: refer",
  2: "Priority 2 — monitor",
  3: "Priority 3 — likely benign",
};
const NOT_ASSESSABLE = "Not assessable — no triage priority";
let chosen = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function choose(file) {
  if (!file) return;
  chosen = file;
  $("drop-text").textContent = file.name;
  const url = URL.createObjectURL(file);
  $("preview").src = url;
  $("preview").hidden = false;
  $("submit").disabled = false;
  showError("");
}

async function loadModel() {
  try {
    const info = await (await fetch("/v1/model")).json();
    for (const site of info.metadata_fields.site) {
      $("site").append(el("option", site));
    }
    const m = info.metrics;
    const pct = (key) => {
      const ci = m.ci95 && m.ci95[key];
      return `${(100 * m[key]).toFixed(1)}%` + (ci ? ` (95% CI ${(100 * ci[0]).toFixed(1)}–${(100 * ci[1]).toFixed(1)}%)` : "");
    };
    const metrics = m ? ` · test balanced accuracy ${pct("balanced_accuracy")}` +
      (m.auc_macro != null ? `, macro AUC ${pct("auc_macro")}` : "") + ` on ${m.n} images` : "";
    const op = info.triage && info.triage.operating_point;
    $("operating-point").textContent = op ? "Triage operating point: " + op.statement + "." :
      "Triage operating point: not recorded for this model.";
    const cal = info.calibration;
    const temps = (cal.members || []).map((c) => `${c.temperature.toFixed(3)} (member ${c.name})`);
    $("calibration").textContent = cal.calibrated ? `Calibration: ${cal.method}; T = ` +
      (temps.length > 1 ? temps.join(", ") : cal.temperature.toFixed(3)) + "." :
      "Calibration: none recorded (temperature 1).";
    const inf = info.inference;
    $("inference").textContent = inf ? `Predictions run on ${inf.backend} with ${inf.members} member(s), ` +
      (inf.tta_default === "cascade" && inf.cascade ? `a test-time cascade by default (${inf.cascade.first}, then ` +
        `${inf.cascade.then} only where the answer is fragile)` : `test-time augmentation ${inf.tta_default} by default`) +
      `, batches of up to ${inf.batching.max_batch_size}.` : "";
    const data = info.training_data;
    $("model-info").textContent = `Model ${info.name} (${info.backend}, ${info.input.image_size} px, ` +
      `LesionLab ${info.version.lesionlab})${metrics} · trained on ${data.dataset || "unknown data"}` +
      (data.licence ? ` (${data.licence})` : "") + ` · ${info.notice}`;
    const card = info.model_card;
    if (card) {
      $("card-use").textContent = card.intended_use;
      for (const item of card.limitations) {
        $("card-limits").append(el("li", item));
      }
      $("card-licence").textContent = card.licence_note;
      $("model-card").hidden = false;
    }
    if (!info.heatmap) {
      $("heatmap").checked = false;
      $("heatmap").disabled = true;
    }
  } catch (err) {
    $("model-info").textContent = "Model information unavailable: " + err;
  }
}

function render(p) {
  $("placeholder").hidden = true;
  $("result").hidden = false;
  const ood = $("ood");
  ood.hidden = p.ood !== true;
  ood.textContent = p.ood ? "NOT ASSESSABLE: this image does not look like the dermatoscopic lesion images the " +
    "model was trained on, so no triage priority is given and the diagnoses below must not be used. " +
    p.ood_reason : "";
  const badge = $("triage");
  badge.className = p.triage_priority == null ? "badge na" : "badge p" + p.triage_priority;
  badge.textContent = p.triage_priority == null ? NOT_ASSESSABLE :
    TRIAGE[p.triage_priority] || "Priority " + p.triage_priority;
  $("triage-reason").textContent = `Rule (${p.triage_rule}): ${p.triage_reason}`;

  const unsure = $("unsure");
  unsure.hidden = p.unsure !== true;
  unsure.textContent = p.unsure ? "Unsure: the model is not confident about this image (it may be unlike the " +
    "images it was trained on). Rely on clinical assessment. " + p.unsure_reason : "";

  const seen = $("seen");
  seen.hidden = p.seen_in_training !== true;
  seen.textContent = p.seen_in_training ? "Seen in training: the model trained or validated on this image " +
    "(or its lesion), so this result looks better than it would on a new image. " + p.seen_reason : "";

  const list = $("ranking");
  list.replaceChildren();
  for (const d of p.top) {
    const li = el("li");
    li.className = "diagnosis";
    li.append(el("strong", d.label), " ", el("span", d.description, "muted"), " ",
      el("span", (100 * d.probability).toFixed(1) + "%", "prob"));
    const bar = el("div", undefined, "bar");
    const fill = el("span");
    fill.style.width = (100 * d.probability).toFixed(1) + "%";
    bar.append(fill);
    li.append(bar);
    list.append(li);
  }

  const heat = p.heatmap;
  $("heat").hidden = !(heat && heat.overlay);
  $("heat-note").hidden = !(heat && heat.note);
  if (heat && heat.overlay) {
    $("heat-base").src = heat.image;
    $("heat-overlay").src = heat.overlay;
    $("heat-method").textContent = ` ${heat.method} for ${heat["class"]}`;
  }
  if (heat && heat.note) $("heat-note").textContent = heat.note;
}

async function analyse(event) {
  event.preventDefault();
  if (!chosen) return;
  const body = new FormData();
  body.append("image", chosen, chosen.name);
  for (const key of ["age", "sex", "site"]) {
    const value = $(key).value;
    if (value !== "") body.append(key, value);
  }
  $("submit").disabled = true;
  $("submit").textContent = "Analysing…";
  showError("");
  try {
    const response = await fetch(`/v1/predict?heatmap=${$("heatmap").checked}`, { method: "POST", body });
    const payload = await response.json();
    if (!response.ok) {
      const err = payload.error || { code: response.status, message: response.statusText };
      showError(`${err.message} (${err.code})`);
      return;
    }
    render(payload);
  } catch (err) {
    showError("The service did not answer: " + err);
  } finally {
    $("submit").disabled = false;
    $("submit").textContent = "Analyse";
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => choose(e.target.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));
  $("overlay-toggle").addEventListener("change", (e) => { $("heat-overlay").hidden = !e.target.checked; });
  $("form").addEventListener("submit", analyse);
  loadModel();
}

setup();
