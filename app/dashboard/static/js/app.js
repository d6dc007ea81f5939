// The dashboard: a hash router over seven views (sign in, jobs, job, submit, compare, and
// sweeps.js's sweeps and sweep).
// Everything it shows comes from the public API with the key the user signed in with.

import { api, ApiError, follow, forgetKey, getKey, isTerminal, setKey } from "./api.js";
import { lineChart } from "./chart.js";
import { append, clear, fmtBytes, fmtNumber, fmtTime, h } from "./dom.js";
import { SchemaForm } from "./form.js";
import { picturesFor } from "./pictures.js";
import { sweepsView, sweepView } from "./sweeps.js";
import {
  alertBox, badge, failure, jobHref, jobLabel, onRefusedKey, page, pictureFigure, section,
} from "./ui.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null;  // the view's AbortController: aborting it closes its streams
let catalog = null;

async function models(signal) {
  catalog ??= await api("/v1/models", { signal });
  return catalog;
}

function duration(seconds) {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function progressOf(p) {
  const pct = Math.round((p?.fraction ?? 0) * 100);
  const eta = p?.eta_seconds != null && pct < 100 ? `, ETA ${duration(p.eta_seconds)}` : "";
  return { pct, text: `${pct} % (${p?.step ?? 0} / ${p?.total ?? "?"}${eta})` };
}

function progressBar(p) {
  const { pct, text } = progressOf(p);
  const bar = h("progress", { max: 100, value: pct, "aria-label": "progress" });
  return h("span", { class: "progress" }, bar, h("span", { class: "progress-text" }, text));
}

function setProgress(box, p) {
  const { pct, text } = progressOf(p);
  box.querySelector("progress").value = pct;
  box.querySelector(".progress-text").textContent = text;
}

// ---------------------------------------------------------------- sign in

function signIn(message) {
  nav.hidden = true;
  current?.abort();
  const input = h("input", { id: "key", type: "password", autocomplete: "current-password",
    required: true, spellcheck: "false", "aria-describedby": "key-hint" });
  const status = h("div", { id: "signin-status", "aria-live": "polite" },
    message ? alertBox(message) : null);
  const form = h("form", { class: "signin", novalidate: true },
    h("label", { for: "key" }, "API key"), input,
    h("p", { class: "hint", id: "key-hint" },
      "The key is kept in this tab's session storage and sent only to this server."),
    h("button", { type: "submit" }, "Sign in"), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) { status.replaceChildren(alertBox("Enter an API key.")); return; }
    try {
      catalog = await api("/v1/models", { key });
    } catch (err) {
      const msg = err instanceof ApiError && err.status === 401
        ? `Sign-in failed: ${err.message}` : `Sign-in failed: ${err.message || err}`;
      status.replaceChildren(alertBox(msg));
      input.focus();
      return;
    }
    setKey(key);
    if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
    else route();
  });
  page("Sign in", form);
  input.focus();
}

onRefusedKey(signIn);

document.getElementById("signout").addEventListener("click", () => {
  forgetKey();
  catalog = null;
  if (location.hash === "#/signin") route();
  else location.hash = "#/signin";
});

// ---------------------------------------------------------------- jobs list

const MAX_LIVE = 8;  // streams kept open by the list (the API allows 20 per key)

