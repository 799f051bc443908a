// Stagehand VM console page: the serial console in xterm.js and the
// graphical one in noVNC, each over a websocket of the API on this origin.
//
// Serial websocket (…/serial/ws): binary frames carry the console's bytes
// both ways (output replayed from the VM's ring first); text frames carry
// JSON control messages: the server sends {"type":"status",…} with who
// holds the keyboard, the page sends {"type":"take"} to take it. Input
// from a viewer that does not hold the keyboard is refused by the server.
// Graphical websocket (…/vnc/ws): the VM's raw VNC stream, which noVNC
// speaks. Both reconnect with backoff when the connection drops.
import RFB from "./vendor/novnc/core/rfb.js";

const root = document.querySelector("[data-console]");
const statusBox = root.querySelector("[data-console-status]");
const errorBox = root.querySelector("[data-error]");
const wsURL = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

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
  const ws = new WebSocket(wsURL(root.dataset.serialWs));
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

const vnc = { rfb: null, tries: 0, keyboard: false };

function connectVNC() {
  const target = root.querySelector("[data-vnc]");
  target.replaceChildren();
  const rfb = new RFB(target, wsURL(root.dataset.vncWs), { shared: true });
  rfb.scaleViewport = true;
  rfb.viewOnly = !vnc.keyboard;
  vnc.rfb = rfb;
  rfb.addEventListener("connect", () => { vnc.tries = 0; setError(""); setStatus(vnc.keyboard ? "graphical: you type" : "graphical: watching"); });
  rfb.addEventListener("disconnect", () => {
    if (vnc.rfb !== rfb) return;
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
  // A UART takes a few hundred bytes at a time: type in small pieces.
  const bytes = encoder.encode(text.replace(/\r?\n/g, "\r"));
  for (let i = 0; i < bytes.length; i += 64) {
    sendSerial(bytes.slice(i, i + 64));
    await new Promise((r) => setTimeout(r, 20));
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
      if (tab === "vnc" && vnc.rfb) vnc.rfb.sendCtrlAltDel();
      else sendKeys(["ctrl-alt-delete"]);
      break;
    case "console.reconnect":
      if (tab === "serial") { if (serial.ws) serial.ws.close(); }
      else { const old = vnc.rfb; vnc.rfb = null; if (old) old.disconnect(); connectVNC(); }
      break;
  }
});

// sendKeys presses key chords through the API (the serial console has no
// Ctrl-Alt-Del of its own: it goes to the VM's keyboard).
async function sendKeys(chords) {
  try {
    const res = await fetch(root.dataset.keys, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ keys: chords }),
    });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
      setError(msg);
    }
  } catch (e) {
    setError("the daemon cannot be reached: " + e.message);
  }
}

const pasteDialog = document.getElementById("dlg-console-paste");
pasteDialog.querySelector("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = pasteDialog.querySelector('[data-field="text"]').value;
  pasteDialog.close();
  if (tab === "vnc") await typeVNC(text); else await typeSerial(text);
});

connectSerial();
show("serial");
