import { api } from "./api.js";
import { fmtTime, h } from "./dom.js";

const LIMIT = 50;

export function render(main) {
  const tbody = h("tbody", { id: "workflows-body" });
  const error = h("p.error", { role: "alert" });
  const prev = h("button", { type: "button", onclick: () => load(Math.max(0, offset - LIMIT)) }, "← Previous");
  const next = h("button", { type: "button", onclick: () => load(nextOffset) }, "Next →");
  let offset = 0, nextOffset = null;
  main.replaceChildren(h("h1", {}, "Workflows"), error,
    h("div.table-wrap", {}, h("table", { "aria-label": "Stored workflows" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Id"), h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Latest version"), h("th.hide-narrow", { scope: "col" }, "Updated"),
        h("th", { scope: "col" }, "Runs"))), tbody)),
    h("nav.pager", { "aria-label": "Pages" }, prev, next));

  async function load(at) {
    try {
      const page = await api(`/workflows?limit=${LIMIT}&offset=${at}`);
      offset = at; nextOffset = page.next_offset;
      prev.disabled = offset === 0; next.disabled = nextOffset === null;
      tbody.replaceChildren(...(page.items.length ? page.items.map((w) => {
        const href = `/ui/workflows/${encodeURIComponent(w.id)}`;
        return h("tr", { "data-workflow-id": w.id },
          h("td.id", {}, h("a", { href }, w.id)), h("td", {}, w.name || "—"),
          h("td", {}, h("a", { href: `${href}?version=${w.version}` }, `v${w.version}`)),
          h("td.hide-narrow", {}, fmtTime(w.updated_at)),
          h("td", {}, h("a", { href: `/ui?workflow=${encodeURIComponent(w.id)}` }, "runs")));
      }) : [h("tr", {}, h("td", { colspan: 5 }, h("span.muted", {}, "No workflows stored.")))]));
    } catch (err) { error.textContent = `Could not load workflows: ${err.message}`; }
  }
  load(0);
}
