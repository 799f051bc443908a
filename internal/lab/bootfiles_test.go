package lab_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/hostlink"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// TestKernelBootTemplateMoves moves a configuration whose template boots
// a kernel to a host that lacks the template's boot files: the move pulls
// the kernel and the initrd by their hashes recorded at import, and a
// kernel damaged on the only host holding it is refused (nothing is left
// on the adopter, the configuration stays home).
func TestKernelBootTemplateMoves(t *testing.T) {
	in, h1, h2 := twoHosts(t)
	ctx := context.Background()
	src := t.TempDir()
	kernel, initrd := filepath.Join(src, "vmlinuz"), filepath.Join(src, "initrd")
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("kernel "), 40000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, bytes.Repeat([]byte("initrd "), 9000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Templates.Import(ctx, lab.TemplateSpec{Name: "kern", Disks: []string{makeImage(t, 8)},
		Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"}); err != nil {
		t.Fatal(err)
	}
	var tm *store.Template
	if err := in.db.View(ctx, func(tx store.Tx) error {
		var err error
		tm, err = tx.Templates().Get("kern")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, sum string }{{tm.Kernel, tm.KernelSHA256}, {tm.Initrd, tm.InitrdSHA256}} {
		sum, _, err := hostlink.HashFile(ctx, filepath.Join(in.dirs["h1"], f.path))
		if err != nil {
			t.Fatal(err)
		}
		if f.sum != sum {
			t.Errorf("import recorded sha256 %q for %s, the file hashes to %s", f.sum, f.path, sum)
		}
	}
	if _, err := h1.Configs.Create(ctx, lab.ConfigSpec{Name: "k", VMs: []lab.VMSpec{{Name: "vm", Template: "kern"}}}); err != nil {
		t.Fatal(err)
	}

	// The only copy of the kernel is damaged (same size, other bytes):
	// the adopter refuses it and keeps nothing.
	onH1 := filepath.Join(in.dirs["h1"], tm.Kernel)
	good, err := os.ReadFile(onH1)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[100] ^= 0xff
	writeOver(t, onH1, bad)
	_, err = h1.Deployments.Move(ctx, "k", "h2")
	if !errors.Is(err, hostlink.ErrHashMismatch) {
		t.Fatalf("move with a damaged kernel: %v, want a hash mismatch", err)
	}
	if c := in.config("k"); c.Host != "h1" {
		t.Errorf("after the refused move the home is %q", c.Host)
	}
	for _, p := range []string{tm.Kernel, tm.Initrd, in.topOf("k")} {
		if _, err := os.Stat(filepath.Join(in.dirs["h2"], p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("h2 kept %s of the refused move: %v", p, err)
		}
	}

	writeOver(t, onH1, good)
	if _, err := h1.Deployments.Move(ctx, "k", "h2"); err != nil {
		t.Fatal(err)
	}
	if c := in.config("k"); c.Host != "h2" {
		t.Fatalf("after the move the home is %q", c.Host)
	}
	for _, f := range []struct{ path, sum string }{{tm.Kernel, tm.KernelSHA256}, {tm.Initrd, tm.InitrdSHA256}} {
		sum, _, err := hostlink.HashFile(ctx, filepath.Join(in.dirs["h2"], f.path))
		if err != nil || sum != f.sum {
			t.Errorf("h2's %s: sha256 %s (%v), want %s", f.path, sum, err, f.sum)
		}
	}
	pulls := strings.Join(in.hosts.Pulls, "\n")
	for _, p := range []string{tm.Kernel, tm.Initrd} {
		if !strings.Contains(pulls, "h2 <- h1 "+p+" ") {
			t.Errorf("pulls:\n%s\nwant %s pulled from h1", pulls, p)
		}
	}
	// It deploys on its new home, which boots the pulled kernel.
	v, err := h2.Deployments.Deploy(ctx, "k", lab.DeployOptions{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Host != "h2" || v.State != "deployed" {
		t.Errorf("deployed on %q (%s)", v.Host, v.State)
	}
	if got := in.rt["h2"].Hypervisor.Running(); len(got) != 1 {
		t.Errorf("running on h2: %v", got)
	}
}

// writeOver replaces the contents of a read-only file.
func writeOver(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
}
