/*
 * Switchboard webchat widget. Embed it on a website with
 *   <script src="https://switchboard.example/static/webchat/widget.js" data-key="WIDGET KEY" defer></script>
 * It talks to the server it was loaded from (the origin of its own src), over the websocket
 * /ws/webchat/ (protocol: channels_inbound/webchat/protocol.py) and, for files, HTTP uploads.
 * The visitor's token is kept in localStorage, so a reload shows the conversation again.
 * Everything renders inside a shadow root (the host page's styles neither leak in nor out) and
 * with textContent only: nothing a visitor or agent writes is ever parsed as HTML.
 */
(function () {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.dataset.key) return;

  const key = script.dataset.key;
  const server = new URL(script.src, location.href);
  const socketUrl = (server.protocol === "https:" ? "wss://" : "ws://") + server.host + "/ws/webchat/?key=" + encodeURIComponent(key);
  const uploadUrl = server.origin + "/webhooks/webchat/upload";
  const stored = "switchboard-webchat:" + key + ":";
  const MAX_FILE_BYTES = 10 * 1024 * 1024;
  const FILE_TYPES = "image/png,image/jpeg,image/gif,image/webp,application/pdf";

  let token = storage("get", "visitor");
  let socket = null;
  let greeted = false;
  let retryDelay = 1000;
  const unsent = new Map(); // client id → body: typed messages the server has not acknowledged yet

  const host = document.createElement("div");
  host.id = "switchboard-webchat";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>
      :host { all: initial; }
      * { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
      .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; border: 0; border-radius: 999px;
        padding: 12px 20px; background: #1d4ed8; color: #fff; font-size: 16px; font-weight: 600; cursor: pointer;
        box-shadow: 0 4px 14px rgba(0,0,0,.25); }
      .launcher .dot { display: inline-block; width: 10px; height: 10px; margin-left: 8px; border-radius: 50%; background: #fbbf24; }
      .panel { position: fixed; right: 20px; bottom: 80px; z-index: 2147483000; width: min(360px, calc(100vw - 40px));
        height: min(520px, calc(100vh - 120px)); display: flex; flex-direction: column; background: #fff; color: #111827;
        border: 1px solid #d1d5db; border-radius: 12px; box-shadow: 0 10px 30px rgba(0,0,0,.25); overflow: hidden; }
      .panel[hidden], [hidden] { display: none !important; }
      header { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px; background: #1d4ed8; color: #fff; }
      h2 { margin: 0; font-size: 16px; }
      .close { border: 0; background: transparent; color: #fff; font-size: 22px; line-height: 1; cursor: pointer; padding: 2px 8px; border-radius: 6px; }
      .status, .queue { margin: 0; padding: 6px 14px; font-size: 13px; background: #f3f4f6; color: #374151; }
      .queue { background: #fef3c7; color: #78350f; font-weight: 600; }
      .log { flex: 1; margin: 0; padding: 12px 14px; list-style: none; overflow-y: auto; display: flex; flex-direction: column; gap: 8px; }
      .msg { max-width: 85%; padding: 8px 10px; border-radius: 10px; font-size: 14px; line-height: 1.4; }
      .msg.visitor { align-self: flex-end; background: #dbeafe; }
      .msg.agent { align-self: flex-start; background: #f3f4f6; }
      .who { display: block; font-size: 12px; font-weight: 600; color: #374151; }
      .body { margin: 2px 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
      .file { display: block; margin-top: 2px; }
      .meta { display: block; margin-top: 2px; font-size: 11px; color: #4b5563; }
      .msg.failed .meta { color: #b91c1c; font-weight: 600; }
      form { border-top: 1px solid #e5e7eb; padding: 10px 14px; }
      label { display: block; font-size: 13px; font-weight: 600; margin-bottom: 4px; }
      textarea { width: 100%; resize: vertical; min-height: 44px; max-height: 160px; padding: 8px; font-size: 14px;
        border: 1px solid #6b7280; border-radius: 8px; color: #111827; }
      .hint { margin: 4px 0 8px; font-size: 12px; color: #4b5563; }
      .actions { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
      .visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); border: 0; }
      .attach { margin: 0; padding: 8px 12px; border: 1px solid #6b7280; border-radius: 8px; font-weight: 500; cursor: pointer; }
      .send { border: 0; border-radius: 8px; padding: 9px 16px; background: #1d4ed8; color: #fff; font-size: 14px; font-weight: 600; cursor: pointer; }
      input:disabled + .attach { opacity: .5; cursor: not-allowed; }
      .error { margin: 8px 0 0; font-size: 13px; color: #b91c1c; }
      :focus-visible, input:focus-visible + .attach { outline: 3px solid #f59e0b; outline-offset: 2px; }
    </style>
    <button class="launcher" type="button" aria-expanded="false" aria-controls="panel">Chat with us<span class="dot" hidden><span class="visually-hidden"> (new message)</span></span></button>
    <section class="panel" id="panel" role="dialog" aria-modal="false" aria-labelledby="title" hidden>
      <header><h2 id="title">Chat with us</h2><button class="close" type="button" aria-label="Close chat">×</button></header>
      <p class="status" role="status"></p>
      <p class="queue" role="status" hidden></p>
      <ol class="log" role="log" aria-live="polite" aria-label="Messages" tabindex="0"></ol>
      <form novalidate>
        <label for="text">Your message</label>
        <textarea id="text" rows="2" maxlength="4000" aria-describedby="hint"></textarea>
        <p class="hint" id="hint">Enter sends, Shift+Enter starts a new line.</p>
        <div class="actions">
          <span>
            <input class="visually-hidden" id="file" type="file" accept="${FILE_TYPES}" disabled>
            <label class="attach" for="file">Attach image or PDF</label>
          </span>
          <button class="send" type="submit">Send</button>
        </div>
        <p class="error" role="alert" hidden></p>
      </form>
    </section>`;
  document.body.appendChild(host);

  const $ = (selector) => root.querySelector(selector);
  const launcher = $(".launcher"), panel = $(".panel"), log = $(".log"), text = $("#text"), fileInput = $("#file");
  const statusLine = $(".status"), queueLine = $(".queue"), errorLine = $(".error"), dot = $(".dot");

  function storage(verb, name, value) {
    try {
      if (verb === "get") return localStorage.getItem(stored + name);
      if (value === null) localStorage.removeItem(stored + name);
      else localStorage.setItem(stored + name, value);
    } catch (blocked) { /* storage disabled: the chat works, it just forgets on reload */ }
    return null;
  }

  function newClientId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- the dialog ---------------------------------------------------------------------------
  function openPanel(focus) {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    dot.hidden = true;
    storage("set", "open", "1");
    connect();
    if (focus) text.focus();
    log.scrollTop = log.scrollHeight;
  }

  function closePanel() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    storage("set", "open", null);
    launcher.focus();
  }

  launcher.addEventListener("click", () => (panel.hidden ? openPanel(true) : closePanel()));
  $(".close").addEventListener("click", closePanel);
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });

  // --- messages -----------------------------------------------------------------------------
  function bubble(message) {
    const item = document.createElement("li");
    item.className = "msg " + message.from;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = message.from === "visitor" ? "You" : message.author || "Agent";
    item.append(who);
    if (message.body) {
      const body = document.createElement("p");
      body.className = "body";
      body.textContent = message.body;
      item.append(body);
    }
    for (const file of message.attachments || []) {
      const line = document.createElement("span");
      line.className = "file";
      line.textContent = "File: " + file.name;
      item.append(line);
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    item.append(meta);
    fill(item, message);
    return item;
  }

  function fill(item, message) {
    if (message.id) item.dataset.id = message.id;
    if (message.client_id) item.dataset.clientId = message.client_id;
    item.classList.remove("failed");
    const meta = item.querySelector(".meta");
    meta.textContent = "";
    if (message.at) {
      const time = document.createElement("time");
      time.dateTime = message.at;
      time.textContent = new Date(message.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      meta.append(time);
    } else {
      meta.textContent = "Sending…";
    }
  }

  /** Show a message once, whether it comes from the history, an acknowledgement or a push. */
  function show(message) {
    const known = log.querySelector(`[data-id="${CSS.escape(message.id)}"]`) ||
      (message.client_id && log.querySelector(`[data-client-id="${CSS.escape(message.client_id)}"]`));
    if (known) {
      fill(known, message);
    } else {
      log.append(bubble(message));
      if (message.from === "agent" && panel.hidden) dot.hidden = false;
    }
    if (message.client_id) unsent.delete(message.client_id);
    log.scrollTop = log.scrollHeight;
  }

  function markFailed(clientId, reason) {
    unsent.delete(clientId);
    const item = clientId && log.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
    if (!item) return showError(reason);
    item.classList.add("failed");
    item.querySelector(".meta").textContent = "Not sent: " + reason;
  }

  function showError(reason) {
    errorLine.textContent = reason || "";
    errorLine.hidden = !reason;
  }

  function showQueuePosition(position) {
    queueLine.hidden = !position;
    queueLine.textContent = position ? `You are number ${position} in line.` : "";
  }

  // --- the websocket ------------------------------------------------------------------------
  function connect() {
    if (socket) return;
    statusLine.textContent = "Connecting…";
    statusLine.hidden = false;
    socket = new WebSocket(socketUrl);
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "hello", visitor: token })));
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (garbled) { return; }
      receive(frame);
    });
    socket.addEventListener("close", () => {
      socket = null;
      greeted = false;
      fileInput.disabled = true;
      statusLine.textContent = "Connection lost. Reconnecting…";
      statusLine.hidden = false;
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    });
  }

  function receive(frame) {
    if (frame.type === "welcome") {
      token = frame.visitor;
      storage("set", "visitor", token);
      greeted = true;
      retryDelay = 1000;
      statusLine.hidden = true;
      fileInput.disabled = false;
      frame.messages.forEach(show);
      showQueuePosition(frame.queue_position);
      unsent.forEach((body, id) => transmit(id, body)); // resent after a dropped connection: stored once
    } else if (frame.type === "message") {
      show(frame.message);
    } else if (frame.type === "queue") {
      showQueuePosition(frame.position);
    } else if (frame.type === "error") {
      if (frame.code === "rate_limited" || frame.code === "server_error") {
        setTimeout(() => unsent.forEach((body, id) => transmit(id, body)), 3000);
        showError(frame.detail);
      } else {
        markFailed(frame.id, frame.detail);
      }
    }
  }

  function transmit(id, body) {
    if (socket && greeted) socket.send(JSON.stringify({ type: "message", id, body }));
  }

  function sendText() {
    const body = text.value;
    if (!body.trim()) return;
    showError("");
    const id = newClientId();
    unsent.set(id, body);
    log.append(bubble({ client_id: id, from: "visitor", body }));
    log.scrollTop = log.scrollHeight;
    text.value = "";
    transmit(id, body);
  }

  $("form").addEventListener("submit", (event) => { event.preventDefault(); sendText(); });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    }
  });

  // --- files --------------------------------------------------------------------------------
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    showError("");
    if (file.size > MAX_FILE_BYTES) return showError("Files can be at most 10 MB.");
    const id = newClientId();
    log.append(bubble({ client_id: id, from: "visitor", attachments: [{ name: file.name }] }));
    const form = new FormData();
    form.append("key", key);
    form.append("visitor", token);
    form.append("id", id);
    form.append("file", file);
    try {
      const response = await fetch(uploadUrl, { method: "POST", body: form });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) show(answer.message);
      else markFailed(id, answer.error || "The file could not be sent.");
    } catch (offline) {
      markFailed(id, "The file could not be sent. Check your connection and try again.");
    }
  });

  // A returning visitor reconnects at once (agent replies arrive even with the chat closed).
  if (storage("get", "open")) openPanel(false);
  else if (token) connect();
})();
