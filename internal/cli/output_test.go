package cli_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"stagehand/internal/api/wire"
	"stagehand/internal/cli"
)

// Descriptions, owners and event details reach the terminal with their
// control characters escaped (L4: config show printed a raw ESC [2J and
// an OSC title sequence). Today's lab refuses such text, so the daemon
// here is a stand-in that answers what a daemon from before that rule
// would have stored: the CLI must not trust the daemon's text.
func TestTablesEscapeControlCharacters(t *testing.T) {
	// \u009b is the one-character CSI of C1; invalid UTF-8 does not get
	// this far (JSON turns it into U+FFFD), printable() handles it anyway.
	hostile := "\x1b[2J\x1b]0;owned\x07\r\nFORGED\x00\u009b31m\u200b"
	cfg := wire.Config{Name: "esc1", Kind: wire.KindConfig, State: "undeployed", Description: hostile, Owner: "Zoë \x1b[32m",
		VMs: []wire.VM{{Name: "vm1", State: wire.VMStopped}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body any = cfg
		if r.URL.Path == wire.APIPrefix+"/configs" {
			body = []wire.Config{cfg}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	for _, args := range [][]string{{"config", "show", "esc1"}, {"config", "list"}} {
		out, errOut, code := runCLI(srv.URL, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		for _, bad := range []string{"\x1b", "\x07", "\r", "\x00", "\u009b", "\u200b", "\nFORGED"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v prints %q raw:\n%q", args, bad, out)
			}
		}
		for _, want := range []string{`\x1b[2J\x1b]0;owned\a\r\nFORGED\x00\u009b31m\u200b`, `Zoë \x1b[32m`} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: want %s in\n%s", args, want, out)
			}
		}
	}
}

// printable keeps printable text, escapes the rest, and escapes invalid
// UTF-8 byte by byte.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcödé ✓":   "plain text, ünïcödé ✓",
		"tab\there":               `tab\there`,
		"bell\a del\x7f":          `bell\a del\x7f`,
		"bad \xff\xfe utf8":       `bad \xff\xfe utf8`,
		"zero\u200bwidth":         `zero\u200bwidth`,
		"replacement \ufffd kept": "replacement \ufffd kept",
	} {
		if got := cli.Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
