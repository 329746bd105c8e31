// Every request goes through apiFetch: it adds the API key (sessionStorage) and asks for
// one, once, when the server answers 401.
const KEY = "flowloom.apiKey";
let asking = null;

export class ApiProblem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function askForKey(refused) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").hidden = !refused;
  asking = new Promise((resolve) => {
    form.addEventListener("submit", () => {
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      asking = null;
      showForget();
      resolve();
    }, { once: true });
  });
  dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
  if (!dialog.open) dialog.showModal();
  input.focus();
  return asking;
}

export function showForget() {
  const button = document.getElementById("forget-key");
  button.hidden = !sessionStorage.getItem(KEY);
  button.onclick = () => { sessionStorage.removeItem(KEY); location.reload(); };
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h.set("Authorization", `Bearer ${key}`);
  return h;
}

export async function apiFetch(path, options = {}) {
  for (;;) {
    const sent = sessionStorage.getItem(KEY);
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (response.status !== 401) return response;
    if (sessionStorage.getItem(KEY) !== sent) continue; // another request got a new key
    await askForKey(Boolean(sent));
  }
}

export async function api(path, { method = "GET", body, headers: extra } = {}) {
  const options = { method, headers: { Accept: "application/json", ...(extra || {}) } };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await apiFetch(path, options);
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiProblem(response.status, typeof data === "object" ? data : { detail: data });
  return data;
}

// Server-Sent Events over fetch (EventSource cannot send an Authorization header).
// Calls onEvent(name, data) per event; resolves when the server ends the stream.
export async function streamEvents(path, onEvent, signal, after = 0) {
  const hdrs = { Accept: "text/event-stream" };
  if (after) hdrs["Last-Event-ID"] = String(after);
  const response = await apiFetch(path, { headers: hdrs, signal });
  if (!response.ok || !response.body) throw new ApiProblem(response.status, null);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A CR LF split over two reads must stay one line end: a lone CR waits for the next.
    const whole = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const carry = buffer.slice(whole);
    buffer = buffer.slice(0, whole).replace(/\r\n?/g, "\n");
    let at = 0, end;  // cut the buffer once per read, not once per event
    while ((end = buffer.indexOf("\n\n", at)) >= 0) {
      const block = buffer.slice(at, end);
      at = end + 2;
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) {
        let parsed = data.join("\n");
        try { parsed = JSON.parse(parsed); } catch { /* plain text */ }
        onEvent(name, parsed);
      }
    }
    buffer = buffer.slice(at) + carry;
  }
}