async function jobsView(signal) {
  const rows = new Map();
  const live = new Map();
  const statusFilter = h("select", { id: "status-filter" },
    ["", "queued", "running", "succeeded", "failed", "cancelled"].map(
      (s) => h("option", { value: s }, s || "any")));
  const compare = h("button", { type: "button", id: "compare", disabled: true }, "Compare selected");
  const tbody = h("tbody");
  const note = h("div", { "aria-live": "polite" });
  let limit = 50;
  const more = h("button", { type: "button", id: "more", hidden: true }, "Show more");
  more.addEventListener("click", () => { limit = Math.min(limit + 50, 200); refresh(); });
  const table = h("div", { class: "table-wrap" }, h("table", { class: "jobs" },
    h("caption", { class: "sr-only" }, "Your jobs, newest first"),
    h("thead", {}, h("tr", {}, ["", "Job", "Model", "Dataset", "Status", "Progress",
      "Created"].map((t, i) => h("th", { scope: "col", class: i === 0 ? "pick" : null },
      t || h("span", { class: "sr-only" }, "Select"))))),
    tbody));
  const selected = () => [...rows.values()].filter((r) => r.pick.checked).map((r) => r.id);
  compare.addEventListener("click", () => {
    location.hash = `#/compare?jobs=${selected().map(encodeURIComponent).join(",")}`;
  });
  statusFilter.addEventListener("change", () => refresh());
  page("Jobs",
    h("div", { class: "toolbar" },
      h("label", { for: "status-filter" }, "Status "), statusFilter, compare,
      h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    note, table, more);

  function row(job) {
    const pick = h("input", { type: "checkbox", "aria-label": `select ${jobLabel(job)}` });
    pick.addEventListener("change", () => { compare.disabled = selected().length < 2; });
    const status = h("td", { class: "status" });
    const prog = h("td", { class: "prog" }, progressBar(job.progress));
    const tr = h("tr", { "data-job": job.id },
      h("td", { class: "pick" }, pick),
      h("td", { class: "job" }, h("a", { href: jobHref(job.id) }, jobLabel(job)),
        job.name ? h("div", { class: "muted mono" }, job.id) : null),
      h("td", { class: "model" }, job.model), h("td", { class: "dataset wrap" }, job.dataset),
      status, prog, h("td", { class: "created muted" }, fmtTime(job.created_at)));
    const r = { id: job.id, tr, pick, status, prog, job };
    rows.set(job.id, r);
    return r;
  }

  function update(r, job) {
    r.job = job;
    r.status.replaceChildren(badge(job.status));
    setProgress(r.prog, job.progress);
  }

  function watch(r) {
    if (live.has(r.id) || live.size >= MAX_LIVE || isTerminal(r.job.status)) return;
    const ctl = new AbortController();
    signal.addEventListener("abort", () => ctl.abort());
    live.set(r.id, ctl);
    follow(r.id, ({ event, data }) => {
      if (event === "status") update(r, { ...r.job, status: data.status });
      if (event === "progress") update(r, { ...r.job, progress: data });
    }, { signal: ctl.signal }).catch(() => {}).finally(async () => {
      live.delete(r.id);
      if (signal.aborted) return;
      try { update(r, await api(`/v1/jobs/${encodeURIComponent(r.id)}`, { signal })); } catch { /* next refresh */ }
    });
  }

  async function refresh() {
    const q = statusFilter.value ? `&status=${statusFilter.value}` : "";
    let list;
    try {
      list = await api(`/v1/jobs?limit=${limit}${q}`, { signal });
    } catch (err) {
      if (!signal.aborted) note.replaceChildren(failure(err) ?? "");
      return;
    }
    more.hidden = !list.next_cursor || limit >= 200;
    const none = statusFilter.value ? h("p", {}, `No ${statusFilter.value} jobs.`)
      : h("p", {}, "No jobs yet. ", h("a", { href: "#/submit" }, "Submit one"), ".");
    note.replaceChildren(list.items.length ? "" : none);
    table.hidden = !list.items.length;
    const order = list.items.map((job) => {
      const r = rows.get(job.id) ?? row(job);
      if (!live.has(job.id)) update(r, job);
      return r.tr;
    });
    const keep = new Set(list.items.map((j) => j.id));
    for (const [id, r] of rows) if (!keep.has(id)) { rows.delete(id); live.get(id)?.abort(); }
    const same = order.length === tbody.children.length && order.every((tr, i) => tbody.children[i] === tr);
    if (!same) tbody.replaceChildren(...order);
    for (const id of keep) watch(rows.get(id));
  }

  await refresh();
  const timer = setInterval(refresh, 4000);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// ---------------------------------------------------------------- one job

function metricSeries(rows) {
  const byName = new Map();
  for (const m of rows) {
    if (!byName.has(m.name)) byName.set(m.name, new Map());
    byName.get(m.name).set(m.step, m.value);
  }
  return byName;
}

async function jobView(id, signal) {
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  let job;
  try {
    job = await api(base, { signal });
  } catch (err) {
    page("Job", failure(err) ?? "");
    return;
  }
  const [cat, ds] = await Promise.all([
    models(signal).catch(() => []),
    api(`/v1/datasets/${encodeURIComponent(job.dataset)}`, { signal }).catch(() => null),
  ]);
  const model = cat.find((m) => m.name === job.model);
  const statusBox = h("span", {}, badge(job.status));
  const prog = progressBar(job.progress);
  const message = h("div", { class: "message", "aria-live": "polite" });
  const errorBox = h("div");
  const actions = h("div", { class: "actions" });
  const metricPicks = h("fieldset", { class: "metric-picks" }, h("legend", {}, "Show"));
  const charts = h("div", { class: "charts" });
  const pictures = h("div", { class: "pictures" });
  const checkpoints = h("div", { class: "table-wrap" });
  const events = h("ol", { class: "events", reversed: true });
  const latest = h("dl", { class: "latest" });
  const series = new Map();  // name -> Map(step -> value)
  const shown = new Set();
  let touched = false;  // the user chose metrics: new ones are then not shown unasked

  async function act(label, fn) {
    message.replaceChildren(h("p", {}, `${label}…`));
    try {
      await fn();
    } catch (err) {
      message.replaceChildren(failure(err) ?? "");
    }
  }

  function drawActions() {
    const b = (label, fn, cls) => h("button", { type: "button", class: cls, onclick: fn }, label);
    append(clear(actions), [
      !isTerminal(job.status) ? b("Cancel", () => act("Cancelling", async () => {
        await api(`${base}/cancel`, { method: "POST", signal });
        await reload();
        message.replaceChildren(h("p", {}, "Cancel requested."));
      })) : null,
      ["failed", "cancelled"].includes(job.status) ? b("Resume", () => act("Resuming", async () => {
        await api(`${base}/resume`, { method: "POST", body: {}, signal });
        location.hash = jobHref(id);
        route();
      })) : null,
      b("Clone", () => act("Cloning", async () => {
        const copy = await api(`${base}/clone`, { method: "POST", body: {}, signal });
        location.hash = jobHref(copy.id);
      })),
      isTerminal(job.status) ? b("Delete", () => {
        if (!window.confirm(`Delete job ${jobLabel(job)}, its metrics and checkpoints?`)) return;
        act("Deleting", async () => {
          await api(base, { method: "DELETE", signal });
          location.hash = "#/jobs";
        });
      }, "danger") : null,
      h("a", { class: "button", href: `#/compare?jobs=${encodeURIComponent(id)}` }, "Compare…"),
      h("a", { class: "button", href: `#/sweeps?from=${encodeURIComponent(id)}` }, "Sweep from this job"),
    ]);
  }

  function drawLatest() {
    latest.replaceChildren(...Object.entries(job.metrics || {}).map(([k, v]) =>
      h("div", {}, h("dt", {}, k), h("dd", {}, fmtNumber(v)))));
  }

  let pending = false;
  function drawCharts() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const names = [...series.keys()].sort();
      if (!touched) {  // until the user chooses: the (up to) four longest curves
        shown.clear();
        [...names].sort((a, b) => series.get(b).size - series.get(a).size).slice(0, 4)
          .forEach((n) => shown.add(n));
        for (const box of metricPicks.querySelectorAll("input")) box.checked = shown.has(box.value);
      }
      const have = new Set([...metricPicks.querySelectorAll("input")].map((i) => i.value));
      for (const name of names) {
        if (have.has(name)) continue;
        const box = h("input", { type: "checkbox", value: name, id: `m-${name}` });
        box.checked = shown.has(name);
        box.addEventListener("change", () => {
          touched = true;
          if (box.checked) shown.add(name); else shown.delete(name);
          drawCharts();
        });
        metricPicks.append(h("label", { for: `m-${name}` }, box, ` ${name}`));
      }
      if (!names.length) { charts.replaceChildren(h("p", { class: "muted" }, "No metrics yet.")); return; }
      charts.replaceChildren(...names.filter((n) => shown.has(n)).map((name) =>
        lineChart([{ label: name, points: [...series.get(name)] }], { title: name })));
    });
  }

  function addMetrics(list) {
    for (const m of list) {
      if (!series.has(m.name)) series.set(m.name, new Map());
      series.get(m.name).set(m.step, m.value);
    }
    drawCharts();
  }

  async function drawCheckpoints() {
    try {
      const list = await api(`${base}/checkpoints`, { signal });
      checkpoints.replaceChildren(list.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Id", "Step", "Best", "Size", "Created"].map(
          (t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, list.map((c) => h("tr", {}, h("td", { class: "mono" }, c.id),
          h("td", {}, c.step), h("td", {}, c.is_best ? "best" : ""), h("td", {}, fmtBytes(c.size)),
          h("td", {}, fmtTime(c.created_at))))))
        : h("p", { class: "muted" }, "No checkpoints yet."));
    } catch (err) {
      if (!signal.aborted) checkpoints.replaceChildren(failure(err) ?? "");
    }
  }

  function drawPictures() {
    const pics = job.checkpoint ? picturesFor(job, model, ds) : [];
    pictures.replaceChildren(...(pics.length ? pics.map((p) => pictureFigure(p, signal))
      : [h("p", { class: "muted" }, job.checkpoint ? "This model offers no pictures."
        : "Pictures appear once the job has a checkpoint.")]));
  }

  async function reload() {
    job = await api(base, { signal });
    statusBox.replaceChildren(badge(job.status));
    setProgress(prog, job.progress);
    errorBox.replaceChildren(job.error ? alertBox(job.error) : "");
    drawActions();
    drawLatest();
  }

  page(jobLabel(job),
    h("p", { class: "sub" }, h("span", { class: "mono" }, job.id), " · ", job.model, " on ",
      job.dataset, " · ", statusBox, " ", prog),
    errorBox, actions, message,
    h("div", { class: "job-grid" },
      section("Metrics", latest, metricPicks, charts),
      section("Pictures", pictures),
      section("Spec", h("pre", { class: "spec" }, JSON.stringify(job.spec, null, 2))),
      h("div", {},
        section("Provenance", h("dl", { class: "kv" }, Object.entries(job.provenance || {}).flatMap(
          ([k, v]) => [h("dt", {}, k), h("dd", { class: "wrap" }, typeof v === "string" ? v : JSON.stringify(v))]))),
        section("Checkpoints", checkpoints),
        section("Events", events))));
  if (job.tags && Object.keys(job.tags).length) {
    main.querySelector(".sub").append(" · tags: ", Object.entries(job.tags).map(([k, v]) => `${k}=${v}`).join(", "));
  }
  errorBox.replaceChildren(job.error ? alertBox(job.error) : "");
  drawActions();
  drawLatest();
  drawPictures();
  drawCheckpoints();
  try {
    const m = await api(`${base}/metrics`, { signal });
    addMetrics(m.metrics);
  } catch (err) {
    if (!signal.aborted) charts.replaceChildren(failure(err) ?? "");
  }
  drawCharts();
  follow(id, ({ id: n, event, data }) => {
    const text = event === "metrics"
      ? data.metrics.map((m) => `${m.name}=${fmtNumber(m.value)}`).join(" ")
      : JSON.stringify(data);
    events.prepend(h("li", {}, h("span", { class: "mono" }, `#${n} ${event} `), text));
    if (event === "progress") setProgress(prog, data);
    if (event === "metrics") addMetrics(data.metrics);
    if (event === "status") {
      statusBox.replaceChildren(badge(data.status));
      if (isTerminal(data.status) || data.status === "running") {
        reload().then(() => {
          if (isTerminal(job.status)) { drawPictures(); drawCheckpoints(); }
        }).catch(() => {});
      }
    }
  }, { signal }).catch((err) => { if (!signal.aborted) message.replaceChildren(failure(err) ?? ""); });
}

