import { api } from "./api.js";
import { h, problemText } from "./dom.js";
import { schemaFields } from "./schemaform.js";

// One waiting prompt's answer form; onDone() runs once the server took the answer.
export function approvalForm(executionId, prompt, onDone) {
  const fields = schemaFields(prompt.schema, "Answer");
  const status = h("p.muted", { role: "status" });
  const send = h("button.primary", { type: "submit" }, "Send answer");
  const form = h("form.card.prompt", { "data-node-id": prompt.node_id, "aria-label": `Answer ${prompt.node_id}`,
    novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      const read = fields.read();
      if (read.errors) return;
      send.disabled = true;
      status.textContent = "Sending…";
      try {
        await api(`/executions/${encodeURIComponent(executionId)}/resume`, { method: "POST",
          body: { value: read.value, node_id: prompt.node_id, mode: "async" } });
        status.textContent = "Answer accepted; the run goes on.";
        onDone?.();
      } catch (err) {
        status.textContent = "";
        fields.serverError(`Refused (${err.status || "error"}): ${problemText(err)}`);
        send.disabled = false;
      }
    } },
    h("p", {}, h("strong", {}, prompt.prompt || "Waiting for an answer")),
    h("p.muted", {}, `Node ${prompt.node_id}`),
    fields.element, h("div.actions", {}, send), status);
  return form;
}
