import { api } from "./api.js";
import { approvalForm } from "./approval.js";
import { fmtTime, h } from "./dom.js";

const POLL_MS = 2000;

// Every waiting run's prompts; items are kept while their run still waits, so a half
// filled form survives the refresh.
export function render(main) {
  const list = h("div", { id: "inbox" });
  const empty = h("p.muted", { id: "inbox-empty" }, "Nothing is waiting for an answer.");
  const error = h("p.error", { role: "alert" });
  main.replaceChildren(h("h1", {}, "Approvals inbox"),
    h("p.muted", {}, "Runs waiting for an answer, newest first; refreshed every 2 s."),
    error, empty, list);
  const items = new Map();

  async function load() {
    const runs = [];
    let cursor = null;
    try {
      do {
        const q = new URLSearchParams({ status: "waiting", limit: 200 });
        if (cursor) q.set("cursor", cursor);
        const page = await api(`/executions?${q}`);
        runs.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
      error.textContent = "";
    } catch (err) {
      error.textContent = `Could not load waiting runs: ${err.message}`;
      return;
    }
    const keep = new Set();
    for (const r of runs) {
      const key = `${r.execution_id} ${JSON.stringify(r.waiting_for.map((p) => [p.node_id, p.interrupt_id]))}`;
      keep.add(key);
      if (!items.has(key)) {
        items.set(key, h("section.card.inbox-item", { "data-execution-id": r.execution_id,
            "aria-label": `Run ${r.execution_id}` },
          h("h2", {}, h("a", { href: `/ui/runs/${encodeURIComponent(r.execution_id)}` }, r.execution_id)),
          h("p.muted", {}, `${r.workflow_id || "inline"} v${r.workflow_version ?? "?"} · waiting since ${fmtTime(r.updated_at || r.created_at)}`),
          r.waiting_for.map((p) => approvalForm(r.execution_id, p, load))));
      }
    }
    for (const [key, el] of items) if (!keep.has(key)) { el.remove(); items.delete(key); }
    const order = runs.map((r) => [...items.entries()].find(([k]) => k.startsWith(`${r.execution_id} `))?.[1]).filter(Boolean);
    order.forEach((el, i) => { if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null); });
    empty.hidden = items.size > 0;
  }

  load();
  setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
}