// ---------------------------------------------------------------- submit

let openapi = null;

async function submitView(signal) {
  let cat;
  try {
    cat = await models(signal);
    openapi ??= await api("/openapi.json", { signal });
  } catch (err) {
    page("Submit a job", failure(err) ?? "");
    return;
  }
  const uploads = await api("/v1/datasets", { signal })
    .then((l) => l.filter((d) => d.kind !== "builtin")).catch(() => []);
  const modelSelect = h("select", { id: "model", name: "model" },
    cat.map((m) => h("option", { value: m.name }, m.name)));
  const describe = h("p", { class: "hint", id: "model-hint" });
  modelSelect.setAttribute("aria-describedby", "model-hint");
  const holder = h("div");
  const summary = h("div", { id: "form-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Submit");
  const form = h("form", { class: "submit", novalidate: true },
    h("div", { class: "field", "data-path": "model" }, h("label", { for: "model" }, "model"),
      modelSelect, describe),
    holder, summary, submit);
  let schemaForm = null;

  function build() {
    const m = cat.find((x) => x.name === modelSelect.value);
    describe.textContent = `${m.description} · answers: ${m.capabilities.join(", ")}`;
    schemaForm = new SchemaForm();
    const datasets = [...m.datasets];
    if (m.capabilities.includes("predict")) datasets.push(...uploads.map((u) => u.id));
    const labels = new Map(uploads.map((u) => [u.id, `${u.name} (${u.id})`]));
    const dsField = schemaForm.field("dataset", "dataset", {
      kind: "enum", schema: { description: "built-in dataset, or one of your uploads", required: true },
      options: datasets,
    });
    for (const opt of dsField.querySelectorAll("option")) {
      const v = JSON.parse(opt.value);
      if (labels.has(v)) opt.textContent = labels.get(v);
    }
    const schemas = openapi.components.schemas;
    const trainPlaceholders = { epochs: m.default_steps ? "" : `default ${m.default_epochs}`,
      steps: m.default_steps ? `default ${m.default_steps}` : "" };
    holder.replaceChildren(
      h("fieldset", { class: "section" }, h("legend", {}, "job"), dsField,
        schemaForm.field("name", "name", { kind: "string", schema: { maxLength: 200,
          description: "a label for the job (optional)" } }),
        schemaForm.field("tags", "tags", { kind: "json", schema: {
          description: 'labels as a JSON object of strings, e.g. {"team": "a"} (optional)' } })),
      schemaForm.section(m.params_schema, m.params_schema, "params", { legend: "params" }),
      schemaForm.section(openapi, schemas.OptimizerSpec, "optimizer", { legend: "optimizer" }),
      schemaForm.section(openapi, schemas.TrainSpec, "train", { legend: "train",
        placeholders: trainPlaceholders }),
    );
    summary.replaceChildren();
  }

  modelSelect.addEventListener("change", build);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    schemaForm.clearErrors();
    const spec = { model: modelSelect.value, ...schemaForm.values() };
    submit.disabled = true;
    summary.replaceChildren(h("p", {}, "Submitting…"));
    try {
      const job = await api("/v1/jobs", { method: "POST", body: spec, signal });
      location.hash = jobHref(job.id);
    } catch (err) {
      if (err instanceof ApiError && err.problem.errors) {
        const rest = schemaForm.showErrors(err.problem);
        summary.replaceChildren(alertBox(`The job was refused: ${err.message}`),
          rest.length ? h("ul", {}, rest.map((e) => h("li", {}, `${e.path}: ${e.message}`))) : "");
      } else {
        summary.replaceChildren(failure(err) ?? "");
      }
    } finally {
      submit.disabled = false;
    }
  });
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("model");
  if (wanted && cat.some((m) => m.name === wanted)) modelSelect.value = wanted;
  build();
  page("Submit a job", form);
}

