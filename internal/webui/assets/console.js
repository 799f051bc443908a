// Stagehand VM console page: the serial console in xterm.js and the
// graphical one in noVNC, each over a websocket of the API on this origin.
//
// The protocols are the API's (internal/api/wire/console.go). Serial
// websocket (…/serial/ws, subprotocol "binary"): binary frames carry the
// console's bytes both ways (the last output replayed first); text frames
// carry JSON controls: the server's "status" (who holds the keyboard) and
// "error", the page's "take" and "type". Graphical websocket (…/vnc/ws):
// the VM's raw RFB stream, which noVNC speaks. Both reconnect with backoff
// when the connection drops.
//
// On a console link's page (/console/CONFIG/VM?console_link=…) the visitor
// has no session: the link itself goes with every request to the API
// (websockets and screen.png), which accepts it on this VM's consoles only.
import RFB from "./vendor/novnc/core/rfb.js";

const root = document.querySelector("[data-console]");
const statusBox = root.querySelector("[data-console-status]");
const errorBox = root.querySelector("[data-error]");
const consoleLink = new URLSearchParams(location.search).get("console_link");
// withLink adds the page's console link, if any, to an API path.
function withLink(path) {
  if (!consoleLink) return path;
  return path + (path.includes("?") ? "&" : "?") + "console_link=" + encodeURIComponent(consoleLink);
}
const wsURL = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + withLink(path);

function setStatus(text) { statusBox.textContent = text; }
function setError(text) { errorBox.textContent = text || ""; }

// backoff returns the next wait before a reconnect: 0.5 s doubling to 15 s.
function backoff(n) { return Math.min(500 * 2 ** n, 15000); }

// ---- serial ----------------------------------------------------------------

const term = new window.Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14 });
const fit = new window.FitAddon.FitAddon();
term.loadAddon(fit);
term.open(root.querySelector("[data-term]"));
fit.fit();
window.addEventListener("resize", () => fit.fit());

const serial = { ws: null, tries: 0, holder: false, closed: false };
const encoder = new TextEncoder();

function connectSerial() {
  const ws = new WebSocket(wsURL(root.dataset.serialWs), ["binary"]);
  ws.binaryType = "arraybuffer";
  serial.ws = ws;
  setStatus("serial: connecting…");
  ws.onopen = () => { serial.tries = 0; setError(""); setStatus("serial: connected"); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (m.type === "status") {
        serial.holder = !!m.you_hold;
        setStatus(m.you_hold ? "serial: you hold the keyboard" :
          "serial: watching" + (m.holder ? ` (${m.holder} holds the keyboard)` : ""));
      } else if (m.type === "error" && m.error) {
        setError(m.error);
      }
      return;
    }
    term.write(new Uint8Array(ev.data));
  };
  ws.onclose = (ev) => {
    if (serial.closed) return;
    const wait = backoff(serial.tries++);
    setStatus(`serial: disconnected${ev.reason ? " (" + ev.reason + ")" : ""}; reconnecting in ${Math.round(wait / 1000)} s`);
    setTimeout(connectSerial, wait);
  };
}

function sendSerial(bytes) {
  if (serial.ws && serial.ws.readyState === WebSocket.OPEN) serial.ws.send(bytes);
}

term.onData((data) => sendSerial(encoder.encode(data)));

// ---- graphical -------------------------------------------------------------

const vnc = { rfb: null, tries: 0, keyboard: false, connected: false, pending: null };

function connectVNC() {
  const target = root.querySelector("[data-vnc]");
  target.replaceChildren();
  const rfb = new RFB(target, wsURL(root.dataset.vncWs), { shared: true });
  rfb.scaleViewport = true;
  rfb.viewOnly = !vnc.keyboard;
  vnc.rfb = rfb;
  rfb.addEventListener("connect", () => {
    vnc.tries = 0;
    vnc.connected = true;
    setError("");
    if (tab === "vnc") setStatus(vnc.keyboard ? "graphical: you type" : "graphical: watching");
    if (vnc.pending) { const f = vnc.pending; vnc.pending = null; f(); }
  });
  rfb.addEventListener("disconnect", () => {
    if (vnc.rfb !== rfb) return;
    vnc.connected = false;
    const wait = backoff(vnc.tries++);
    setStatus(`graphical: disconnected; reconnecting in ${Math.round(wait / 1000)} s`);
    setTimeout(() => { if (vnc.rfb === rfb) connectVNC(); }, wait);
  });
}

