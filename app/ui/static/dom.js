// h("tag.class", {attrs}, ...children): a tiny element builder; strings become text nodes.
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const badge = (status) => h("span.badge", { "data-status": status }, status);

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function duration(start, end) {
  if (!start) return "—";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export const json = (value) => JSON.stringify(value, null, 2);

export function facts(pairs) {
  return h("dl.facts", {}, pairs.filter(([, v]) => v !== undefined).flatMap(
    ([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === "" ? "—" : v)]));
}

export function problemText(err) {
  const body = err.body || {};
  const lines = [body.detail || err.message];
  for (const p of body.problems || []) {
    if (p.message && !lines[0].includes(p.message)) lines.push(`${p.path || ""}: ${p.message}`);
  }
  return lines.join("\n");
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
