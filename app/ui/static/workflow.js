import { api } from "./api.js";
import { diffWorkflows, isEmpty } from "./diff.js";
import { h, json, problemText } from "./dom.js";
import { drawGraph } from "./graph.js";
import { schemaFields } from "./schemaform.js";

export async function render(main, id) {
  const base = `/workflows/${encodeURIComponent(id)}`;
  const wanted = new URLSearchParams(location.search).get("version");
  let latest, doc;
  try {
    latest = await api(base);
    doc = wanted ? await api(`${base}?version=${encodeURIComponent(wanted)}`) : latest;
  } catch (err) {
    main.replaceChildren(h("h1", {}, "Workflow not found"), h("p.error", { role: "alert" }, problemText(err)));
    return;
  }
  const version = doc.version, newest = latest.version;
  const picker = h("select", { id: "version", onchange: () => {
    location.href = `/ui/workflows/${encodeURIComponent(id)}?version=${picker.value}`; } },
    Array.from({ length: newest }, (_, i) => newest - i).map((v) =>
      h("option", { value: v, selected: v === version }, `version ${v}${v === newest ? " (latest)" : ""}`)));
  const mermaid = h("pre", { id: "mermaid" }, "…");
  api(`${base}/graph?version=${version}`).then((t) => { mermaid.textContent = t; },
    (err) => { mermaid.textContent = problemText(err); });

  const fields = schemaFields(doc.inputs_schema || { type: "object", default: {} }, "Inputs");
  const say = h("p", { role: "status" });
  const go = h("button.primary", { type: "submit" }, "Start run");
  const runForm = h("form.card", { id: "run-form", novalidate: true, "aria-labelledby": "run-h",
    onsubmit: async (e) => {
      e.preventDefault();
      const read = fields.read();
      if (read.errors) return;
      go.disabled = true;
      try {
        const started = await api(`${base}/execute?version=${version}`,
          { method: "POST", body: { inputs: read.value || {}, mode: "async" } });
        location.href = `/ui/runs/${encodeURIComponent(started.execution_id)}`;
      } catch (err) {
        fields.serverError(`Refused (${err.status || "error"}): ${problemText(err)}`);
        go.disabled = false;
      }
    } },
    h("h2", { id: "run-h" }, "Run it"),
    version === newest ? null : h("p.muted", {}, `This form runs version ${version}; the latest is ${newest}.`),
    fields.element, h("div.actions", {}, go), say);

  main.replaceChildren(h("h1", {}, doc.name || id),
    h("div.filters", {}, h("div", {}, h("label", { for: "version" }, "Version"), picker),
      h("div", {}, h("a", { href: `/ui?workflow=${encodeURIComponent(id)}` }, "Runs of this workflow"))),
    doc.description ? h("p", {}, doc.description) : "",
    h("div.run-layout", {},
      h("div", {},
        h("section.card", { "aria-labelledby": "g-h" }, h("h2", { id: "g-h" }, "Graph"), drawGraph(doc, null, { live: false }).element),
        compareCard(base, newest, version, doc),
        h("details.card", {}, h("summary", {}, "Mermaid"), mermaid),
        h("details.card", { open: true }, h("summary", {}, "Document"), h("pre", { id: "document" }, json(doc)))),
      runForm));
}

// Two versions side by side: what the later one added, removed and changed.
function compareCard(base, newest, version, doc) {
  const card = h("section.card", { id: "compare", "aria-labelledby": "cmp-h" }, h("h2", { id: "cmp-h" }, "Differences"));
  if (newest < 2) {
    card.append(h("p.muted", {}, "Only one version so far."));
    return card;
  }
  const options = (chosen) => Array.from({ length: newest }, (_, i) => newest - i).map((v) =>
    h("option", { value: v, selected: v === chosen }, `version ${v}`));
  const from = h("select", { id: "diff-from" }, options(version > 1 ? version - 1 : 1));
  const to = h("select", { id: "diff-to" }, options(version > 1 ? version : 2));
  const result = h("div", { id: "diff-result", "aria-live": "polite" });
  const docs = new Map([[version, doc]]);
  const read = async (v) => (docs.has(v) ? docs.get(v) : docs.set(v, await api(`${base}?version=${v}`)).get(v));
  async function compare(e) {
    e?.preventDefault();
    const a = Number(from.value), b = Number(to.value);
    try { result.replaceChildren(...drawDiff(a, b, diffWorkflows(await read(a), await read(b)))); }
    catch (err) { result.replaceChildren(h("p.error", { role: "alert" }, problemText(err))); }
  }
  card.append(h("form.filters", { onsubmit: compare },
    h("div", {}, h("label", { for: "diff-from" }, "From"), from),
    h("div", {}, h("label", { for: "diff-to" }, "To"), to),
    h("div", {}, h("button", { type: "submit" }, "Compare"))), result);
  compare();
  return card;
}

const show = (v) => { const t = JSON.stringify(v); return t === undefined ? "—" : t.length > 160 ? `${t.slice(0, 159)}…` : t; };
const plural = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;

function drawDiff(a, b, d) {
  if (isEmpty(d)) return [h("p", { id: "diff-summary" }, `Versions ${a} and ${b} hold the same workflow.`)];
  const n = d.nodes, e = d.edges;
  const summary = `Version ${a} → ${b}: ${plural(n.added.length, "node")} added, ${n.removed.length} removed, `
    + `${n.changed.length} changed; ${plural(e.added.length, "edge")} added, ${e.removed.length} removed`
    + `${e.changed.length ? `, ${e.changed.length} changed` : ""}; ${plural(d.workflow.length, "other change")}.`;
  const change = (c) => h("li", { "data-change": c.kind }, h("code", {}, c.path || "(the value)"), ": ",
    c.kind === "added" ? `added ${show(c.after)}` : c.kind === "removed" ? `removed (was ${show(c.before)})`
      : `${show(c.before)} → ${show(c.after)}`);
  const section = (title, id, part) => {
    const items = [
      ...part.added.map((k) => h("li", { "data-diff": "added", "data-key": k }, h("span.mark", { "aria-hidden": "true" }, "+ "), `${k} added`)),
      ...part.removed.map((k) => h("li", { "data-diff": "removed", "data-key": k }, h("span.mark", { "aria-hidden": "true" }, "− "), `${k} removed`)),
      ...part.changed.map((c) => h("li", { "data-diff": "changed", "data-key": c.id }, h("span.mark", { "aria-hidden": "true" }, "~ "),
        `${c.id} changed`, h("ul", {}, c.changes.map(change)))),
    ];
    return items.length ? [h("h3", {}, title), h("ul.diff", { id }, items)] : [];
  };
  return [h("p", { id: "diff-summary" }, summary), ...section("Nodes", "diff-nodes", n), ...section("Edges", "diff-edges", e),
    ...(d.workflow.length ? [h("h3", {}, "Workflow"), h("ul.diff", { id: "diff-workflow" }, d.workflow.map(change))] : [])];
}
