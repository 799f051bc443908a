package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/cli"
)

// realDaemon serves the API over an empty real lab.
func realDaemon(t *testing.T) string {
	t.Helper()
	srv, _ := apitest.Serve(t, apitest.New(t))
	return srv.URL
}

// TestTemplateImportSniffsTheFormat: the fake.qcow2 is refused
// through the whole stack with the reason on one line and exit code 2;
// --format raw takes a raw image named .qcow2.
func TestTemplateImportSniffsTheFormat(t *testing.T) {
	url := realDaemon(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake.qcow2")
	os.WriteFile(fake, []byte("this is not a disk image"), 0o644)
	_, stderr, code := runCLI(url, "template", "import", "t1", "--disk", fake)
	if code != cli.ExitUsage || !strings.Contains(stderr, "is not a qcow2 image: it starts with text") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("import of fake.qcow2: exit %d, stderr %q; want exit %d and one line saying it starts with text", code, stderr, cli.ExitUsage)
	}
	raw := filepath.Join(dir, "raw.qcow2")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(url, "template", "import", "t2", "--disk", raw); code != cli.ExitUsage || !strings.Contains(stderr, "--format raw") {
		t.Errorf("raw image named .qcow2: exit %d, stderr %q; want refused with a hint at --format raw", code, stderr)
	}
	if out, stderr, code := runCLI(url, "template", "import", "t2", "--disk", raw, "--format", "raw"); code != 0 {
		t.Errorf("--format raw: exit %d, %s %s", code, out, stderr)
	}
}

// TestTemplateImportRefusesTheFormatFirst: an unknown --format is a usage
// error (exit 2) said before any file is read: the disk named does not
// exist, yet the message is the format's, not the missing file's, and no
// request reaches the daemon.
func TestTemplateImportRefusesTheFormatFirst(t *testing.T) {
	e := newEnv(t)
	missing := filepath.Join(t.TempDir(), "a.img")
	before := e.calls.Load()
	_, stderr, code := e.run("template", "import", "t2", "--disk", missing, "--format", "vmdk")
	if code != cli.ExitUsage || !strings.Contains(stderr, `format "vmdk" is not raw or qcow2`) || strings.Contains(stderr, "a.img") {
		t.Errorf("exit %d, stderr %q; want exit %d naming the format, not the file", code, stderr, cli.ExitUsage)
	}
	if n := e.calls.Load() - before; n != 0 {
		t.Errorf("%d requests reached the daemon", n)
	}
}
