import { api } from "./api.js";
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
        const started = await api(`${base}/execute`, { method: "POST", body: { inputs: read.value || {}, mode: "async" } });
        location.href = `/ui/runs/${encodeURIComponent(started.execution_id)}`;
      } catch (err) {
        fields.serverError(`Refused (${err.status || "error"}): ${problemText(err)}`);
        go.disabled = false;
      }
    } },
    h("h2", { id: "run-h" }, "Run it"),
    version === newest ? null : h("p.muted", {}, `Runs start from the latest version (${newest}).`),
    fields.element, h("div.actions", {}, go), say);

  main.replaceChildren(h("h1", {}, doc.name || id),
    h("div.filters", {}, h("div", {}, h("label", { for: "version" }, "Version"), picker),
      h("div", {}, h("a", { href: `/ui?workflow=${encodeURIComponent(id)}` }, "Runs of this workflow"))),
    doc.description ? h("p", {}, doc.description) : "",
    h("div.run-layout", {},
      h("div", {},
        h("section.card", { "aria-labelledby": "g-h" }, h("h2", { id: "g-h" }, "Graph"), drawGraph(doc, null, false).element),
        h("details.card", {}, h("summary", {}, "Mermaid"), mermaid),
        h("details.card", { open: true }, h("summary", {}, "Document"), h("pre", { id: "document" }, json(doc)))),
      runForm));
}
