package cli_test

import (
	"context"
	"strings"
	"testing"

	"stagehand/internal/cli"
	"stagehand/internal/lab"
)

// Descriptions, owners and event details reach the terminal with their
// control characters escaped (L4: config show printed a raw ESC [2J and
// an OSC title sequence). The fake lab stores what it is given, as a
// daemon from before the lab refused such text would have.
func TestTablesEscapeControlCharacters(t *testing.T) {
	e := newEnv(t)
	// \u009b is the one-character CSI of C1; invalid UTF-8 does not get
	// this far (JSON turns it into U+FFFD), printable() handles it anyway.
	hostile := "\x1b[2J\x1b]0;owned\x07\r\nFORGED\x00\u009b31m\u200b"
	if _, err := e.fake.CreateConfig(context.Background(), lab.ConfigSpec{
		Name: "esc1", Description: hostile, Owner: "Zoë \x1b[32m",
		VMs: []lab.VMSpec{{Name: "vm1", Template: "tmpl"}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "show", "esc1"}, {"config", "list"}} {
		out, errOut, code := e.run(args...)
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
