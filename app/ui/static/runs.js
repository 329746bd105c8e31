import { api, ApiProblem } from "./api.js";
import { badge, duration, fmtTime, h } from "./dom.js";

const STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];
const POLL_MS = 2000;

// A time in the URL and the API is ISO 8601 in UTC; the inputs show it in local time.
function toLocal(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}
const toIso = (local) => (local ? new Date(local).toISOString() : "");

export function render(main) {
  const params = new URLSearchParams(location.search);
  const state = { status: params.get("status") || "", workflow: params.get("workflow") || "",
                  since: params.get("since") || "", until: params.get("until") || "",
                  error: params.get("error") || "",
                  limit: Number(params.get("limit")) || 25, cursors: [], cursor: null, next: null };

  const status = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s)));
  const workflow = h("input", { id: "f-workflow", name: "workflow", value: state.workflow,
                                placeholder: "any workflow" });
  const since = h("input", { id: "f-since", name: "since", type: "datetime-local", step: 1,
                             value: toLocal(state.since) });
  const until = h("input", { id: "f-until", name: "until", type: "datetime-local", step: 1,
                             value: toLocal(state.until) });
  const errorText = h("input", { id: "f-error", name: "error", value: state.error,
                                 placeholder: "part of an error message", autocomplete: "off" });
  const filters = h("form.filters", { role: "search", "aria-label": "Filter runs",
    onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("div", {}, h("label", { for: "f-status" }, "Status"), status),
    h("div", {}, h("label", { for: "f-workflow" }, "Workflow id"), workflow),
    h("div", {}, h("label", { for: "f-since" }, "Created from"), since),
    h("div", {}, h("label", { for: "f-until" }, "Created before"), until),
    h("div", {}, h("label", { for: "f-error" }, "Error text"), errorText),
    h("div", {}, h("button", { type: "submit" }, "Apply filters")));
  status.addEventListener("change", apply);

  const searchInput = h("input", { id: "f-search", name: "execution_id",
                                   placeholder: "execution id", autocomplete: "off" });
  const searchMsg = h("p.error", { role: "alert", id: "search-msg" });
  const search = h("form.filters", { role: "search", "aria-label": "Find a run",
    onsubmit: async (e) => {
      e.preventDefault();
      const id = searchInput.value.trim();
      if (!id) return;
      try {
        await api(`/executions/${encodeURIComponent(id)}`);
        location.href = `/ui/runs/${encodeURIComponent(id)}`;
      } catch (err) {
        searchMsg.textContent = err instanceof ApiProblem && [404, 422].includes(err.status)
          ? `No run with execution id “${id}”.` : String(err.message);
      }
    } },
    h("div", {}, h("label", { for: "f-search" }, "Execution id"), searchInput),
    h("div", {}, h("button", { type: "submit" }, "Open run")));

  const tbody = h("tbody", { id: "runs-body" });
  const table = h("div.table-wrap", {}, h("table", { "aria-label": "Runs, newest first" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Execution"),
      h("th", { scope: "col" }, "Workflow"), h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Created"), h("th.hide-narrow", { scope: "col" }, "Duration"))),
    tbody));
  const newer = h("button", { type: "button", id: "page-newer", onclick: () => {
    state.cursor = state.cursors.pop() ?? null; load(); } }, "← Newer");
  const older = h("button", { type: "button", id: "page-older", onclick: () => {
    state.cursors.push(state.cursor); state.cursor = state.next; load(); } }, "Older →");
  const pageLabel = h("span.muted", { id: "page-label" });
  const live = h("p.muted", { id: "live" });
  const error = h("p.error", { role: "alert" });

  main.replaceChildren(h("h1", {}, "Runs"), search, filters, error, table,
    h("nav.pager", { "aria-label": "Pages" }, newer, pageLabel, older), live);

  function apply() {
    state.status = status.value;
    state.workflow = workflow.value.trim();
    state.since = toIso(since.value);
    state.until = toIso(until.value);
    state.error = errorText.value.trim();
    const q = new URLSearchParams();
    for (const k of ["status", "workflow", "since", "until", "error"]) if (state[k]) q.set(k, state[k]);
    history.replaceState(null, "", `/ui${q.size ? `?${q}` : ""}`);
    state.cursors = []; state.cursor = null;
    load();
  }

  let shown = "";
  let loading = null;
  async function load() {
    const q = new URLSearchParams({ limit: state.limit });
    for (const k of ["status", "since", "until", "error"]) if (state[k]) q.set(k, state[k]);
    if (state.cursor) q.set("cursor", state.cursor);
    const base = state.workflow ? `/workflows/${encodeURIComponent(state.workflow)}/executions`
                                : "/executions";
    const ticket = (loading = {});
    try {
      const page = await api(`${base}?${q}`);
      if (ticket !== loading) return; // a newer request superseded this one
      error.textContent = "";
      state.next = page.next_cursor;
      newer.disabled = state.cursors.length === 0;
      older.disabled = !state.next;
      pageLabel.textContent = `Page ${state.cursors.length + 1}`;
      live.textContent = `Live: refreshed every 2 s (last ${new Date().toLocaleTimeString()})`;
      const key = JSON.stringify(page.items.map((r) => [r.execution_id, r.status, r.finished_at]));
      if (key === shown) return; // unchanged: keep focus and selection where they are
      shown = key;
      tbody.replaceChildren(...(page.items.length ? page.items.map(row)
        : [h("tr", {}, h("td", { colspan: 5 }, h("span.muted", {}, "No runs match.")))]));
    } catch (err) {
      if (ticket === loading) error.textContent = `Could not load runs: ${err.message}`;
    }
  }

  function row(r) {
    return h("tr", { "data-execution-id": r.execution_id, "data-status": r.status },
      h("td.id", {}, h("a", { href: `/ui/runs/${encodeURIComponent(r.execution_id)}` },
        r.execution_id)),
      h("td", {}, r.workflow_id ? h("a", { href: `/ui/workflows/${encodeURIComponent(r.workflow_id)}` },
        `${r.workflow_id} v${r.workflow_version}`) : "—"),
      h("td", {}, badge(r.status)),
      h("td", {}, fmtTime(r.created_at)),
      h("td.hide-narrow", {}, duration(r.started_at, r.finished_at)));
  }

  load();
  setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
}