// ---- tabs and toolbar --------------------------------------------------------

let tab = "serial";

function show(name) {
  tab = name;
  root.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === name)));
  root.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== name; });
  if (name === "vnc" && !vnc.rfb) connectVNC();
  if (name === "serial") { fit.fit(); term.focus(); }
}

// US-layout keysyms: printable ASCII is its own keysym; these need Shift.
const shifted = '~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const XK_Shift_L = 0xffe1, XK_Return = 0xff0d, XK_Tab = 0xff09;

async function typeVNC(text) {
  for (const ch of text) {
    const rfb = vnc.rfb;
    if (!rfb) return;
    if (ch === "\n") { rfb.sendKey(XK_Return, "Enter"); continue; }
    if (ch === "\t") { rfb.sendKey(XK_Tab, "Tab"); continue; }
    const code = ch.codePointAt(0);
    if (code < 0x20 || code > 0x7e) continue; // a US keyboard types ASCII only
    const shift = shifted.includes(ch);
    if (shift) rfb.sendKey(XK_Shift_L, "ShiftLeft", true);
    rfb.sendKey(code, null);
    if (shift) rfb.sendKey(XK_Shift_L, "ShiftLeft", false);
    await new Promise((r) => setTimeout(r, 15));
  }
}

async function typeSerial(text) {
  // The server types the text at the guest's pace ("type" control, at
  // most 4096 bytes each).
  if (!serial.ws || serial.ws.readyState !== WebSocket.OPEN) { setError("the serial console is not connected"); return; }
  for (let i = 0; i < text.length; i += 4096) {
    serial.ws.send(JSON.stringify({ type: "type", text: text.slice(i, i + 4096) }));
  }
}

root.addEventListener("click", (ev) => {
  const b = ev.target.closest("[data-action]");
  if (!b) return;
  switch (b.dataset.action) {
    case "console.serial": show("serial"); break;
    case "console.graphical": show("vnc"); break;
    case "console.take":
      if (tab === "serial") {
        if (serial.ws && serial.ws.readyState === WebSocket.OPEN) serial.ws.send(JSON.stringify({ type: "take" }));
        term.focus();
      } else {
        vnc.keyboard = true;
        if (vnc.rfb) { vnc.rfb.viewOnly = false; vnc.rfb.focus(); }
        setStatus("graphical: you type");
      }
      break;
    case "console.ctrl-alt-del":
      // The keys go to the VM's keyboard, which the graphical console
      // reaches (the serial line has none).
      if (vnc.rfb && vnc.connected) vnc.rfb.sendCtrlAltDel();
      else { vnc.pending = () => vnc.rfb.sendCtrlAltDel(); if (!vnc.rfb) connectVNC(); }
      break;
    case "console.reconnect":
      if (tab === "serial") { if (serial.ws) serial.ws.close(); }
      else { const old = vnc.rfb; vnc.rfb = null; if (old) old.disconnect(); connectVNC(); }
      break;
  }
});

const pasteDialog = document.getElementById("dlg-console-paste");
pasteDialog.querySelector("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = pasteDialog.querySelector('[data-field="text"]').value;
  pasteDialog.close();
  if (tab === "vnc") await typeVNC(text); else await typeSerial(text);
});

// Leaving the page closes both websockets, so they do not hold browser
// connections (or the keyboard) for a page that is gone; coming back from
// the back/forward cache opens them again.
window.addEventListener("pagehide", () => {
  serial.closed = true;
  if (serial.ws) serial.ws.close();
  const old = vnc.rfb;
  vnc.rfb = null;
  if (old) old.disconnect();
});
window.addEventListener("pageshow", (ev) => {
  if (!ev.persisted) return;
  serial.closed = false;
  serial.tries = 0;
  connectSerial();
  if (tab === "vnc") connectVNC();
});

connectSerial();
show("serial");
