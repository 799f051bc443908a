package wire

import "time"

// The consoles of a running VM, for browsers (the web console's xterm.js
// and noVNC) and tools. Every route below answers JSON errors before any
// upgrade: 404 unknown configuration or VM, 409 VM not running, 503 its
// console or screen unreachable, 401/403 as any route; a websocket whose
// Origin is not the server's own is refused 403. All take the action
// config.console, or a console link (ConsoleLinkParam) of that very VM.
//
// GET /configs/{name}/vms/{vm}/serial/ws — websocket, subprotocol
// ConsoleSubprotocol ("binary") when the client offers it:
//   - binary frames, both ways: the serial console's raw bytes. The
//     first frame(s) from the server replay the console's last output (up
//     to 64 KiB, starting at a line), then live output follows. Input
//     reaches the guest only from the viewer holding the keyboard;
//     otherwise the server answers a ConsoleError "not_holder".
//   - text frames: JSON ConsoleControl from the client ("take", "type",
//     "resize": ignored on a serial line) and ConsoleStatus / ConsoleError
//     from the server. A status comes on attach and whenever the holder or
//     the number of viewers changes.
//   - the first viewer, or whoever sends "take", holds the keyboard; the
//     CLI's `vm console` (GET .../console) always takes it when it attaches.
//   - the server pings every 20 s; a viewer that falls 256 KiB behind the
//     output is closed with code 1008 and the reason; when the VM stops the
//     server closes with 1000 and "the VM's console closed (the VM
//     stopped)"; when the daemon shuts down, 1001.
//
// GET /configs/{name}/vms/{vm}/vnc/ws — websocket, subprotocol "binary"
// (what noVNC asks for): binary frames are the raw RFB stream of QEMU's VNC
// server both ways (no password: the route's authorization is the gate;
// shared, so any number of viewers at once). Text frames from the client
// are ConsoleControl "keys" (e.g. ["ctrl-alt-del"]) and "type" (printable
// ASCII, newline and tab, US layout, at most 4096 bytes); the server
// answers a refused one with a ConsoleError. Pings every 20 s.
//
// GET /configs/{name}/vms/{vm}/screen.png — the screen as a PNG: a
// screendump at most every 2 s per VM, the last one meanwhile (header
// ScreenTakenHeader says when it was taken). Cache-Control: no-store.
//
// POST /configs/{name}/vms/{vm}/console-links ConsoleLinkRequest → 201
// ConsoleLink (action config.share; the caller must be a user of the
// directory, not the socket's root, and not a workspace-restricted token);
// GET /console-links → []ConsoleLink (the caller's own; everyone's for a
// system administrator); DELETE /console-links/{id} → 204 (its creator or
// a system administrator; anyone else's: 404). Like tokens, these two take
// status.read, which every user has.

// ConsoleSubprotocol is the websocket subprotocol of both consoles: raw
// bytes in binary frames.
const ConsoleSubprotocol = "binary"

// ConsoleLinkParam is the query parameter that carries a console link's
// token on the serial, VNC and screen routes of its VM:
// .../serial/ws?console_link=sht_….
const ConsoleLinkParam = "console_link"

// ScreenTakenHeader is when a screen.png was taken (RFC 3339, UTC).
const ScreenTakenHeader = "X-Stagehand-Screen-Taken"

// Console control message types (ConsoleControl.Type and the server's).
const (
	ConsoleTake   = "take"   // client → server: hold the keyboard (serial)
	ConsoleType   = "type"   // client → server: type Text
	ConsoleResize = "resize" // client → server: Cols×Rows; a serial line ignores it
	ConsoleKeys   = "keys"   // client → server: press Keys (VNC)
	ConsoleStatus = "status" // server → client: ConsoleStatusMessage
	ConsoleErr    = "error"  // server → client: ConsoleErrorMessage
)

// ConsoleControl is a text frame from a console client.
type ConsoleControl struct {
	Type string `json:"type"`
	// Keys are key chords for "keys": keys joined by "-" ("ctrl-alt-del",
	// "f2", "alt-f1"); names are QEMU's key codes (ctrl, alt, shift,
	// delete, esc, tab, ret, f1…f12, a…z, 0…9, …) or aliases (del, enter,
	// escape, win, pageup, pagedown).
	Keys []string `json:"keys,omitempty"`
	Text string   `json:"text,omitempty"` // for "type"
	Cols int      `json:"cols,omitempty"` // for "resize"
	Rows int      `json:"rows,omitempty"`
}

// ConsoleStatusMessage is the server's "status" text frame on the serial
// console.
type ConsoleStatusMessage struct {
	Type    string `json:"type"`   // "status"
	Holder  string `json:"holder"` // who holds the keyboard; "" nobody
	Viewers int    `json:"viewers"`
	YouHold bool   `json:"you_hold"`
}

// ConsoleErrorMessage is the server's "error" text frame: a control or an
// input it refused; the session goes on.
type ConsoleErrorMessage struct {
	Type  string `json:"type"` // "error"
	Code  string `json:"code"` // "not_holder", "invalid", "unavailable"
	Error string `json:"error"`
}

// ConsoleLinkRequest is the body of POST .../console-links.
type ConsoleLinkRequest struct {
	// ExpiresIn is a duration ("30m", "8h", "7d"); "" for 1 hour; at most
	// 30 days.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// ConsoleLink is a time-limited, revocable link to one VM's consoles.
// Token and URL are given once, when it is made.
type ConsoleLink struct {
	ID        string    `json:"id"`
	Config    string    `json:"config"`
	VM        string    `json:"vm"`
	User      string    `json:"user"`  // who made it: the link acts with their rights
	State     string    `json:"state"` // Token*
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at"` // zero: not revoked
	// Token is the link's secret (only in the answer to its creation).
	Token string `json:"token,omitempty"`
	// URL is the web console's page of the VM with the token in its query
	// (only in the answer to its creation): /console/{config}/{vm}?console_link=TOKEN,
	// relative to the server.
	URL string `json:"url,omitempty"`
}
