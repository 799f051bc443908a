package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/store"
)

// installation is labs on several hosts sharing one store, each with a
// fake runtime, linked by labtest.Hosts (file copies between their data
// dirs).
type installation struct {
	t     *testing.T
	db    store.Store
	hosts *labtest.Hosts
	labs  map[string]*lab.Service
	dirs  map[string]string
	rt    map[string]*labtest.Host
}

func newInstallation(t *testing.T, db store.Store) *installation {
	return &installation{t: t, db: db, hosts: &labtest.Hosts{}, labs: map[string]*lab.Service{},
		dirs: map[string]string{}, rt: map[string]*labtest.Host{}}
}

// twoHosts is the installation most move tests start from: hosts h1 and
// h2, 4096 MiB each, over a fresh store.
func twoHosts(t *testing.T) (in *installation, h1, h2 *lab.Service) {
	t.Helper()
	requireQemuImg(t)
	e := newEnv(t)
	in = newInstallation(t, e.db)
	h1 = in.host("h1", filepath.Join(t.TempDir(), "h1"), 4096, nil)
	h2 = in.host("h2", filepath.Join(t.TempDir(), "h2"), 4096, nil)
	return in, h1, h2
}

// host registers host name with memMiB of memory and 2 processors, and
// starts its lab on dir (with failAt).
func (in *installation) host(name, dir string, memMiB int, failAt func(op, step string) error) *lab.Service {
	in.t.Helper()
	return in.hostWith(name, dir, memMiB, func(o *lab.Options) { o.FailAt = failAt })
}

// hostWith is host with options set by opt.
func (in *installation) hostWith(name, dir string, memMiB int, opt func(*lab.Options)) *lab.Service {
	in.t.Helper()
	ctx := context.Background()
	now := time.Now()
	if err := in.db.Update(ctx, func(tx store.Tx) error {
		return tx.Hosts().Register(&store.Host{Name: name, AdvertiseURL: "http://127.0.0.1:1", MemoryMiB: memMiB, CPUs: 2, StartedAt: now, LastSeen: now})
	}); err != nil {
		in.t.Fatal(err)
	}
	rt := labtest.NewHost()
	jm := jobs.NewManager()
	in.t.Cleanup(jm.Close)
	o := lab.Options{DataDir: dir, Store: in.db, Disks: disk.New(), Jobs: jm, HostName: name,
		HostLink: in.hosts.Link(name)}
	rt.Use(&o)
	opt(&o)
	svc, err := lab.New(o)
	if err != nil {
		in.t.Fatal(err)
	}
	if err := svc.Recover(ctx); err != nil {
		in.t.Fatal(err)
	}
	in.hosts.Add(name, dir)
	in.hosts.Serve(name, svc.MoveEndpoints())
	in.labs[name], in.dirs[name], in.rt[name] = svc, dir, rt
	return svc
}

// base imports template "base" (one 8 MiB disk) on host h.
func (in *installation) base(h *lab.Service) {
	in.t.Helper()
	if _, err := h.Templates.Import(context.Background(), lab.TemplateSpec{Name: "base", Disks: []string{makeImage(in.t, 8)}}); err != nil {
		in.t.Fatal(err)
	}
}

// create makes configuration name on host h: one VM of template base.
func (in *installation) create(h *lab.Service, name string) {
	in.t.Helper()
	if _, err := h.Configs.Create(context.Background(), lab.ConfigSpec{Name: name, VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}}); err != nil {
		in.t.Fatal(err)
	}
}

// config reads a configuration's record.
func (in *installation) config(name string) *store.Config {
	in.t.Helper()
	var c *store.Config
	if err := in.db.View(context.Background(), func(tx store.Tx) error {
		var err error
		c, err = tx.Configs().Get(name)
		return err
	}); err != nil {
		in.t.Fatal(err)
	}
	return c
}

