// Switchboard web chat widget. Embed with
//   <script src="https://<switchboard>/webchat/widget.js"
//           data-channel="https://<switchboard>/webchat/<tenant>/<channel>" async></script>
// No dependencies, no build step. The visitor's token and the messages not
// yet acknowledged are kept in localStorage, so a reload or a lost
// connection loses nothing: unacknowledged messages are sent again (the
// server stores each id once) and the conversation is sent back on connect.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__switchboardChat) { return; }
  window.__switchboardChat = true;
  var channelUrl = new URL(script.getAttribute("data-channel") || "", script.src);
  var socketUrl = channelUrl.href.replace(/^http/, "ws").replace(/\/$/, "") + "/ws";
  var storeKey = "switchboard-chat:" + channelUrl.pathname;

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(state)); } catch (e) { /* private mode: memory only */ }
  }
  function randomId(bytes) {
    var values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.prototype.map.call(values, function (v) { return ("0" + v.toString(16)).slice(-2); }).join("");
  }

  var state = load();
  if (!state.visitor) { state.visitor = randomId(24); }
  state.pending = state.pending || [];
  save();

  // --- the page parts, built with textContent only ---
  var root = document.createElement("div");
  root.id = "switchboard-chat";
  root.setAttribute("style", "position:fixed;right:1rem;bottom:1rem;z-index:2147483000;font:14px/1.4 system-ui,sans-serif");
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "Chat with us";
  button.setAttribute("style", "padding:.7rem 1.1rem;border:0;border-radius:2rem;background:#2457d6;color:#fff;cursor:pointer");
  var panel = document.createElement("section");
  panel.setAttribute("aria-label", "Chat");
  panel.setAttribute("style", "display:none;width:20rem;height:26rem;background:#fff;border-radius:.6rem;box-shadow:0 6px 24px rgba(0,0,0,.2);flex-direction:column;overflow:hidden");
  var title = document.createElement("header");
  title.setAttribute("style", "padding:.6rem .8rem;background:#2457d6;color:#fff;font-weight:600");
  title.textContent = "Chat";
  var status = document.createElement("div");
  status.id = "switchboard-chat-status";
  status.setAttribute("style", "padding:.2rem .8rem;font-size:12px;color:#667");
  status.textContent = "connecting…";
  var log = document.createElement("ol");
  log.id = "switchboard-chat-log";
  log.setAttribute("aria-live", "polite");
  log.setAttribute("style", "flex:1;overflow-y:auto;list-style:none;margin:0;padding:.6rem .8rem");
  var form = document.createElement("form");
  form.setAttribute("style", "display:flex;border-top:1px solid #dde");
  var input = document.createElement("input");
  input.id = "switchboard-chat-input";
  input.setAttribute("aria-label", "Your message");
  input.setAttribute("maxlength", "4096");
  input.setAttribute("autocomplete", "off");
  input.setAttribute("style", "flex:1;border:0;padding:.7rem;font:inherit");
  input.placeholder = "Type a message…";
  var send = document.createElement("button");
  send.id = "switchboard-chat-send";
  send.type = "submit";
  send.textContent = "Send";
  send.setAttribute("style", "border:0;background:none;color:#2457d6;font-weight:600;padding:0 .9rem;cursor:pointer");
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(title);
  panel.appendChild(status);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(button);

  function open(show) {
    panel.style.display = show ? "flex" : "none";
    button.textContent = show ? "Close chat" : "Chat with us";
    if (show) { input.focus(); }
  }
  button.addEventListener("click", function () { open(panel.style.display === "none"); });

  var shown = {};
  function bubble(key, text, mine, note) {
    var item = shown[key];
    if (!item) {
      item = document.createElement("li");
      item.setAttribute("style", "margin:.3rem 0;display:flex;flex-direction:column;align-items:" + (mine ? "flex-end" : "flex-start"));
      var body = document.createElement("span");
      body.className = "text";
      body.setAttribute("style", "max-width:80%;padding:.4rem .65rem;border-radius:.8rem;white-space:pre-wrap;background:" + (mine ? "#2457d6;color:#fff" : "#eef0f5"));
      var small = document.createElement("small");
      small.setAttribute("style", "color:#889;font-size:11px");
      item.appendChild(body);
      item.appendChild(small);
      item.setAttribute("data-direction", mine ? "inbound" : "outbound");
      log.appendChild(item);
      shown[key] = item;
    }
    item.firstChild.textContent = text;
    item.lastChild.textContent = note || "";
    log.scrollTop = log.scrollHeight;
    return item;
  }

  var socket = null;
  var retryMs = 1000;
  function transmit(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); }
  }
  function connect() {
    status.textContent = "connecting…";
    socket = new WebSocket(socketUrl);
    socket.onopen = function () {
      retryMs = 1000;
      transmit({ type: "hello", visitor: state.visitor, name: script.getAttribute("data-name") || "" });
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "ready") {
        status.textContent = "online";
        if (frame.title) { title.textContent = frame.title; }
        if (frame.greeting && !shown.greeting) { bubble("greeting", frame.greeting, false, ""); }
        state.pending.forEach(function (message) { transmit({ type: "message", id: message.id, text: message.text }); });
      } else if (frame.type === "ack") {
        state.pending = state.pending.filter(function (message) { return message.id !== frame.id; });
        save();
        if (shown[frame.id]) { shown[frame.id].lastChild.textContent = "sent"; }
      } else if (frame.type === "message") {
        if (frame.direction === "inbound") {
          bubble(frame.client_id || frame.name, frame.text, true, "sent");
        } else {
          bubble(frame.name, frame.text, false, frame.author || "");
          transmit({ type: "delivered", name: frame.name });
        }
      } else if (frame.type === "closed") {
        status.textContent = "this conversation has ended; write again to start a new one";
      } else if (frame.type === "error") {
        status.textContent = frame.reason;
      }
    };
    socket.onclose = function () {
      status.textContent = "reconnecting…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var message = { id: randomId(12), text: text };
    state.pending.push(message);
    save();
    bubble(message.id, text, true, "sending…");
    transmit({ type: "message", id: message.id, text: text });
    input.value = "";
  });

  state.pending.forEach(function (message) { bubble(message.id, message.text, true, "sending…"); });
  function start() {
    document.body.appendChild(root);
    if (script.getAttribute("data-open") === "true") { open(true); }
    connect();
  }
  if (document.body) { start(); } else { document.addEventListener("DOMContentLoaded", start); }
})();
