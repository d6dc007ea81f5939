// A small SVG line chart: series of (x, y) points on shared linear axes, with ticks, a
// legend, and a <title> per series. Redrawn whole on each update (a few thousand points).

import { fmtNumber, h, s } from "./dom.js";

export const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
  "#0a7f8f", "#57606a"];

const W = 640, H = 260, M = { top: 12, right: 16, bottom: 34, left: 64 };

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo === Infinity ? [0, 1] : lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

/**
 * series: [{label, points: [[x, y], ...]}]; y null (a non-finite value) breaks the line.
 * Returns a <figure> holding the <svg> and a legend.
 */
export function lineChart(series, { title, xLabel = "step", yLabel = "" } = {}) {
  const all = series.flatMap((sr) => sr.points.filter((p) => p[1] !== null));
  const [x0, x1] = extent(all.map((p) => p[0]));
  const [y0, y1] = extent(all.map((p) => p[1]));
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${title || yLabel}: ${series.length} series against ${xLabel}`,
  });
  const axes = s("g", { class: "axes" });
  for (const t of ticks(y0, y1)) {
    axes.append(
      s("line", { x1: M.left, x2: W - M.right, y1: py(t), y2: py(t), class: "grid" }),
      s("text", { x: M.left - 6, y: py(t) + 4, "text-anchor": "end" }, fmtNumber(t)),
    );
  }
  for (const t of ticks(x0, x1, 6)) {
    axes.append(s("text", { x: px(t), y: H - M.bottom + 16, "text-anchor": "middle" },
      fmtNumber(t)));
  }
  axes.append(
    s("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }),
    s("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }),
    s("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, xLabel),
  );
  svg.append(axes);
  series.forEach((sr, i) => {
    let d = "", pen = "M", n = 0;
    for (const [x, y] of [...sr.points].sort((a, b) => a[0] - b[0])) {
      if (y === null) { pen = "M"; continue; }
      d += `${pen}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
      pen = "L";
      n += 1;
    }
    const color = COLORS[i % COLORS.length];
    const path = s("path", { d: d || "M0,0", class: "line", stroke: color, "data-points": n },
      s("title", {}, sr.label));
    svg.append(path);
    if (n === 1) {
      const [x, y] = sr.points.find((p) => p[1] !== null);
      svg.append(s("circle", { cx: px(x), cy: py(y), r: 3, fill: color }));
    }
  });
  const legend = h("ul", { class: "legend" }, series.map((sr, i) => {
    const last = [...sr.points].reverse().find((p) => p[1] !== null);
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = COLORS[i % COLORS.length];
    return h("li", {}, swatch, sr.label, last ? ` (${fmtNumber(last[1])} at ${last[0]})` : "");
  }));
  return h("figure", { class: "chart-box" }, title ? h("figcaption", {}, title) : null, svg, legend);
}
