package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/cli"
)

// TestManPages: `stagehand man DIR` writes one page per visible command,
// rendered by man(1) with the command's help, the pages' examples kept as
// blocks, no hidden command and nothing of the building host's environment
// (its STAGEHAND_SERVER, its data dir), dated SOURCE_DATE_EPOCH.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	env := map[string]string{"STAGEHAND_SERVER": "http://10.9.9.9:1", "STAGEHAND_DATA_DIR": "/srv/elsewhere"}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000") // read by cobra's man generator itself
	var out, errw bytes.Buffer
	if code := cli.Run(context.Background(), []string{"man", dir}, deps(nil, &out, &errw, func(k string) string { return env[k] })); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errw.String())
	}
	for _, page := range []string{"stagehand.1", "stagehand-serve.1", "stagehand-config-deploy.1", "stagehand-completion.1", "stagehand-vm-console-link-create.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Errorf("no page %s: %v", page, err)
		}
	}
	for _, hidden := range []string{"stagehand-man.1", "stagehand-__complete.1"} {
		if _, err := os.Stat(filepath.Join(dir, hidden)); err == nil {
			t.Errorf("a page for the hidden command: %s", hidden)
		}
	}
	all, err := exec.Command("sh", "-c", "cat "+filepath.Join(dir, "*.1")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"10.9.9.9", "/srv/elsewhere", "Auto generated"} {
		if bytes.Contains(all, []byte(leak)) {
			t.Errorf("the pages hold %q", leak)
		}
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Fatalf("man(1) renders the pages here (scripts/install-deps.sh installs man-db): %v", err)
	}
	cmd := exec.Command("man", "-l", filepath.Join(dir, "stagehand-config-create.1"))
	cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat")
	page, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l: %v", err)
	}
	text := string(page)
	for _, want := range []string{
		"STAGEHAND-CONFIG-CREATE(1)", "Stagehand Manual", "Nov 2023",
		"Create a configuration of VMs made from templates",
		// An example of the help stays on its own line.
		"\n         --vm web=debian,net=lan,ip=dhcp      one NIC, DHCP\n",
		"--storage-lease",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("man stagehand-config-create lacks %q:\n%s", want, text)
		}
	}
}