// topOf returns the path (relative to a data dir) of the top of the
// first disk of the configuration's first VM.
func (in *installation) topOf(name string) string {
	in.t.Helper()
	c := in.config(name)
	var path string
	if err := in.db.View(context.Background(), func(tx store.Tx) error {
		l, err := tx.Layers().Get(c.VMs[0].Disks[0].TopLayerID)
		if err == nil {
			path = l.Path
		}
		return err
	}); err != nil {
		in.t.Fatal(err)
	}
	return path
}

// layerFiles lists the qcow2 files (no temporary ones) in a host's layers.
func layerFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	es, _ := os.ReadDir(filepath.Join(dir, "layers"))
	for _, e := range es {
		st, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = st.Size()
	}
	return out
}

// TestPlacementWeighsMemoryAndHeldLayers deploys configurations over three
// hosts from the first one's lab: each goes where cluster.Place's rules
// put it (fits; fewest bytes to pull; most free memory; name), moving from
// h1 with only the layers the target lacks.
func TestPlacementWeighsMemoryAndHeldLayers(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := newInstallation(t, e.db)
	// The template's VMs take 256 MiB: h1 fits two, h2 three, h3 two.
	h1 := in.host("h1", filepath.Join(t.TempDir(), "h1"), 600, nil)
	in.host("h2", filepath.Join(t.TempDir(), "h2"), 800, nil)
	in.host("h3", filepath.Join(t.TempDir(), "h3"), 700, nil)
	ctx := context.Background()
	in.base(h1)
	for i := range 8 {
		name := fmt.Sprintf("c%d", i)
		in.create(h1, name)
	}
	// c0, c1 on h1 (it holds the chain); c2 to h2 (h2 and h3 would pull
	// the same bytes: h2 has more free memory), c3 and c4 to h2 (it holds
	// the base now, h3 would pull it), c5 and c6 to h3 (the only one with
	// room).
	wantHost := []string{"h1", "h1", "h2", "h2", "h2", "h3", "h3"}
	for i, want := range wantHost {
		name := fmt.Sprintf("c%d", i)
		v, err := h1.Deployments.Deploy(ctx, name, lab.DeployOptions{Explain: true})
		if err != nil {
			t.Fatalf("deploy %s: %v", name, err)
		}
		if v.Host != want || v.Placement == nil || v.Placement.Host != want || v.State != "deployed" {
			t.Fatalf("deploy %s: on %q (placement %+v, state %s), want %s", name, v.Host, v.Placement, v.State, want)
		}
		if len(v.Placement.Verdicts) != 3 {
			t.Errorf("deploy %s: %d verdicts, want one per host", name, len(v.Placement.Verdicts))
		}
		t.Logf("%s -> %s moved=%v bytes=%d: %v", name, want, v.Placement.Moved, v.Placement.MovedBytes, v.Placement.Verdicts)
	}
	// Nothing fits now: the error names every host.
	_, err := h1.Deployments.Deploy(ctx, "c7", lab.DeployOptions{})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("deploy with no room: %v, want unavailable", err)
	}
	for _, h := range []string{"h1: no: needs 256 MiB of memory, 88 free", "h2: no: needs 256 MiB of memory, 32 free", "h3: no: needs 256 MiB of memory, 188 free"} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not say %q", err, h)
		}
	}
	if c := in.config("c7"); c.State != store.StateUndeployed || c.Host != "h1" {
		t.Errorf("c7 after a refused deploy: %s on %q", c.State, c.Host)
	}
}

