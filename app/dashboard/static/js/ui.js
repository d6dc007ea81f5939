// What every view shares: the page's title and body, status badges, problems shown as
// alerts (a refused key sends the user back to sign in), panels, pictures fetched with
// the key.

import { ApiError, blobUrl, forgetKey } from "./api.js";
import { append, clear, h } from "./dom.js";

const main = document.getElementById("main");
let signInAgain = () => {};

/** What to do when the key stops working (app.js shows the sign-in form). */
export function onRefusedKey(fn) { signInAgain = fn; }

export const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
export const jobLabel = (job) => job.name || job.id;

export function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

export function alertBox(message) {
  return h("p", { class: "alert", role: "alert" }, message);
}

/** Turn a failure into a message, or back to sign-in when the key stopped working. */
export function failure(err) {
  if (err instanceof ApiError && err.status === 401) {
    forgetKey();
    signInAgain("Your key was refused; sign in again.");
    return null;
  }
  return alertBox(err instanceof ApiError ? `${err.problem.title || "Error"}: ${err.message}`
    : String(err.message || err));
}

export function page(title, ...children) {
  append(clear(main), [h("h1", {}, title), ...children]);
  document.title = `${title} · DeepZoo`;
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** Show the picture at `url` (a path of the API) in `holder` once fetched with the key;
 * the object URL is revoked when `signal` aborts, or when `holder` shows the next one. */
export function showPicture(holder, url, alt, signal) {
  return blobUrl(url, signal).then((src) => {
    if (signal.aborted) { URL.revokeObjectURL(src); return; }
    signal.addEventListener("abort", () => URL.revokeObjectURL(src));
    const old = holder.querySelector("img");
    const img = h("img", { src, alt });
    holder.replaceChildren(img);
    if (old) URL.revokeObjectURL(old.src);
  }).catch((err) => {
    if (signal.aborted) return;
    holder.replaceChildren(h("p", { class: "muted" },
      err instanceof ApiError ? `Not available: ${err.message}` : String(err)));
  });
}

export function pictureFigure(pic, signal) {
  const holder = h("div", {}, h("p", { class: "muted" }, "loading…"));
  showPicture(holder, pic.url, pic.title, signal);
  return h("figure", { class: "picture" }, h("figcaption", {}, pic.title), holder);
}
