package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/cli"
	"stagehand/internal/store"
)

// TestTemplateImportUploads: template import --disk/--kernel/--initrd
// sends the files (nothing of the client's path reaches the server, which
// keeps its own copies and no upload); --server-path names a file on the
// server, which a user with a token may not (exit 8, told to upload) and
// the administrator on the socket may only under an import directory.
func TestTemplateImportUploads(t *testing.T) {
	l := apitest.New(t)
	root, _ := apitest.Serve(t, l)
	strict, _ := apitest.ServeStrict(t, l)
	dir := t.TempDir()
	disk := l.Image(t, "client-disk.qcow2", 1<<30)
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	os.WriteFile(kernel, bytes.Repeat([]byte("k"), 5000), 0o600)
	os.WriteFile(initrd, bytes.Repeat([]byte("i"), 5000), 0o600)
	out, stderr, code := runCLI(strict.URL, "template", "import", "up", "--disk", disk, "--kernel", kernel, "--initrd", initrd,
		"--cmdline", "console=ttyS0", "--token-file", tokenFile(t, l.AdminToken(t)))
	if code != 0 {
		t.Fatalf("template import: exit %d: %s", code, stderr)
	}
	tm, err := l.Templates.Get(context.Background(), "up")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tm.Disks[0].Path, l.DataDir()) || !strings.HasPrefix(tm.Kernel, l.DataDir()) || strings.Contains(out, dir) {
		t.Errorf("template %+v, output %s", tm, out)
	}
	if got, _ := os.ReadFile(tm.Initrd); !bytes.Equal(got, bytes.Repeat([]byte("i"), 5000)) {
		t.Errorf("initrd differs")
	}
	if es, _ := os.ReadDir(filepath.Join(l.DataDir(), "uploads")); len(es) != 0 {
		t.Errorf("uploads left: %v", es)
	}

	// A user who may create templates in default/main (its admin): the
	// refusal is the file rule's, not the role's.
	u := l.User(t, "someone", false)
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get("default")
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, "main")
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: "admin"})
	}); err != nil {
		t.Fatal(err)
	}
	userToken := tokenFile(t, l.Token(t, "someone", apitest.TokenOptions{}))
	_, stderr, code = runCLI(strict.URL, "template", "import", "leak", "--disk", "/etc/shadow", "--format", "raw", "--server-path", "--token-file", userToken)
	if code != cli.ExitForbidden || !strings.Contains(stderr, "upload") {
		t.Errorf("--server-path /etc/shadow by a user: exit %d %q, want %d saying to upload", code, stderr, cli.ExitForbidden)
	}
	_, stderr, code = runCLI(root.URL, "template", "import", "leak", "--disk", "/etc/shadow", "--format", "raw", "--server-path")
	if code != cli.ExitForbidden || !strings.Contains(stderr, "import directory") {
		t.Errorf("--server-path /etc/shadow by root: exit %d %q, want %d (not under an import directory)", code, stderr, cli.ExitForbidden)
	}
	if _, stderr, code = runCLI(root.URL, "template", "import", "srv", "--disk", l.Image(t, "srv.qcow2", 1<<20), "--server-path"); code != 0 {
		t.Errorf("--server-path under the import dir by root: exit %d %s", code, stderr)
	}
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchiveExportDownloads: archive export writes FILE on this machine
// (0600, nothing else left in its directory), refuses an existing FILE
// without touching it, and archive import uploads it back.
func TestArchiveExportDownloads(t *testing.T) {
	e := newEnv(t)
	if _, stderr, code := e.run("archive", "create", "web", "arch"); code != 0 {
		t.Fatalf("archive create: exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "arch.tar")
	if out, stderr, code := e.run("archive", "export", "arch", bundle); code != 0 || strings.TrimSpace(out) != bundle {
		t.Fatalf("archive export: exit %d %q %s", code, out, stderr)
	}
	fi, err := os.Stat(bundle)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 1024 {
		t.Fatalf("bundle: %v %v", fi, err)
	}
	os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o600)
	if _, stderr, code := e.run("archive", "export", "arch", filepath.Join(dir, "keep")); code != cli.ExitConflict || !strings.Contains(stderr, "exists") {
		t.Errorf("export over an existing file: exit %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep")); string(b) != "mine" {
		t.Error("the existing file was changed")
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("%s holds %v, want the bundle and keep", dir, es)
	}
	if _, stderr, code := e.run("archive", "import", bundle, "--name", "copy", "--map-network", "lan=lan"); code != 0 {
		t.Fatalf("archive import: exit %d: %s", code, stderr)
	}
	a, err := e.lab.Archives.Get(context.Background(), "copy")
	if err != nil || !strings.Contains(a.Source, "upload arch.tar") {
		t.Errorf("imported archive %+v %v", a, err)
	}
}
