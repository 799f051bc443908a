package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// TestHostCredential: the first start makes DATA/host.secret (0600)
// whose secret the returned hash is of; the next start reads the same
// one; a renamed host gets a new one naming it.
func TestHostCredential(t *testing.T) {
	dir, log := t.TempDir(), slog.New(slog.DiscardHandler)
	cred, hash, err := hostCredential(dir, "a", log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, HostSecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host.secret: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	host, secret, err := hostlink.ParseCredential(cred)
	if err != nil || host != "a" || string(hostlink.HashSecret(secret)) != string(hash) {
		t.Fatalf("credential of %q (%v): hash does not match its secret", host, err)
	}
	again, hash2, err := hostCredential(dir, "a", log)
	if err != nil || again != cred || string(hash2) != string(hash) {
		t.Fatalf("second start: %v; same credential = %v", err, again == cred)
	}
	renamed, _, err := hostCredential(dir, "b", log)
	if host, _, _ := hostlink.ParseCredential(renamed); err != nil || host != "b" {
		t.Fatalf("renamed host: %v, credential names %q", err, host)
	}
}

// TestStoreLayersServePulls: the daemon's layer server, over a real
// store, lets a peer pull a frozen layer by its hash and the top of an
// undeployed configuration, and refuses the top of a deployed one
// (conflict) and a hash it does not hold (not found).
func TestStoreLayersServePulls(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("layers/base.qcow2", "frozen bytes")
	write("layers/top-idle.qcow2", "idle top")
	write("layers/top-busy.qcow2", "busy top")
	sum, size, err := hostlink.HashFile(ctx, filepath.Join(dir, "layers/base.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	var idleTop, busyTop int64
	err = st.Update(ctx, func(tx store.Tx) error {
		base := &store.Layer{Path: "layers/base.qcow2", Frozen: true, SHA256: sum, Size: size}
		if err := tx.Layers().Create(base); err != nil {
			return err
		}
		for _, c := range []struct {
			name, state, top string
			id               *int64
		}{{"idle", store.StateUndeployed, "layers/top-idle.qcow2", &idleTop}, {"busy", store.StateDeployed, "layers/top-busy.qcow2", &busyTop}} {
			top := &store.Layer{Path: c.top, ParentID: base.ID}
			if err := tx.Layers().Create(top); err != nil {
				return err
			}
			*c.id = top.ID
			cfg := &store.Config{Name: c.name, State: c.state, VMs: []store.VM{{Name: "v", CPUs: 1, MemoryMiB: 64, State: "stopped",
				Disks: []store.Disk{{Index: 0, TopLayerID: top.ID}}}}}
			if err := tx.Configs().Create(cfg); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, peerHash, _ := hostlink.NewCredential("peer")
	verifier := hostlink.VerifierFunc(func(ctx context.Context, host string) ([]byte, error) {
		if host == "peer" {
			return peerHash, nil
		}
		return nil, errdefs.NotFound("host %q", host)
	})
	srv := httptest.NewServer(hostlink.NewServer(dir, storeLayers{store: st, dataDir: dir}, verifier, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)

	// The peer's side: its own data dir and credential.
	peerCred, hash, _ := hostlink.NewCredential("peer")
	peerHash = hash
	puller, err := hostlink.NewPuller(t.TempDir(), peerCred, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer puller.Close()
	here := hostlink.Peer{Name: "here", URL: srv.URL}
	if n, err := puller.Pull(ctx, here, sum, "layers/base.qcow2", nil); err != nil || n != size {
		t.Fatalf("pull frozen layer: %d bytes, %v; want %d", n, err, size)
	}
	if _, _, err := puller.PullTop(ctx, here, idleTop, "layers/top-idle.qcow2", nil); err != nil {
		t.Fatalf("pull the undeployed configuration's top: %v", err)
	}
	_, _, err = puller.PullTop(ctx, here, busyTop, "layers/top-busy.qcow2", nil)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("pull the deployed configuration's top: %v, want a conflict", err)
	}
	other := "0000000000000000000000000000000000000000000000000000000000000000"
	if _, err := puller.Pull(ctx, here, other, "layers/other.qcow2", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("pull a hash nobody holds: %v, want not found", err)
	}
}