// ---------------------------------------------------------------- compare

async function compareView(signal) {
  const ids = (new URLSearchParams(location.hash.split("?")[1] || "").get("jobs") || "")
    .split(",").filter(Boolean).map(decodeURIComponent);
  const adder = h("input", { id: "add-job", type: "text", placeholder: "job_…", spellcheck: "false" });
  const addForm = h("form", { class: "toolbar" },
    h("label", { for: "add-job" }, "Add a job by id "), adder, h("button", { type: "submit" }, "Add"));
  addForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const more = adder.value.trim();
    if (more) location.hash = `#/compare?jobs=${[...ids, more].map(encodeURIComponent).join(",")}`;
  });
  let runs;
  try {
    runs = await Promise.all(ids.map(async (id) => {
      const base = `/v1/jobs/${encodeURIComponent(id)}`;
      const [job, m] = await Promise.all([api(base, { signal }), api(`${base}/metrics`, { signal })]);
      return { job, series: metricSeries(m.metrics) };
    }));
  } catch (err) {
    page("Compare", addForm, failure(err) ?? "");
    return;
  }
  const names = [...new Set(runs.flatMap((r) => [...r.series.keys()]))].sort();
  const common = names.filter((n) => runs.every((r) => r.series.has(n)));
  const pick = h("select", { id: "metric" }, names.map((n) => h("option", { value: n }, n)));
  pick.value = common.find((n) => /val/.test(n)) ?? common[0] ?? names[0] ?? "";
  const chartBox = h("div", { class: "charts wide" });
  const draw = () => {
    const name = pick.value;
    chartBox.replaceChildren(name ? lineChart(runs.filter((r) => r.series.has(name)).map((r) => ({
      label: `${jobLabel(r.job)} (${r.job.model})`, points: [...r.series.get(name)],
    })), { title: name }) : h("p", { class: "muted" }, "No metrics to compare."));
  };
  pick.addEventListener("change", draw);
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "metric"),
      runs.map((r) => h("th", { scope: "col" }, h("a", { href: jobHref(r.job.id) }, jobLabel(r.job)))))),
    h("tbody", {}, names.map((n) => h("tr", {}, h("th", { scope: "row" }, n),
      runs.map((r) => h("td", {}, fmtNumber(r.job.metrics?.[n]))))))));
  page("Compare",
    ids.length < 2 ? h("p", {}, "Pick two or more jobs in the ", h("a", { href: "#/jobs" }, "jobs list"),
      ", or add them here by id.") : null,
    addForm,
    h("div", { class: "toolbar" }, h("label", { for: "metric" }, "Metric "), pick),
    chartBox, section("Latest values", table));
  draw();
}

// ---------------------------------------------------------------- router

function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  if (!getKey()) { signIn(); return; }
  nav.hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const path = hash.split("?")[0];
  const job = path.match(/^\/jobs\/([^/]+)$/);
  const sweep = path.match(/^\/sweeps\/([^/]+)$/);
  let view;
  if (job) view = jobView(decodeURIComponent(job[1]), signal);
  else if (sweep) view = sweepView(decodeURIComponent(sweep[1]), signal);
  else if (path === "/sweeps") view = sweepsView(signal);
  else if (path === "/submit") view = submitView(signal);
  else if (path === "/compare") view = compareView(signal);
  else view = jobsView(signal);
  view.catch((err) => { if (!signal.aborted) main.append(failure(err) ?? ""); });
  for (const a of nav.querySelectorAll("a[href^='#']")) {
    if (a.getAttribute("href") === `#${path}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", () => { main.focus({ preventScroll: true }); route(); });
route();
