// A form built from a JSON Schema: strings, numbers, booleans, enums and objects get
// fields; anything else a JSON textarea. validate() checks the common keywords in the
// page, with messages worded like the server's (python-jsonschema); the server checks again.
import { h } from "./dom.js";

let counter = 0;
const show = (v) => JSON.stringify(v);
const typeOf = (v) => (v === null ? "null" : Array.isArray(v) ? "array"
  : Number.isInteger(v) ? "integer" : typeof v);
const isType = (v, t) => (t === "number" ? typeof v === "number"
  : t === "integer" ? Number.isInteger(v) : t === "object" ? typeOf(v) === "object" : typeOf(v) === t);

export function validate(schema, value, path = "$", errors = []) {
  if (!schema || typeof schema !== "object") return errors;
  const err = (message) => errors.push({ path, message });
  if (schema.type) {
    const types = [].concat(schema.type);
    if (!types.some((t) => isType(value, t))) { err(`${show(value)} is not of type ${types.map(show).join(", ")}`); return errors; }
  }
  if (schema.enum && !schema.enum.some((e) => show(e) === show(value))) err(`${show(value)} is not one of ${show(schema.enum)}`);
  if ("const" in schema && show(schema.const) !== show(value)) err(`${show(schema.const)} was expected`);
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) err(`${value} is less than the minimum of ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) err(`${value} is greater than the maximum of ${schema.maximum}`);
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) err(`${value} is less than or equal to the minimum of ${schema.exclusiveMinimum}`);
    if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum) err(`${value} is greater than or equal to the maximum of ${schema.exclusiveMaximum}`);
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) err(`${show(value)} is too short`);
    if (schema.maxLength !== undefined && length > schema.maxLength) err(`${show(value)} is too long`);
    if (schema.pattern) {
      let re = null;
      try { re = new RegExp(schema.pattern, "u"); } catch { /* the server judges it */ }
      if (re && !re.test(value)) err(`${show(value)} does not match ${show(schema.pattern)}`);
    }
  }
  if (typeOf(value) === "object") {
    for (const name of schema.required || []) if (!(name in value)) err(`${show(name)} is a required property`);
    for (const [name, sub] of Object.entries(schema.properties || {})) {
      if (name in value) validate(sub, value[name], `${path}.${name}`, errors);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) err(`${show(value)} should be non-empty`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) err(`${show(value)} is too long`);
    if (schema.items && typeof schema.items === "object") value.forEach((v, i) => validate(schema.items, v, `${path}[${i}]`, errors));
  }
  return errors;
}

// One field: {el, read()} where read() gives the value, undefined when left empty, or
// throws {message} when the text cannot be read at all.
function field(schema, name, path, required, messages) {
  const id = `sf-${++counter}`;
  const msg = h("span.msg", { id: `${id}-msg`, role: "status" });
  messages.set(path, { msg, id });
  const title = (schema && schema.title) || name;
  const hint = schema && schema.description ? h("span.hint", { id: `${id}-hint` }, schema.description) : null;
  const described = [hint && `${id}-hint`, `${id}-msg`].filter(Boolean).join(" ");
  const label = h("label", { for: id }, title, required ? " (required)" : "");
  if (schema && schema.enum) {
    const select = h("select", { id, name: path, "aria-describedby": described },
      h("option", { value: "" }, required ? "— choose —" : "— none —"),
      schema.enum.map((v, i) => h("option", { value: String(i), selected: show(v) === show(schema.default) },
        typeof v === "string" ? v : show(v))));
    return { el: h("div.field", {}, label, hint, select, msg), control: select,
             read: () => (select.value === "" ? undefined : schema.enum[Number(select.value)]) };
  }
  const type = schema && schema.type;
  if (type === "boolean") {
    const box = h("input", { id, type: "checkbox", name: path, checked: schema.default === true,
                             "aria-describedby": described });
    return { el: h("div.field.check", {}, box, label, hint, msg), control: box, read: () => box.checked };
  }
  if (type === "string" || type === "number" || type === "integer") {
    const numeric = type !== "string";
    const input = h("input", { id, name: path, type: numeric ? "number" : "text",
      step: type === "integer" ? "1" : numeric ? "any" : undefined,
      value: schema.default !== undefined ? String(schema.default) : undefined,
      "aria-describedby": described });
    return { el: h("div.field", {}, label, hint, input, msg), control: input, read: () => {
      if (input.value === "") return undefined;
      if (!numeric) return input.value;
      const n = Number(input.value);
      if (!Number.isFinite(n)) throw { message: `${show(input.value)} is not a number` };
      return n;
    } };
  }
  if (type === "object" && schema.properties) {
    const req = new Set(schema.required || []);
    const parts = Object.entries(schema.properties).map(([k, sub]) => [k, field(sub, k, `${path}.${k}`, req.has(k), messages)]);
    const box = h("fieldset", {}, h("legend", {}, title), hint, msg, parts.map(([, f]) => f.el));
    return { el: box, control: parts[0]?.[1].control, read: () => {
      const out = {};
      for (const [k, f] of parts) { const v = f.read(); if (v !== undefined) out[k] = v; }
      return out;
    } };
  }
  const area = h("textarea", { id, name: path, "aria-describedby": described, spellcheck: "false" },
    schema && schema.default !== undefined ? JSON.stringify(schema.default, null, 2) : "");
  return { el: h("div.field", {}, label, h("span.hint", {}, "JSON"), hint, area, msg), control: area, read: () => {
    if (area.value.trim() === "") return undefined;
    try { return JSON.parse(area.value); } catch (e) { throw { message: `not valid JSON: ${e.message}` }; }
  } };
}

// The whole form's body: {element, read()} with read() -> {value} or {errors}.
export function schemaFields(schema, label = "Answer") {
  const messages = new Map();
  const f = field(schema || {}, label, "$", true, messages);
  const formMsg = h("div.error", { role: "alert" });
  const element = h("div", {}, f.el, formMsg);
  element.addEventListener("input", (e) => {  // an edited field's old complaint goes
    for (const { msg, id } of messages.values()) {
      if (id === e.target.id) { msg.textContent = ""; e.target.removeAttribute("aria-invalid"); }
    }
  });
  return {
    element,
    focus: () => f.control?.focus(),
    read() {
      for (const { msg, id } of messages.values()) {
        msg.textContent = "";
        document.getElementById(id)?.removeAttribute("aria-invalid");
      }
      formMsg.textContent = "";
      let value;
      try { value = f.read(); } catch (e) { return this.fail([{ path: "$", message: e.message }]); }
      const errors = value === undefined
        ? [{ path: "$", message: "an answer is required" }] : validate(schema, value);
      return errors.length ? this.fail(errors) : { value };
    },
    fail(errors) {
      const loose = [];
      for (const e of errors) {
        // a missing property's message belongs to that property's field
        const m = /^"(.+)" is a required property$/.exec(e.message);
        const at = messages.get(m ? `${e.path}.${m[1]}` : e.path);
        if (at) {
          at.msg.textContent = at.msg.textContent ? `${at.msg.textContent}; ${e.message}` : e.message;
          document.getElementById(at.id)?.setAttribute("aria-invalid", "true");
        } else loose.push(`${e.path}: ${e.message}`);
      }
      formMsg.textContent = loose.join("\n");
      return { errors };
    },
    serverError(text) { formMsg.textContent = text; },
  };
}