// TestDeployElsewherePullsOnlyWhatIsMissing: a linked clone whose chain
// lives on h1, deployed with --host h2, moves there with its tops and the
// frozen layers h2 lacks (h2 already holds the template's base): the bytes
// moved are exactly their sizes, h1 no longer has the tops, and the store
// records h2 as the home and the holder of the pulled layers.
func TestDeployElsewherePullsOnlyWhatIsMissing(t *testing.T) {
	in, h1, _ := twoHosts(t)
	ctx := context.Background()
	in.base(h1)
	// h2 gets the base by moving a first configuration there.
	for _, n := range []string{"first", "src"} {
		in.create(h1, n)
	}
	if _, err := h1.Deployments.Move(ctx, "first", "h2"); err != nil {
		t.Fatal(err)
	}
	// src gets data, then a linked clone freezes that top: the clone's
	// chain is base (on both) <- src's old top (on h1 only) <- its top.
	qemuIO(t, filepath.Join(in.dirs["h1"], in.topOf("src")), "write -P 0x5a 0 64k")
	if _, err := h1.Configs.LinkedClone(ctx, "src", "clone", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var missing int64
	var tops []string
	if err := in.db.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get("clone")
		if err != nil {
			return err
		}
		topL, err := tx.Layers().Get(c.VMs[0].Disks[0].TopLayerID)
		if err != nil {
			return err
		}
		frozen, err := tx.Layers().Get(topL.ParentID)
		if err != nil {
			return err
		}
		if !frozen.Frozen || !hostlink.ValidHash(frozen.SHA256) || frozen.Size == 0 {
			t.Errorf("the clone froze %s without its hash and size: %+v", frozen.Path, frozen)
		}
		st, err := os.Stat(filepath.Join(in.dirs["h1"], topL.Path))
		if err != nil {
			return err
		}
		missing = frozen.Size + st.Size()
		tops = append(tops, topL.Path)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v, err := h1.Deployments.Deploy(ctx, "clone", lab.DeployOptions{Host: "h2", Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if v.Host != "h2" || v.State != "deployed" || !v.Placement.Moved {
		t.Fatalf("deployed on %q (%s), placement %+v", v.Host, v.State, v.Placement)
	}
	if v.Placement.MovedBytes != missing {
		t.Errorf("moved %d bytes, want %d (the frozen top and the clone's top)", v.Placement.MovedBytes, missing)
	}
	if got := in.rt["h2"].Hypervisor.Running(); len(got) != 1 {
		t.Errorf("running on h2: %v", got)
	}
	if got := in.rt["h1"].Hypervisor.Running(); len(got) != 0 {
		t.Errorf("running on h1: %v", got)
	}
	for _, p := range tops {
		if _, err := os.Stat(filepath.Join(in.dirs["h1"], p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("h1 still has the moved top %s: %v", p, err)
		}
		if _, err := os.Stat(filepath.Join(in.dirs["h2"], p)); err != nil {
			t.Errorf("h2 lacks the top %s: %v", p, err)
		}
	}
	pulls := strings.Join(in.hosts.Pulls, "\n")
	if n := strings.Count(pulls, "h2 <- h1"); n != 4 { // first: base + top; clone: frozen + top
		t.Errorf("pulls:\n%s\nwant 4 (the base once)", pulls)
	}
	// The chain reads on h2 as it did on h1.
	verifyPattern(t, filepath.Join(in.dirs["h2"], tops[0]), 0, 64*1024, 0x5a)
}

// TestDeployedConfigurationDoesNotMove: a move is for undeployed
// configurations; the refusal says what to do instead.
func TestDeployedConfigurationDoesNotMove(t *testing.T) {
	in, h1, _ := twoHosts(t)
	ctx := context.Background()
	in.base(h1)
	in.create(h1, "a")
	if _, err := h1.Deployments.Deploy(ctx, "a", lab.DeployOptions{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	_, err := h1.Deployments.Move(ctx, "a", "h2")
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "host drain") || !strings.Contains(err.Error(), "undeploy") {
		t.Errorf("move of a deployed configuration: %v", err)
	}
}

// TestMoveInterruptedRecovers kills the move (the goroutine carrying it
// ends, as a daemon that dies would leave it) before and after the
// adopting host's commit; after both hosts restart, the configuration's
// tops are on exactly one host: the one the store names.
func TestMoveInterruptedRecovers(t *testing.T) {
	for _, c := range []struct {
		name    string
		killAt  string // the fault step at which the goroutine ends
		wantOn  string
		wantOff string
	}{
		{"before-adopter-commit", "commit", "h1", "h2"},
		{"after-adopter-commit", "after-commit", "h2", "h1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireQemuImg(t)
			e := newEnv(t)
			in := newInstallation(t, e.db)
			var armed sync.Map
			kill := func(op, step string) error {
				if _, ok := armed.Load(op + ":" + step); ok {
					runtime.Goexit()
				}
				return nil
			}
			d1, d2 := filepath.Join(t.TempDir(), "h1"), filepath.Join(t.TempDir(), "h2")
			h1 := in.host("h1", d1, 4096, kill)
			in.host("h2", d2, 4096, kill)
			ctx := context.Background()
			in.base(h1)
			in.create(h1, "a")
			rel := in.topOf("a")
			if c.killAt == "after-commit" {
				// The adopter commits; the old home dies before it
				// releases its tops.
				in.hosts.Serve("h2", afterAdopt{in.labs["h2"].MoveEndpoints()})
			} else {
				armed.Store("move:"+c.killAt, true)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				h1.Deployments.Move(ctx, "a", "h2")
			}()
			<-done
			armed.Clear()
			// Restart both: their recoveries settle the journal.
			in.host("h1", d1, 4096, nil)
			in.host("h2", d2, 4096, nil)
			if got := in.config("a").Host; got != c.wantOn {
				t.Fatalf("home after recovery: %q, want %s", got, c.wantOn)
			}
			if _, err := os.Stat(filepath.Join(in.dirs[c.wantOn], rel)); err != nil {
				t.Errorf("the home %s lacks the top: %v", c.wantOn, err)
			}
			if _, err := os.Stat(filepath.Join(in.dirs[c.wantOff], rel)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still has the top after recovery: %v", c.wantOff, err)
			}
			for _, f := range dataFiles(t, in.dirs["h2"]) {
				if strings.Contains(f, ".tmp") {
					t.Errorf("h2 left a temporary file: %s", f)
				}
			}
			if err := e.db.View(ctx, func(tx store.Tx) error {
				ops, err := tx.Ops().List()
				if len(ops) > 0 {
					t.Errorf("journal not empty after recovery: %+v", ops)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// afterAdopt adopts, then ends the calling goroutine: the old home dies
// between the adopter's commit and its own release of the tops.
type afterAdopt struct{ hostlink.Adopter }

func (a afterAdopt) Adopt(ctx context.Context, config, from string) (hostlink.AdoptResult, error) {
	if _, err := a.Adopter.Adopt(ctx, config, from); err != nil {
		return hostlink.AdoptResult{}, err
	}
	runtime.Goexit()
	return hostlink.AdoptResult{}, nil
}

// moveAcross is TestEveryStepRollsBack's move: e's configuration "a" moves
// from e's data dir (host h1) to a second host h2, both with e's fault
// hook. A failed move must leave nothing on h2; a move that succeeds is
// moved back (without faults), so that e's lab finds its files again.
func moveAcross(e *env) error {
	t := e.t.(*testing.T)
	in := newInstallation(t, e.db)
	h1 := in.host("h1", e.dir, 4096, e.opts.FailAt)
	d2 := filepath.Join(t.TempDir(), "h2")
	in.host("h2", d2, 4096, e.opts.FailAt)
	ctx := context.Background()
	_, err := h1.Deployments.Move(ctx, "a", "h2")
	if err != nil {
		if files := dataFiles(t, d2); len(files) > 0 {
			t.Errorf("the failed move left on h2: %q", files)
		}
		if h := in.config("a").Host; h != "" && h != "h1" {
			t.Errorf("the failed move left the configuration on %q", h)
		}
		return err
	}
	if h := in.config("a").Host; h != "h2" {
		t.Errorf("moved to %q, want h2", h)
	}
	back := newInstallation(t, e.db)
	back.host("h2", d2, 4096, nil)
	back.host("h1", e.dir, 4096, nil)
	if _, err := back.labs["h2"].Deployments.Move(ctx, "a", "h1"); err != nil {
		t.Fatalf("move back: %v", err)
	}
	return nil
}

// TestSharedLayersMoveOnlyTheRecord: with shared layers (one directory
// every host mounts) every host holds every layer, so placement weighs
// memory alone (both go to h2, which has more free) and a deploy
// elsewhere moves the record, never a file.
func TestSharedLayersMoveOnlyTheRecord(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := newInstallation(t, e.db)
	shared := filepath.Join(t.TempDir(), "shared")
	h1 := in.hostWith("h1", shared, 300, func(o *lab.Options) { o.SharedLayers = true })
	in.hostWith("h2", shared, 4096, func(o *lab.Options) { o.SharedLayers = true })
	ctx := context.Background()
	in.base(h1)
	for _, n := range []string{"a", "b"} {
		in.create(h1, n)
	}
	before := layerFiles(t, shared)
	if _, err := h1.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := h1.Deployments.Deploy(ctx, "b", lab.DeployOptions{Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if v.Host != "h2" || !v.Placement.Moved || v.Placement.MovedBytes != 0 {
		t.Errorf("b: on %q, placement %+v; want moved to h2 with nothing pulled", v.Host, v.Placement)
	}
	for _, verdict := range v.Placement.Verdicts {
		if verdict.MissingBytes != 0 {
			t.Errorf("verdict %s: shared layers, yet %d bytes to pull", verdict, verdict.MissingBytes)
		}
	}
	if len(in.hosts.Pulls) != 0 {
		t.Errorf("pulls with shared layers: %v", in.hosts.Pulls)
	}
	if after := layerFiles(t, shared); len(after) != len(before) {
		t.Errorf("layer files changed: %v, were %v", after, before)
	}
	if got := in.rt["h2"].Hypervisor.Running(); len(got) != 2 {
		t.Errorf("running on h2: %v, want both", got)
	}
}

// TestConcurrentDeploysDoNotOvercommit: h1 has room for one of two
// configurations; while the deploy of c0 is between its placement and
// the transaction that marks it deploying, c1 is deployed (it takes the
// room placement counted for c0). c0 is then refused, saying the host no
// longer has room, and left undeployed: the host's memory is never
// overcommitted by deploys at once.
func TestConcurrentDeploysDoNotOvercommit(t *testing.T) {
	requireQemuImg(t)
	e := newEnv(t)
	in := newInstallation(t, e.db)
	ctx := context.Background()
	var h1 *lab.Service
	var raced atomic.Bool
	var racer error
	h1 = in.host("h1", filepath.Join(t.TempDir(), "h1"), 300, func(op, step string) error {
		// Once, and not again from within: the racing deploy passes here too.
		if op == "deploy" && step == "placed" && raced.CompareAndSwap(false, true) {
			_, racer = h1.Deployments.Deploy(ctx, "c1", lab.DeployOptions{})
		}
		return nil
	})
	in.base(h1)
	in.create(h1, "c0")
	in.create(h1, "c1")
	_, err := h1.Deployments.Deploy(ctx, "c0", lab.DeployOptions{})
	if racer != nil {
		t.Fatalf("the deploy between c0's placement and its commit: %v", racer)
	}
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `host "h1" no longer has room`) ||
		!strings.Contains(err.Error(), "needs 256 MiB of memory, 44 free") {
		t.Fatalf("deploy of c0 after c1 took the room: %v; want unavailable, the host no longer has room, 44 MiB free", err)
	}
	if c0, c1 := in.config("c0"), in.config("c1"); c0.State != store.StateUndeployed || c1.State != store.StateDeployed {
		t.Errorf("c0 %s, c1 %s; want c0 undeployed, c1 deployed", c0.State, c1.State)
	}
}
