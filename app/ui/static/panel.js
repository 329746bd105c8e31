// The node panel: one node of the run (a top node or one item's body node), or a body
// node across all of its loop's items (a group key such as `each[*].fetch`).
import { badge, facts, fmtTime, h, json } from "./dom.js";
import { bodyOf, specAt } from "./graph.js";
import { countsText, groupKey, isGroupKey, loopText, RunState } from "./runstate.js";
import { latency } from "./timeline.js";

const LISTED = 50;  // items listed in a group's panel; the rest are reached by number
const link = (id) => h("a", { href: `/ui/runs/${encodeURIComponent(id)}` }, id);
const itemOf = (path) => { const m = /\[(\d+)\][^[]*$/.exec(path); return m ? Number(m[1]) : null; };

export function drawPanel(panel, run, doc, key, choose) {
  panel.replaceChildren(...(isGroupKey(key) ? groupPanel(run, doc, key, choose)
    : nodePanel(run, doc, key, choose)).filter(Boolean));
}

function nodePanel(run, doc, path, choose) {
  const s = run.states.get(path);
  const spec = specAt(doc, path);
  const err = s?.error || null;
  const loop = spec && bodyOf(spec) ? run.loops.get(groupKey(path)) : null;
  return [
    h("h2", {}, "Node ", h("span", { id: "panel-node" }, path)),
    facts([["Type", spec?.type || "—"], ["Status", s ? badge(s.status) : "not run yet"],
      ...(spec && bodyOf(spec) ? [[spec.type === "while" ? "Iterations" : "Items",
        h("span", { id: "panel-items" }, loopText(spec.type, loop, run.totals.get(groupKey(path))))]] : []),
      ...(s ? [
        ["Attempts", h("span", { id: "panel-attempts" }, String(s.attempts))],
        ["Latency", latency(s)], ["Started", fmtTime(s.started_at)], ["Finished", fmtTime(s.finished_at)],
        ["Cached", s.cached === null || s.cached === undefined ? "—" : String(s.cached)], ["Model", s.model],
        ["Idempotency key", s.idempotency_key],
        ["Child run", s.child_execution_id ? link(s.child_execution_id) : null],
        ["Error kind", err ? h("span", { id: "panel-error-kind" }, err.type || "—") : undefined],
        ["Error message", err ? h("span.error", { id: "panel-error-message" }, err.message || "—") : undefined],
      ] : [])]),
    attempts(run, path),
    loop && loop.failed.size ? failedItems(run, path, loop, choose) : null,
    s?.usage ? h("div", {}, h("h3", {}, "Usage"), h("pre", {}, json(s.usage))) : null,
    received(run, doc, path),
    s ? h("div", {}, h("h3", {}, "Output"), h("pre", { id: "panel-output" }, json(s.output))) : null,
    ...configs(spec, s),
  ];
}

// The config as rendered for the run (the document's, its templated fields replaced by
// what the record keeps of them: redacted, cut past 16 KiB), and as written.
function configs(spec, s) {
  const written = spec?.config ? h("details", { id: "panel-config-written" },
    h("summary", {}, "Config (as written)"), h("pre", {}, json(spec.config))) : null;
  if (!s?.config) return [written];
  const fields = Object.keys(s.config);
  const cut = fields.filter((f) => s.config[f]?.truncated === true);
  return [h("div", {}, h("h3", {}, "Config (rendered)"),
    h("p.muted", {}, `Rendered for this run: ${fields.join(", ")}. Credentials show as [redacted], URL query values as ***.`),
    cut.length ? h("p.error", { id: "panel-config-truncated" }, `truncated: ${cut.join(", ")} (over 16 KiB; the start is kept)`) : null,
    h("pre", { id: "panel-config" }, json({ ...(spec?.config || {}), ...s.config }))), written];
}

// Each attempt with its time, and the backoffs and waits between, from the events.
function attempts(run, path) {
  const list = run.segments.get(path);
  if (!list || (list.length === 1 && list[0].kind === "run")) return null;
  const took = (seg) => (seg.end === null ? "so far" : `${Math.round(seg.end - seg.start)} ms`);
  return h("div", {}, h("h3", {}, "Attempts and waits"), h("ol.attempts", { id: "panel-attempt-list" },
    list.map((seg) => h("li", { "data-kind": seg.kind }, seg.kind === "run"
      ? `attempt ${seg.attempt}: ${seg.status}, ${took(seg)}`
      : seg.kind === "backoff" ? `backoff before the next attempt: ${took(seg)}` : `waiting: ${took(seg)}`))));
}

// The outputs of the nodes with an edge into this one, as it received them.
function received(run, doc, path) {
  const cut = path.lastIndexOf(".");
  const prefix = cut < 0 ? "" : path.slice(0, cut + 1);
  const id = path.slice(cut + 1);
  const holder = prefix ? bodyOf(specAt(doc, prefix.slice(0, prefix.lastIndexOf("["))) || {}) : doc;
  const sources = (holder?.edges || []).filter((e) => e.target === id).map((e) => e.source);
  if (!sources.length) return null;
  return h("div", { id: "panel-received" }, h("h3", {}, "Received"), [...new Set(sources)].map((src) => {
    const s = run.states.get(prefix + src);
    return h("details", {}, h("summary", {}, `${src} (${s?.status || "not run"})`),
      h("pre", {}, s ? json(s.output) : "—"));
  }));
}

function failedItems(run, path, loop, choose) {
  const items = [...loop.failed.keys()].sort((a, b) => itemOf(a) - itemOf(b)).slice(0, LISTED);
  const failedIn = (item) => {
    for (const [p, s] of run.states) if (s.status === "failed" && p.startsWith(`${item}.`)) return p;
    return null;
  };
  return h("div", {}, h("h3", {}, `Failed items (${loop.failed.size.toLocaleString("en")})`),
    h("ul.items", { id: "panel-failed-items" }, items.map((item) => {
      const where = failedIn(item);
      return h("li", {}, h("button.link", { type: "button", onclick: () => where && choose(where) },
        where || item), where ? h("span.muted", {}, ` ${run.states.get(where).error?.message || "failed"}`) : "");
    })));
}

const typedItems = new Map(); // body node key -> the item numbers typed in its panel

// A body node over all items: counts, time, the items that failed or still run first.
function groupPanel(run, doc, key, choose) {
  const spec = specAt(doc, key);
  const g = run.groups.get(key);
  const rank = { failed: 0, retrying: 1, running: 2, waiting: 3 };
  const all = [];
  for (const [p, s] of run.states) if (p.includes("[") && groupKey(p) === key) all.push([p, s]);
  all.sort(([pa, a], [pb, b]) => (rank[a.status] ?? 9) - (rank[b.status] ?? 9) || pa.localeCompare(pb, "en", { numeric: true }));
  const wild = key.split("[*]").length - 1;
  const loops = key.split("[*]").slice(0, -1).map((part) => part.split(".").pop());
  // What was typed outlives the panel being drawn again as events arrive meanwhile.
  const kept = typedItems.get(key) || [];
  const inputs = loops.map((loop, i) => h("input.num", { type: "number", min: 0, required: true,
    id: `panel-item-${i}`, value: kept[i] ?? 0,
    oninput: (e) => { kept[i] = e.target.value; typedItems.set(key, kept); } }));
  const open = h("form.actions", { "aria-label": "Open one item", onsubmit: (e) => {
    e.preventDefault();
    let i = 0;
    choose(key.replace(/\[\*\]/g, () => `[${Math.max(0, Math.floor(Number(inputs[i++].value) || 0))}]`));
  } }, loops.map((loop, i) => h("label", { for: `panel-item-${i}` }, `Item of ${loop}`)).flatMap((l, i) => [l, inputs[i]]),
  h("button", { type: "submit" }, "Open item"));
  return [
    h("h2", {}, "Node ", h("span", { id: "panel-node" }, key)),
    h("p.muted", {}, `Body node ${spec?.id || key} of ${wild > 1 ? "nested loops" : "a loop"}: one line per item.`),
    facts([["Type", spec?.type || "—"],
      ["Status", badge(g ? RunState.groupStatus(g.counts) : "pending")],
      ["Items", h("span", { id: "panel-counts" }, g ? countsText(g.counts) : "not run yet")],
      ["First started", g?.start ? fmtTime(new Date(g.start).toISOString()) : "—"],
      ["Last finished", g?.end ? fmtTime(new Date(g.end).toISOString()) : "—"]]),
    open,
    all.length ? h("ul.items", { id: "panel-items-list" }, all.slice(0, LISTED).map(([p, s]) =>
      h("li", { "data-status": s.status }, h("button.link", { type: "button", onclick: () => choose(p) }, p),
        ` ${s.status}`, s.error ? h("span.muted", {}, ` ${s.error.message}`) : ""))) : null,
    all.length > LISTED ? h("p.muted", {}, `and ${(all.length - LISTED).toLocaleString("en")} more: open one by number`) : null,
    spec?.config ? h("details", {}, h("summary", {}, "Config (as written)"), h("pre", {}, json(spec.config))) : null,
  ];
}
