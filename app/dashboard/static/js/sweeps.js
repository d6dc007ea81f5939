// Sweeps (docs/api.md, Sweeps): the list with a form that starts one, and one sweep's
// children (best first), their plot and Cancel, polled while any child is queued or running.

import { api, ApiError } from "./api.js";
import { append, clear, fmtNumber, fmtTime, h } from "./dom.js";
import {
  alertBox, badge, failure, jobHref, jobLabel, page, section, showPicture,
} from "./ui.js";

export const sweepHref = (id) => `#/sweeps/${encodeURIComponent(id)}`;
const sweepLabel = (sweep) => sweep.name || sweep.id;
const base = (id) => `/v1/sweeps/${encodeURIComponent(id)}`;

const POLL_MS = 2500;  // the sweep page while a child is queued or running
const PLOT_MS = 10000;  // its plot, while a child runs (its curve grows; no status changes)
const LIST_MS = 4000;  // the list, as the jobs list
const ACTIVE = new Set(["queued", "running"]);

const active = (sweep) => sweep.children.some((c) => ACTIVE.has(c.status));
const live = (sweep) => sweep.status === "running" || active(sweep);
/** Children over (succeeded, failed, cancelled, deleted, refused), of the trials in all. */
const doneOf = (sweep) => sweep.children.filter((c) => !ACTIVE.has(c.status)).length;
const goalText = (sweep) => `${sweep.metric} (${sweep.goal})`;

