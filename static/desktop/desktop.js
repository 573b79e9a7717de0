/* The agent desktop's own script: what htmx does not do by itself.
 *
 * - Keeps the number of the last pushed event and, on every (re)connect and every 10 s, asks the
 *   server for anything after it ({"resume": ..., "open": [...], "shown": {pane: newest message}});
 *   the server replays the gap or redraws the screen. Reconnects after any close, with back-off
 *   capped at 4 s; nothing is sent while the socket is closed.
 * - Drops an appended message or pane the screen already shows (a push and a response can bring
 *   the same one).
 * - Panes: one conversation in front, the others kept (with their drafts) but hidden.
 * - Reply box: Enter sends, Shift+Enter adds a line, /shortcut + Tab inserts a template, emoji,
 *   attachment preview. Countdowns, unread badges and the title counter. Keyboard shortcuts.
 */
(function () {
  "use strict";

  var HEARTBEAT_MS = 10000;
  var MAX_RECONNECT_MS = 4000;
  var lastSeq = "";
  var socket = null;
  var unread = {};
  var baseTitle = document.title;

  function desktop() { return document.querySelector(".desktop"); }

  // --- sequence numbers -------------------------------------------------------------------------

  function newer(seq) {
    if (!seq) return false;
    if (!lastSeq) return true;
    var a = lastSeq.split(":"), b = seq.split(":");
    if (a[0] !== b[0]) return true; // another epoch: the server redrew everything
    return parseInt(b[1], 10) > parseInt(a[1], 10);
  }

  function openPaneIds() {
    return Array.prototype.map.call(document.querySelectorAll("[data-pane]"), function (pane) {
      return pane.getAttribute("data-pane");
    });
  }

  // Only on an open socket (`socket` is set on htmx:wsOpen, cleared on htmx:wsClose): the htmx wrapper
  // queues what is sent while it is closed and sends it all on reconnect, so a long outage would end
  // in a burst of resumes (each one a redraw) after the one the reconnect sends anyway.
  function socketOpen() {
    return socket !== null;
  }

  // The newest message each open pane shows: the server redraws a pane whose newest stored message
  // differs (a push lost with no number in the event log: a server killed between commit and push).
  function shownMessages() {
    var shown = {};
    Array.prototype.forEach.call(document.querySelectorAll("[data-pane]"), function (pane) {
      var messages = pane.querySelectorAll(".history article.msg[id^='msg-']");
      shown[pane.getAttribute("data-pane")] = messages.length ? messages[messages.length - 1].id.slice(4) : "";
    });
    return shown;
  }

  function sendResume() {
    if (!socketOpen()) return;
    socket.send(JSON.stringify({ resume: lastSeq, open: openPaneIds(), shown: shownMessages() }));
    announce(false);
  }

  // Who else shows this conversation (desktop.consumers: presence). Typing is said at most every 3 s.
  var lastTyping = 0;
  function announce(typing) {
    var id = activePaneId();
    if (!socketOpen() || !id) return;
    if (typing) {
      if (Date.now() - lastTyping < 3000) return;
      lastTyping = Date.now();
    }
    socket.send(JSON.stringify({ viewing: id, typing: typing }));
  }

  // --- incoming fragments -----------------------------------------------------------------------

  htmx.defineExtension("desktop", {
    transformResponse: function (text) {
      if (text.indexOf("data-desktop-seq") < 0 && text.indexOf("beforeend") < 0 &&
          text.indexOf("conversation-pane") < 0 && text.indexOf("data-digest") < 0) {
        return text;
      }
      var template = document.createElement("template");
      template.innerHTML = text;
      var fragment = template.content;
      Array.prototype.forEach.call(fragment.querySelectorAll("[data-desktop-seq]"), function (marker) {
        var seq = marker.getAttribute("data-desktop-seq");
        if (newer(seq)) lastSeq = seq;
        marker.remove();
      });
      Array.prototype.forEach.call(fragment.querySelectorAll('[hx-swap-oob^="beforeend"] > [id]'), function (item) {
        if (document.getElementById(item.id)) item.remove();
        else noteArrival(item);
      });
      // An out-of-band fragment identical to what is shown is dropped (desktop.fragments._with_digest).
      Array.prototype.forEach.call(fragment.querySelectorAll('[hx-swap-oob="true"][data-digest]'), function (incoming) {
        var shown = document.getElementById(incoming.id);
        if (shown && shown.getAttribute("data-digest") === incoming.getAttribute("data-digest")) incoming.remove();
      });
      Array.prototype.forEach.call(fragment.querySelectorAll("section.conversation-pane[id]"), function (pane) {
        if (document.getElementById(pane.id)) pane.remove();
      });
      return template.innerHTML;
    },
  });

  function noteArrival(item) {
    if (!item.classList.contains("msg-inbound")) return;
    var wrapper = item.parentElement;
    var target = (wrapper.getAttribute("hx-swap-oob") || "").split("#")[1] || "";
    var conversation = target.replace(/^conv-/, "").replace(/-history$/, "");
    if (conversation && (conversation !== activePaneId() || document.hidden)) {
      alertAgent("A customer wrote again.");
      unread[conversation] = (unread[conversation] || 0) + 1;
      setTimeout(showUnread, 0);
    }
  }

  // --- optional sound and desktop notifications (the agent's choice, kept in this browser) ----------

  var lastOfferCount = 0;

  function notifyOn() { return window.localStorage.getItem("switchboard-notify") === "on"; }

  function showNotifyToggle() {
    var toggle = document.querySelector("[data-notify-toggle]");
    if (!toggle) return;
    toggle.setAttribute("aria-pressed", notifyOn() ? "true" : "false");
    toggle.textContent = "Sound and notifications: " + (notifyOn() ? "on" : "off");
  }

  function alertAgent(text) {
    if (!notifyOn()) return;
    try {
      var audio = new (window.AudioContext || window.webkitAudioContext)();
      var tone = audio.createOscillator();
      tone.frequency.value = 880;
      tone.connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.15);
    } catch (ignored) { /* no sound here */ }
    if (document.hidden && window.Notification && Notification.permission === "granted") {
      new Notification("Switchboard", { body: text });
    }
  }

  function showUnread() {
    var total = 0;
    Array.prototype.forEach.call(document.querySelectorAll("#task-list [data-conversation]"), function (item) {
      var count = unread[item.getAttribute("data-conversation")] || 0;
      var badge = item.querySelector("[data-unread]");
      if (!badge) return;
      badge.hidden = count === 0;
      badge.textContent = count ? String(count) : "";
      badge.setAttribute("aria-label", count + " new messages");
    });
    Object.keys(unread).forEach(function (key) { total += unread[key]; });
    var list = document.getElementById("task-list");
    var offers = list ? parseInt(list.getAttribute("data-offer-count") || "0", 10) : 0;
    if (offers > lastOfferCount) alertAgent("A new conversation is offered to you.");
    lastOfferCount = offers;
    var count = total + offers;
    document.title = (count ? "(" + count + ") " : "") + baseTitle;
  }

  // --- panes ------------------------------------------------------------------------------------

  function activePaneId() {
    var pane = document.querySelector("[data-pane]:not([hidden])");
    return pane ? pane.getAttribute("data-pane") : "";
  }

  var currentPane = "";

  // A pane that arrives by itself (work given to the agent) opens only when nothing else is open.
  function settlePanes() {
    var ids = openPaneIds();
    if (currentPane && ids.indexOf(currentPane) >= 0) showPane(currentPane, false);
    else if (ids.length) showPane(ids[ids.length - 1], true);
  }

  function showPane(id, focus) {
    currentPane = id;
    var shown = null;
    Array.prototype.forEach.call(document.querySelectorAll("[data-pane]"), function (pane) {
      var match = pane.getAttribute("data-pane") === id;
      pane.hidden = !match;
      if (match) shown = pane;
    });
    var empty = document.querySelector("[data-empty-pane]");
    if (empty) empty.hidden = !!shown;
    Array.prototype.forEach.call(document.querySelectorAll("#task-list [data-conversation]"), function (item) {
      item.classList.toggle("current", item.getAttribute("data-conversation") === id);
    });
    if (shown) {
      announce(false);
      delete unread[id];
      showUnread();
      var history = shown.querySelector(".history");
      if (history) history.scrollTop = history.scrollHeight;
      if (focus !== false) {
        var box = shown.querySelector("[data-reply-box]");
        (box || shown).focus();
      }
    }
  }

  function cyclePane(step) {
    var ids = openPaneIds();
    if (!ids.length) return;
    var at = ids.indexOf(activePaneId());
    showPane(ids[(at + step + ids.length) % ids.length]);
  }

  // --- reply box --------------------------------------------------------------------------------

  function insertAtCaret(box, text, replaceFrom) {
    var start = replaceFrom === undefined ? box.selectionStart : replaceFrom;
    var end = box.selectionEnd;
    box.value = box.value.slice(0, start) + text + box.value.slice(end);
    box.selectionStart = box.selectionEnd = start + text.length;
    box.focus();
  }

  function fetchTemplate(form, shortcut) {
    var url = form.getAttribute("data-template-url") + "?shortcut=" + encodeURIComponent(shortcut);
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    });
  }

  function onReplyKeydown(event) {
    var box = event.target;
    var form = box.form;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (box.value.trim() || form.querySelector("[data-attachments]").files.length) form.requestSubmit();
      return;
    }
    if (event.key === "Tab" && !event.shiftKey) {
      var before = box.value.slice(0, box.selectionStart);
      var match = /(^|\s)\/([\w-]+)$/.exec(before);
      if (!match) return;
      event.preventDefault();
      var from = box.selectionStart - match[2].length - 1;
      fetchTemplate(form, match[2]).then(function (text) {
        if (text !== null) insertAtCaret(box, text, from);
      });
    }
  }

  function previewAttachments(input) {
    var list = input.form.querySelector("[data-attachment-preview]");
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      if (file.type.indexOf("image/") === 0) {
        var img = document.createElement("img");
        img.src = URL.createObjectURL(file);
        img.alt = "";
        item.appendChild(img);
      }
      item.appendChild(document.createTextNode(file.name + " (" + Math.ceil(file.size / 1024) + " KB)"));
      list.appendChild(item);
    });
  }

  // --- countdowns -------------------------------------------------------------------------------

  function format(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + "h " + m + "m";
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var now = Date.now();
    Array.prototype.forEach.call(document.querySelectorAll("time[data-countdown]"), function (el) {
      var left = (Date.parse(el.getAttribute("datetime")) - now) / 1000;
      el.textContent = left > 0 ? format(left) : "now";
    });
    Array.prototype.forEach.call(document.querySelectorAll("time[data-elapsed]"), function (el) {
      el.textContent = format((now - Date.parse(el.getAttribute("datetime"))) / 1000);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-presence-until]"), function (el) {
      if (Date.parse(el.getAttribute("data-presence-until")) < now) { el.textContent = ""; el.removeAttribute("data-presence-until"); }
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-sla]"), function (el) {
      var warn = Date.parse(el.getAttribute("data-warn-at")), due = Date.parse(el.getAttribute("data-due-at"));
      el.classList.toggle("sla-breached", due <= now || el.classList.contains("sla-breached"));
      el.classList.toggle("sla-warning", warn <= now && due > now);
    });
  }

  // --- wiring -----------------------------------------------------------------------------------

  htmx.config.wsReconnectDelay = function (retryCount) {
    return Math.min(MAX_RECONNECT_MS, 250 * Math.pow(2, retryCount)) * (0.5 + Math.random() / 2);
  };
  // A rule a service refuses answers 409 with an out-of-band message (and HX-Reswap: none).
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "409", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
  ];

  document.addEventListener("DOMContentLoaded", function () {
    var root = desktop();
    if (!root) return;
    lastSeq = root.getAttribute("data-desktop-seq") || "";
    baseTitle = root.getAttribute("data-desktop-title") || document.title;
    var status = document.querySelector("[data-connection]");

    root.addEventListener("htmx:wsOpen", function (event) {
      socket = event.detail.socketWrapper;
      if (status) { status.textContent = "Live"; status.className = "connection live"; }
      sendResume();
    });
    root.addEventListener("htmx:wsClose", function (event) {
      socket = null;
      if (status) { status.textContent = "Reconnecting…"; status.className = "connection down"; }
      var code = event.detail.event.code;
      if (code === 4401 || code === 4403) { window.location.reload(); return; }
      // htmx reconnects by itself after 1006/1011/1012/1013 only; any other close is retried here.
      if ([1006, 1011, 1012, 1013].indexOf(code) < 0) {
        var wrapper = event.detail.socketWrapper;
        setTimeout(function () { wrapper.reconnect(); }, 500 + Math.random() * 1500);
      }
    });
    setInterval(sendResume, HEARTBEAT_MS);
    setInterval(tick, 1000);
    tick();

    document.body.addEventListener("desktop:open", function (event) { showPane(event.detail.value); });
    document.body.addEventListener("htmx:oobAfterSwap", function (event) {
      var target = event.detail.target;
      if (target && target.id === "task-list") { showUnread(); markCurrent(); }
      if (target && target.id === "panes") settlePanes();
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.detail.target && event.detail.target.id === "task-list") { showUnread(); markCurrent(); }
    });
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      var link = event.detail.elt.closest && event.detail.elt.closest("[data-open-conversation]");
      if (link && document.getElementById("conv-" + link.getAttribute("data-open-conversation"))) {
        event.preventDefault();
        showPane(link.getAttribute("data-open-conversation"));
      }
    });

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && activePaneId()) { delete unread[activePaneId()]; showUnread(); }
    });
    showNotifyToggle();
    var initial = document.getElementById("task-list");
    lastOfferCount = initial ? parseInt(initial.getAttribute("data-offer-count") || "0", 10) : 0;

    document.addEventListener("click", function (event) {
      if (event.target.closest("[data-notify-toggle]")) {
        var on = !notifyOn();
        window.localStorage.setItem("switchboard-notify", on ? "on" : "off");
        if (on && window.Notification && Notification.permission === "default") Notification.requestPermission();
        showNotifyToggle();
        return;
      }
      if (event.target.closest("[data-shortcuts]")) { document.getElementById("shortcuts").showModal(); return; }
      var close = event.target.closest("[data-close-pane]");
      if (close) {
        var pane = document.getElementById("conv-" + close.getAttribute("data-close-pane"));
        if (pane) pane.remove();
        var left = openPaneIds();
        showPane(left.length ? left[left.length - 1] : "");
        return;
      }
      var emoji = event.target.closest("[data-emoji]");
      if (emoji) {
        var box = emoji.closest("form").querySelector("[data-reply-box]");
        insertAtCaret(box, emoji.getAttribute("data-emoji"));
        emoji.closest("details").open = false;
        return;
      }
      var edit = event.target.closest("[data-edit-reply]");
      if (edit) {
        var form = edit.closest("form");
        edit.closest(".sensitive-warning").remove();
        form.querySelector("[data-reply-box]").focus();
      }
    });
    document.addEventListener("keydown", function (event) {
      if (event.target.matches && event.target.matches("[data-reply-box]")) { onReplyKeydown(event); return; }
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
      if (event.key === "?" && !typing) {
        event.preventDefault();
        document.getElementById("shortcuts").showModal();
      } else if (event.altKey && (event.key === "a" || event.key === "d")) {
        var button = document.querySelector("#task-list [data-offer] " + (event.key === "a" ? "[data-accept]" : "[data-decline]"));
        if (button) { event.preventDefault(); button.click(); }
      } else if (event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
        event.preventDefault();
        cyclePane(event.key === "ArrowDown" ? 1 : -1);
      }
    });
    document.addEventListener("input", function (event) {
      if (event.target.matches && event.target.matches("[data-reply-box]")) announce(true);
    });
    document.addEventListener("change", function (event) {
      if (event.target.matches("[data-attachments]")) previewAttachments(event.target);
      if (event.target.matches("[data-template-picker]") && event.target.value) {
        var picker = event.target, form = picker.form;
        fetchTemplate(form, picker.value.replace(/^\//, "")).then(function (text) {
          if (text !== null) insertAtCaret(form.querySelector("[data-reply-box]"), text);
          picker.value = "";
        });
      }
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var target = event.detail.target;
      if (target && target.matches && target.matches("form.composer")) {
        var box = target.querySelector ? target.querySelector("[data-reply-box]") : null;
        if (box) box.focus();
      }
    });
    // "Show earlier messages" is replaced by what it loaded: a keyboard user stays in the history,
    // on the next such button, or on the history itself once the first message is shown.
    var earlierIn = null;
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var button = event.detail.elt;
      earlierIn = button && button.matches && button.matches("[data-history-earlier]") &&
        document.activeElement === button ? button.closest(".history") : null;
    });
    document.body.addEventListener("htmx:afterSettle", function () {
      if (!earlierIn) return;
      (earlierIn.querySelector("[data-history-earlier]") || earlierIn).focus({ preventScroll: true });
      earlierIn = null;
    });

    var first = document.querySelector("[data-pane]");
    if (first) showPane(first.getAttribute("data-pane"));
  });

  function markCurrent() {
    var id = activePaneId();
    Array.prototype.forEach.call(document.querySelectorAll("#task-list [data-conversation]"), function (item) {
      item.classList.toggle("current", item.getAttribute("data-conversation") === id);
    });
  }
})();
