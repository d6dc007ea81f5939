// A form generated from a JSON Schema (pydantic's): one labelled control per property,
// with its description, bounds and default; enums as selects. Values equal to the default
// are left out of the request, so the server fills them in as it documents.

import { h } from "./dom.js";

let uid = 0;

function resolve(root, node) {
  let guard = 0;
  while (node && guard++ < 20) {
    if (node.$ref) {
      node = node.$ref.replace(/^#\//, "").split("/").reduce((o, k) => o?.[k], root);
    } else if (node.allOf && node.allOf.length === 1) {
      node = { ...node.allOf[0], ...node, allOf: undefined };
    } else break;
  }
  return node || {};
}

/** The shape of a property: {kind, schema, nullable, options?, item?}. */
function classify(root, prop) {
  let sch = resolve(root, prop);
  let nullable = false;
  if (sch.anyOf) {
    const rest = sch.anyOf.map((a) => resolve(root, a)).filter((a) => a.type !== "null");
    nullable = rest.length < sch.anyOf.length;
    const enums = rest.flatMap((a) => a.enum ?? (a.const !== undefined ? [a.const] : []));
    if (rest.length === 1) {
      sch = { ...rest[0], description: prop.description ?? rest[0].description,
        default: prop.default ?? rest[0].default };
    } else if (rest.length && rest.every((a) => a.enum || a.const !== undefined)) {
      return { kind: "enum", schema: sch, nullable, options: enums };
    } else {
      return { kind: "json", schema: sch, nullable };
    }
  }
  if (sch.enum) return { kind: "enum", schema: sch, nullable, options: sch.enum };
  if (sch.const !== undefined) return { kind: "enum", schema: sch, nullable, options: [sch.const] };
  if (sch.type === "boolean") {
    // true / false / null (the family decides): three choices, not a checkbox
    return nullable ? { kind: "enum", schema: sch, nullable, options: [true, false] }
      : { kind: "boolean", schema: sch, nullable };
  }
  if (sch.type === "integer" || sch.type === "number") return { kind: "number", schema: sch, nullable };
  if (sch.type === "string") return { kind: "string", schema: sch, nullable };
  if (sch.type === "array") {
    const item = resolve(root, sch.items || {});
    if (item.type === "integer" || item.type === "number") {
      return { kind: "numbers", schema: sch, nullable, item };
    }
    return { kind: "json", schema: sch, nullable };
  }
  if (sch.type === "object" && sch.properties) return { kind: "object", schema: sch, nullable };
  return { kind: "json", schema: sch, nullable };
}

function bounds(sch) {
  const parts = [];
  if (sch.minimum !== undefined) parts.push(`≥ ${sch.minimum}`);
  if (sch.exclusiveMinimum !== undefined) parts.push(`> ${sch.exclusiveMinimum}`);
  if (sch.maximum !== undefined) parts.push(`≤ ${sch.maximum}`);
  if (sch.exclusiveMaximum !== undefined) parts.push(`< ${sch.exclusiveMaximum}`);
  if (sch.minItems !== undefined || sch.maxItems !== undefined) {
    parts.push(`${sch.minItems ?? 0}–${sch.maxItems ?? "∞"} values`);
  }
  if (sch.maxLength !== undefined) parts.push(`at most ${sch.maxLength} characters`);
  return parts.join(", ");
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export class SchemaForm {
  constructor() {
    this.fields = [];  // {path, input, error, read}
  }

  /** Controls for every property of `schema` (resolved against `root`) under `prefix`. */
  section(root, schema, prefix, { legend, placeholders = {} } = {}) {
    const sch = resolve(root, schema);
    const box = h("fieldset", { class: "section", "data-section": prefix },
      h("legend", {}, legend ?? prefix));
    for (const [name, prop] of Object.entries(sch.properties || {})) {
      const path = prefix ? `${prefix}.${name}` : name;
      const shape = classify(root, prop);
      if (shape.kind === "object") {
        box.append(this.section(root, shape.schema, path, { legend: name }));
      } else {
        box.append(this.field(path, name, shape, placeholders[name]));
      }
    }
    return box;
  }

  field(path, name, { kind, schema: sch, nullable, options }, placeholder) {
    const id = `f${++uid}`;
    const def = sch.default;
    const hint = [sch.description, bounds(sch),
      def !== undefined ? `default ${JSON.stringify(def)}` : null].filter(Boolean).join(" · ");
    let input, read;
    if (kind === "enum") {
      const opts = options.map((o) => h("option", { value: JSON.stringify(o) }, String(o)));
      if ((def === undefined || nullable) && !sch.required) opts.unshift(h("option", { value: "" }, "(default)"));
      input = h("select", { id }, opts);
      input.value = def === undefined || def === null ? "" : JSON.stringify(def);
      if (input.selectedIndex < 0) input.selectedIndex = 0;
      read = () => (input.value === "" ? undefined : JSON.parse(input.value));
    } else if (kind === "boolean") {
      input = h("input", { id, type: "checkbox" });
      input.checked = Boolean(def);
      read = () => input.checked;
    } else if (kind === "number") {
      input = h("input", {
        id, type: "number", inputmode: sch.type === "integer" ? "numeric" : "decimal",
        step: sch.type === "integer" ? "1" : "any",
        min: sch.minimum, max: sch.maximum, placeholder,
      });
      if (def !== undefined && def !== null) input.value = String(def);
      read = () => (input.value.trim() === "" ? undefined : Number(input.value));
    } else if (kind === "numbers") {
      input = h("input", { id, type: "text", inputmode: "decimal", placeholder: "e.g. 64, 64" });
      if (Array.isArray(def)) input.value = def.join(", ");
      read = () => {
        const raw = input.value.trim();
        if (!raw) return undefined;
        // anything not a number is sent as typed: the API's 422 names the item
        return raw.split(/[\s,]+/).filter(Boolean).map((t) => (Number.isFinite(Number(t)) ? Number(t) : t));
      };
    } else if (kind === "string") {
      input = h("input", { id, type: "text", maxlength: sch.maxLength, placeholder });
      if (typeof def === "string") input.value = def;
      read = () => (input.value === "" ? undefined : input.value);
    } else {
      input = h("textarea", { id, rows: 2, spellcheck: "false", placeholder: "JSON" });
      if (def !== undefined && def !== null) input.value = JSON.stringify(def);
      read = () => {
        const raw = input.value.trim();
        if (!raw) return undefined;
        try { return JSON.parse(raw); } catch { return raw; }
      };
    }
    const error = h("p", { class: "error", id: `${id}-err`, hidden: true });
    const help = h("p", { class: "hint", id: `${id}-hint` }, hint);
    input.setAttribute("aria-describedby", `${id}-hint ${id}-err`);
    input.name = path;
    const row = h("div", { class: `field field-${kind}`, "data-path": path },
      kind === "boolean"
        ? h("label", { for: id }, input, ` ${name}`)
        : [h("label", { for: id }, name), input],
      help, error);
    this.fields.push({
      path, input, error, row,
      value: () => {
        const v = read();
        if (sch.required) return v;
        return v === undefined || (def !== undefined && same(v, def)) ? undefined : v;
      },
    });
    return row;
  }

  /** The values that differ from their defaults, nested by path. */
  values() {
    const out = {};
    for (const f of this.fields) {
      const v = f.value();
      if (v === undefined) continue;
      const keys = f.path.split(".");
      let o = out;
      for (const k of keys.slice(0, -1)) o = o[k] ??= {};
      o[keys.at(-1)] = v;
    }
    return out;
  }

  clearErrors() {
    for (const f of this.fields) {
      f.error.hidden = true;
      f.error.textContent = "";
      f.input.removeAttribute("aria-invalid");
    }
  }

  /** Show a problem's `errors` on the fields they name; the rest are returned. */
  showErrors(problem) {
    this.clearErrors();
    const unplaced = [];
    let first = null;
    for (const err of problem.errors || []) {
      const path = String(err.path || "");
      const field = this.fields
        .filter((f) => path === f.path || path.startsWith(`${f.path}.`) || path.startsWith(`${f.path}[`))
        .sort((a, b) => b.path.length - a.path.length)[0];
      if (!field) { unplaced.push(err); continue; }
      const msg = path === field.path ? err.message : `${path}: ${err.message}`;
      field.error.textContent = field.error.textContent ? `${field.error.textContent}; ${msg}` : msg;
      field.error.hidden = false;
      field.input.setAttribute("aria-invalid", "true");
      first ??= field;
    }
    first?.input.focus();
    return unplaced;
  }
}