/** A swept value as text: numbers shortened, strings as they are, the rest as JSON. */
function valueText(v) {
  if (typeof v === "number") return fmtNumber(v);
  return typeof v === "string" ? v : JSON.stringify(v);
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

// ---------------------------------------------------------------- the request's body

/** A small, valid sweep: Adam at three learning rates on Rosenbrock's valley (a second or
 * two each; 300 steps part them: a final loss of about 5.2, 3.3 and 0.25). */
export const EXAMPLE = {
  name: "adam's lr on rosenbrock",
  spec: { model: "optim", dataset: "rosenbrock", optimizer: { name: "adam" }, train: { steps: 300 } },
  grid: { "optimizer.lr": [0.01, 0.03, 0.1] },
  method: "grid",
  parallel: 4,
  metric: "loss",
  goal: "min",
};

const MAXIMISED = /acc|reward|return|auc|elbo|log_?prob|log_?lik/i;

/** A body that sweeps a job's learning rate (÷3, ×1, ×3) around its own, ranked by the
 * metric it logged (val_loss or loss when it has them). */
function bodyFrom(job) {
  const { name: _name, ...spec } = job.spec;  // each child is named after the sweep
  const lr = spec.optimizer?.lr ?? 0.001;
  const lrs = [lr / 3, lr, lr * 3].map((x) => Number(x.toPrecision(3)));
  const names = Object.keys(job.metrics || {});
  const metric = ["val_loss", "loss"].find((n) => names.includes(n)) ?? names[0] ?? "val_loss";
  return {
    name: `lr around ${job.id}`,
    spec,
    grid: { "optimizer.lr": lrs },
    method: "grid",
    parallel: 3,
    metric,
    goal: MAXIMISED.test(metric) ? "max" : "min",
  };
}

function sweepForm(signal, initial, open) {
  const text = (body) => JSON.stringify(body, null, 2);
  const area = h("textarea", { id: "sweep-body", rows: 16, spellcheck: "false",
    class: "mono", "aria-describedby": "sweep-body-hint" });
  area.value = text(initial);
  const status = h("div", { id: "sweep-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Start sweep");
  const reset = h("button", { type: "button", onclick: () => {
    area.value = text(EXAMPLE);
    area.removeAttribute("aria-invalid");
    status.replaceChildren();
  } }, "Reset to the example");
  const form = h("form", { class: "sweep-form", novalidate: true },
    h("label", { for: "sweep-body" }, "Request body (JSON)"),
    h("p", { class: "hint", id: "sweep-body-hint" },
      "The body of POST /v1/sweeps: spec (a job spec, as on Submit), grid (a dotted path such as "
      + "optimizer.lr, params.hidden, train.seed or dataset → a list of values, or for random "
      + "and tpe a range {low, high, log}), method (grid, random, tpe), trials, parallel, "
      + "metric, goal (min, max), seed, name. See the API docs, Sweeps."),
    area, h("div", { class: "toolbar" }, submit, reset), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    area.removeAttribute("aria-invalid");
    let body;
    try {
      body = JSON.parse(area.value);
    } catch (err) {
      area.setAttribute("aria-invalid", "true");
      status.replaceChildren(alertBox(`The body is not valid JSON: ${err.message}`));
      area.focus();
      return;
    }
    submit.disabled = true;
    status.replaceChildren(h("p", {}, "Starting…"));
    try {
      const sweep = await api("/v1/sweeps", { method: "POST", body, signal });
      location.hash = sweepHref(sweep.id);
    } catch (err) {
      if (err instanceof ApiError && err.status < 500 && err.status !== 401) {
        const errors = err.problem.errors || [];
        area.setAttribute("aria-invalid", "true");
        status.replaceChildren(alertBox(`The sweep was refused: ${err.message}`),
          errors.length ? h("ul", { class: "errors" }, errors.map((e) => h("li", {},
            h("span", { class: "mono" }, e.path || "body"), `: ${e.message}`))) : "");
      } else {
        status.replaceChildren(failure(err) ?? "");
      }
    } finally {
      submit.disabled = false;
    }
  });
  return h("details", { id: "new-sweep", class: "panel", open: open || undefined },
    h("summary", {}, "Start a sweep"), form);
}

// ---------------------------------------------------------------- the list

export async function sweepsView(signal) {
  const from = new URLSearchParams(location.hash.split("?")[1] || "").get("from");
  let initial = EXAMPLE;
  let fromNote = null;
  if (from) {
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(from)}`, { signal });
      initial = bodyFrom(job);
      fromNote = h("p", { class: "hint", id: "sweep-from" }, "The body below sweeps the learning "
        + "rate of ", h("a", { href: jobHref(job.id) }, jobLabel(job)), ": edit it, then start.");
    } catch (err) {
      if (signal.aborted) return;
      fromNote = failure(err);
    }
  }
  const statusFilter = h("select", { id: "sweep-status-filter" },
    ["", "running", "finished", "cancelled"].map((s) => h("option", { value: s }, s || "any")));
  const tbody = h("tbody");
  const note = h("div", { "aria-live": "polite" });
  const table = h("div", { class: "table-wrap" }, h("table", { class: "sweeps" },
    h("caption", { class: "sr-only" }, "Your sweeps, newest first"),
    h("thead", {}, h("tr", {}, ["Sweep", "Status", "Method", "Metric", "Trials", "Best",
      "Created"].map((t) => h("th", { scope: "col" }, t)))),
    tbody));
  const form = sweepForm(signal, initial, Boolean(from));
  statusFilter.addEventListener("change", () => refresh());
  page("Sweeps",
    h("div", { class: "toolbar" },
      h("label", { for: "sweep-status-filter" }, "Status "), statusFilter),
    note, table, fromNote, form);
  if (from) form.querySelector("textarea").focus();

  function row(sweep) {
    const best = sweep.best;
    return h("tr", { "data-sweep": sweep.id },
      h("td", { class: "sweep" }, h("a", { href: sweepHref(sweep.id) }, sweepLabel(sweep)),
        sweep.name ? h("div", { class: "muted mono" }, sweep.id) : null),
      h("td", { class: "status" }, badge(sweep.status)),
      h("td", { class: "method" }, sweep.method),
      h("td", { class: "metric" }, goalText(sweep)),
      h("td", { class: "trials" }, `${doneOf(sweep)} / ${sweep.trials}`),
      h("td", { class: "best" }, best ? fmtNumber(best.metric) : "—"),
      h("td", { class: "created muted" }, fmtTime(sweep.created_at)));
  }

  let shown = null;
  async function refresh() {
    const q = statusFilter.value ? `&status=${statusFilter.value}` : "";
    let list;
    try {
      list = await api(`/v1/sweeps?limit=100${q}`, { signal });
    } catch (err) {
      if (!signal.aborted) note.replaceChildren(failure(err) ?? "");
      return;
    }
    const seen = JSON.stringify([statusFilter.value, list.items]);
    if (seen === shown) return;  // nothing new: the rows (and the focus in them) stay
    shown = seen;
    note.replaceChildren(list.items.length ? ""
      : h("p", {}, statusFilter.value ? `No ${statusFilter.value} sweeps.` : "No sweeps yet."));
    table.hidden = !list.items.length;
    tbody.replaceChildren(...list.items.map(row));
    if (!list.items.length && !statusFilter.value) form.open = true;
  }

  await refresh();
  const timer = setInterval(refresh, LIST_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// ---------------------------------------------------------------- one sweep

function childrenTable(sweep) {
  const keys = Object.keys(sweep.grid);
  const best = sweep.best?.number;
  return h("table", { class: "children" },
    h("caption", { class: "sr-only" }, `Children, best ${sweep.metric} first`),
    h("thead", {}, h("tr", {}, ["#", "Job", "Status", ...keys, sweep.metric].map((t, i) =>
      h("th", { scope: "col", class: i >= 3 ? "mono" : null }, t)))),
    h("tbody", {}, sweep.children.map((c) => h("tr", {
      "data-child": c.number, class: c.number === best ? "best" : null },
    h("td", {}, c.number),
    h("td", { class: "job" }, c.job_id ? h("a", { href: jobHref(c.job_id), class: "mono" }, c.job_id)
      : "—"),
    h("td", { class: "status" }, badge(c.status),
      c.number === best ? [" ", h("span", { class: "badge best-badge" }, "best")] : null,
      c.error ? h("div", { class: "error" }, c.error) : null),
    keys.map((k) => h("td", { class: "value" }, k in c.values ? valueText(c.values[k]) : "—")),
    h("td", { class: "final" }, fmtNumber(c.metric))))));
}

export async function sweepView(id, signal) {
  let sweep;
  try {
    sweep = await api(base(id), { signal });
  } catch (err) {
    page("Sweep", failure(err) ?? "");
    return;
  }
  const statusBox = h("span");
  const trialsBox = h("span");
  const actions = h("div", { class: "actions" });
  const message = h("div", { class: "message", "aria-live": "polite" });
  const tableBox = h("div", { class: "table-wrap" });
  const counts = h("p", { class: "muted counts" });
  const plot = h("div", { class: "plot" }, h("p", { class: "muted" }, "loading…"));
  const about = h("dl", { class: "kv" });
  let plotted = null;  // the children's state the plot shows
  let plottedAt = 0;

  function drawPlot(force = false) {
    const state = JSON.stringify(sweep.children.map((c) => [c.number, c.status]));
    if (state === plotted && !force) return;
    plotted = state;
    plottedAt = Date.now();
    if (!sweep.children.some((c) => c.job_id)) {
      plot.replaceChildren(h("p", { class: "muted" }, "The plot appears once a child has a job."));
      return;
    }
    showPicture(plot, `${base(sweep.id)}/plot.png`,
      `every child's ${sweep.metric} (or, for the optimizer lab, its path), best first`, signal);
  }

  function draw() {
    statusBox.replaceChildren(badge(sweep.status));
    trialsBox.textContent = `${doneOf(sweep)} / ${sweep.trials} trials done`;
    tableBox.replaceChildren(sweep.children.length ? childrenTable(sweep)
      : h("p", { class: "muted" }, "No children yet."));
    counts.textContent = Object.entries(sweep.counts).map(([k, v]) => `${v} ${k}`).join(", ");
    const jobs = sweep.children.filter((c) => c.job_id).map((c) => c.job_id);
    const ids = jobs.slice(0, 10);
    append(clear(actions), [
      sweep.status === "running" ? h("button", { type: "button", id: "cancel-sweep",
        onclick: cancel }, "Cancel") : null,
      ids.length >= 2 ? h("a", { class: "button",
        href: `#/compare?jobs=${ids.map(encodeURIComponent).join(",")}` },
      jobs.length > ids.length ? `Compare the best ${ids.length}` : "Compare the children") : null,
      h("a", { class: "button", href: "#/sweeps" }, "All sweeps"),
    ]);
    const kv = [
      ["method", sweep.method], ["trials", sweep.trials], ["parallel", sweep.parallel],
      ["metric", goalText(sweep)], ["seed", sweep.seed], ["created", fmtTime(sweep.created_at)],
      ["finished", fmtTime(sweep.finished_at)],
    ];
    about.replaceChildren(...kv.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
    drawPlot();
  }

  async function cancel() {
    message.replaceChildren(h("p", {}, "Cancelling…"));
    try {
      sweep = await api(`${base(sweep.id)}/cancel`, { method: "POST", signal });
      message.replaceChildren(h("p", {}, "Cancel requested: no more children; running ones stop."));
      draw();
      poll();
    } catch (err) {
      if (signal.aborted) return;
      message.replaceChildren(failure(err) ?? "");
      if (err instanceof ApiError && err.status === 409) {  // it ended meanwhile
        sweep = await api(base(sweep.id), { signal }).catch(() => sweep);
        draw();
      }
    }
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      while (!signal.aborted && live(sweep)) {
        await sleep(POLL_MS, signal);
        if (signal.aborted) return;
        try {
          const next = await api(base(sweep.id), { signal });
          if (JSON.stringify(next) !== JSON.stringify(sweep)) {  // the same: no redraw
            sweep = next;
            draw();
          }
          if (active(sweep) && Date.now() - plottedAt >= PLOT_MS) drawPlot(true);
        } catch (err) {
          if (signal.aborted) return;
          const box = failure(err);
          message.replaceChildren(box ?? "");
          if (!box || (err instanceof ApiError && err.status === 404)) return;
        }
      }
    } finally {
      polling = false;
    }
  }

  page(sweepLabel(sweep),
    h("p", { class: "sub" }, h("span", { class: "mono" }, sweep.id), " · ", sweep.method, " · ",
      goalText(sweep), " · ", statusBox, " ", trialsBox),
    actions, message,
    h("div", { class: "job-grid" },
      h("div", {}, section("Children", counts, tableBox), section("Plot", plot)),
      section("Sweep", about,
        h("h3", {}, "grid"), h("pre", { class: "spec grid" }, JSON.stringify(sweep.grid, null, 2)),
        h("h3", {}, "spec"), h("pre", { class: "spec" }, JSON.stringify(sweep.spec, null, 2)))));
  draw();
  poll();
}
