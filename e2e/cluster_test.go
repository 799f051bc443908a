package e2e

// The many-hosts harness (issue 13), all on one machine:
//
//	underlay netns ──── bridge ul0 10.88.0.1/24, PostgreSQL listening on 10.88.0.1:5432
//	   │ vh1            │ vh2            │ vh3       (veths; cut(i) sets vhI down)
//	host netns h1      host netns h2    host netns h3
//	 underlay 10.88.0.11  10.88.0.12       10.88.0.13
//	 stagehand serve --store postgres://postgres@10.88.0.1:5432/stagehand
//	   --host-name hI --listen 10.88.0.1I:8443 --advertise https://10.88.0.1I:8443
//	   --data-dir DIR_I --accel tcg          (VMs enabled: bridges, taps, QEMU in hI)
//
// The database is reached over the underlay only, so cutting a host's veth
// really cuts that host from the database (and from its peers), and its
// leader connection dies the way a partitioned host's does: silently, until
// TCP keepalive notices. Each host's CLI runs inside the host's namespace
// against its HTTPS URL with the administrator's token; the certificate is
// pinned from the fingerprint the daemon logged (known_servers under a
// temporary XDG_CONFIG_HOME), not trusted on first use.
//
// API (hosts are numbered from 1, hI at 10.88.0.1I):
//
//	c := newCluster(t, 3)      // underlay, PostgreSQL, 3 daemons, all ready
//	c.host(i).ok(args...)      // also run, fails, json, config, waitLog, logTail (the daemon's)
//	c.host(i).ns, .name, .addr, .dataDir, .url
//	c.hostList(i)              // `host list` through host i, by host name (tryHostList: error, no fail)
//	c.waitListed(i, name, online, timeout) // until host i lists name online (or offline)
//	c.cut(i), c.heal(i)        // underlay link of host i down / up
//	c.kill9(i), c.restart(i)   // SIGKILL its daemon; start it again on the same data dir
//	c.leaders(), c.leader()    // the hosts whose current log says they lead; the one (0: none)
//	c.waitLeader(not, timeout) // until one host other than not leads; its number
//	c.checkOneLeader()         // from every log: no two hosts ever led at the same time
//
// Everything (daemons, QEMU, PostgreSQL, namespaces, data dirs) is removed
// by t.Cleanup, also when the test fails.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"stagehand/internal/store/postgres/pgtest"
)

// The underlay's addresses: a range no other test uses (each test's
// ranges live in its own namespaces anyway).
const (
	underlayNet  = "10.88.0"
	underlayGW   = underlayNet + ".1"
	clusterPort  = "8443"
	clusterStore = "stagehand"
)

// hostCluster is N daemons on one PostgreSQL over an underlay bridge.
type hostCluster struct {
	t      *testing.T
	ul     *netns
	pg     *pgtest.Server
	store  string // the postgres:// URL every host serves
	config string // XDG_CONFIG_HOME of the CLI: known_servers
	hosts  []*clusterHost
}

// clusterHost is one host: its namespace, its data dir and its current
// daemon (replaced by restart).
type clusterHost struct {
	*daemon
	c       *hostCluster
	i       int
	name    string // hI
	addr    string // 10.88.0.1I
	veth    string // its veth's end on the underlay bridge
	ns      *netns
	dataDir string
	// past are the logs of this host's earlier daemons and when each
	// ended (killed or stopped): a leadership interval still open in
	// such a log ended then.
	past []pastDaemon
}

type pastDaemon struct {
	log   string
	ended time.Time
}

// newCluster starts the underlay with PostgreSQL on it and n hosts.
func newCluster(t *testing.T, n int) *hostCluster {
	t.Helper()
	requireVMs(t)
	c := &hostCluster{t: t, ul: newNetns(t), config: t.TempDir()}
	c.ip(c.ul, "link", "add", "ul0", "type", "bridge", "forward_delay", "0")
	c.ip(c.ul, "addr", "add", underlayGW+"/24", "dev", "ul0")
	c.ip(c.ul, "link", "set", "ul0", "up")

	var err error
	if err = inNetns(c.ul.name, func() error {
		c.pg, err = pgtest.StartListening(context.Background(), underlayGW)
		return err
	}); err != nil {
		t.Fatalf("PostgreSQL on the underlay: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL's last lines:\n%s", c.pg.LogTail(20))
		}
		c.pg.Stop()
	})
	c.pgAdmin("CREATE DATABASE " + clusterStore)
	c.store = c.pg.TCPURL(clusterStore)

	for i := 1; i <= n; i++ {
		c.addHost()
	}
	return c
}

// ip runs `ip -n NS args...`.
func (c *hostCluster) ip(ns *netns, args ...string) {
	c.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput(); err != nil {
		c.t.Fatalf("ip -n %s %s: %v\n%s", ns.name, strings.Join(args, " "), err, out)
	}
}

// pgAdmin runs sql as the superuser over the server's unix socket.
func (c *hostCluster) pgAdmin(sql string) {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.pg.DSN("postgres"))
	if err != nil {
		c.t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

// inNetns runs fn on a thread inside the named network namespace: what fn
// starts (a server's process) lives there. The thread returns to its own
// namespace afterwards; if it cannot, it is left locked, and the runtime
// ends it with the goroutine.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// addHost makes host number len(hosts)+1: its namespace, its veth on the
// underlay, its daemon.
func (c *hostCluster) addHost() *clusterHost {
	c.t.Helper()
	i := len(c.hosts) + 1
	h := &clusterHost{c: c, i: i, name: fmt.Sprintf("h%d", i), addr: fmt.Sprintf("%s.1%d", underlayNet, i),
		veth: fmt.Sprintf("vh%d", i), ns: newNetns(c.t), dataDir: c.t.TempDir()}
	c.ip(c.ul, "link", "add", h.veth, "type", "veth", "peer", "name", "underlay", "netns", h.ns.name)
	c.ip(c.ul, "link", "set", h.veth, "master", "ul0", "up")
	c.ip(h.ns, "addr", "add", h.addr+"/24", "dev", "underlay")
	c.ip(h.ns, "link", "set", "underlay", "up")
	c.t.Cleanup(func() { killLeftovers(h.dataDir) })
	if i > 1 {
		// The administrator's token is in the shared store; the first
		// host's daemon wrote it to its data dir.
		if err := os.WriteFile(filepath.Join(h.dataDir, "admin.token"), []byte(c.hosts[0].token()+"\n"), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	c.hosts = append(c.hosts, h)
	h.start()
	return h
}

// start runs the host's daemon and points its CLI at the HTTPS URL,
// pinning the certificate fingerprint the daemon logged.
func (h *clusterHost) start() {
	c := h.c
	c.t.Helper()
	listen := h.addr + ":" + clusterPort
	h.daemon = startDaemonArgv(c.t, h.dataDir, h.ns.exec(binary, "serve", "--data-dir", h.dataDir,
		"--store", c.store, "--host-name", h.name, "--listen", listen, "--advertise", "https://"+listen,
		"--accel", "tcg", "--reap-interval", "1s"))
	h.url = "https://" + listen
	// The CLI runs in the host's namespace, bounded so that a host cut
	// from its database fails a command instead of hanging the test.
	h.wrap = func(argv ...string) []string {
		return h.ns.exec(append([]string{"timeout", "30", "env", "XDG_CONFIG_HOME=" + c.config}, argv...)...)
	}
	m := regexp.MustCompile(`msg="TLS certificate[^\n]* fingerprint=(SHA256:[0-9a-f]+)`).FindStringSubmatch(h.logTail(1000))
	if m == nil {
		c.t.Fatalf("%s: no TLS certificate fingerprint in its log:\n%s", h.name, h.logTail(30))
	}
	c.pin(listen, m[1])
}

// pin records fingerprint for server in the CLI's known_servers (again
// after a restart: the certificate is kept in the data dir, so it is the
// same line).
func (c *hostCluster) pin(server, fingerprint string) {
	c.t.Helper()
	file := filepath.Join(c.config, "stagehand", "known_servers")
	b, _ := os.ReadFile(file)
	line := server + " " + fingerprint
	if strings.Contains(string(b), line) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(file, append(b, line+"\n"...), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// host returns host number i (1-based).
func (c *hostCluster) host(i int) *clusterHost { return c.hosts[i-1] }

// cut sets host i's veth on the underlay down: the host keeps its address
// but nothing it sends arrives (and nothing reaches it), like a pulled
// cable.
func (c *hostCluster) cut(i int) {
	c.t.Helper()
	c.ip(c.ul, "link", "set", c.host(i).veth, "down")
}

// heal sets host i's underlay veth up again.
func (c *hostCluster) heal(i int) {
	c.t.Helper()
	c.ip(c.ul, "link", "set", c.host(i).veth, "up")
}

// kill9 SIGKILLs host i's daemon.
func (c *hostCluster) kill9(i int) {
	h := c.host(i)
	h.kill()
	h.past = append(h.past, pastDaemon{log: h.log, ended: time.Now()})
}

// restart starts host i's daemon again on its data dir (after kill9 or a
// stop).
func (c *hostCluster) restart(i int) {
	c.t.Helper()
	h := c.host(i)
	if h.cmd.ProcessState == nil {
		h.stop()
		h.past = append(h.past, pastDaemon{log: h.log, ended: time.Now()})
	}
	h.start()
}

// leaders returns the hosts whose running daemon's log says it leads.
func (c *hostCluster) leaders() []int {
	var ls []int
	for _, h := range c.hosts {
		if h.cmd.ProcessState == nil && h.leads() {
			ls = append(ls, h.i)
		}
	}
	return ls
}

// leader returns the host that leads, 0 when none does; more than one
// fails the test.
func (c *hostCluster) leader() int {
	c.t.Helper()
	ls := c.leaders()
	if len(ls) > 1 {
		c.t.Fatalf("hosts %v all say they lead\n%s", ls, c.leadershipLines())
	}
	if len(ls) == 0 {
		return 0
	}
	return ls[0]
}

// waitLeader waits until a host other than not leads and returns it.
func (c *hostCluster) waitLeader(not int, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.leader(); l != 0 && l != not {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no host but %d leads after %v\n%s", not, timeout, c.leadershipLines())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterHostJSON is a row of `host list -o json`.
type clusterHostJSON struct {
	hostJSON
	CPUs     int       `json:"cpus"`
	LastSeen time.Time `json:"last_seen"`
}

// hostList returns `host list` through host i, by name.
func (c *hostCluster) hostList(i int) map[string]clusterHostJSON {
	c.t.Helper()
	m, err := c.tryHostList(i)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// tryHostList is hostList that returns a failed command's error.
func (c *hostCluster) tryHostList(i int) (map[string]clusterHostJSON, error) {
	c.t.Helper()
	r := c.host(i).run("host", "list", "-o", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("stagehand host list through h%d: exit %d\n%s%s", i, r.code, r.stdout, r.stderr)
	}
	var hs []clusterHostJSON
	if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
		return nil, fmt.Errorf("stagehand host list -o json through h%d: %w\n%s", i, err, r.stdout)
	}
	m := map[string]clusterHostJSON{}
	for _, h := range hs {
		m[h.Name] = h
	}
	return m, nil
}

// waitListed waits until host i lists host name with Online == online and
// returns how long that took. A failing `host list` is tried again (a
// host just healed may not reach the database yet).
func (c *hostCluster) waitListed(i int, name string, online bool, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		hs, err := c.tryHostList(i)
		h, ok := hs[name]
		if err == nil && ok && h.Online == online {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			if err != nil {
				c.t.Fatalf("after %v: %v", timeout, err)
			}
			c.t.Fatalf("host h%d lists %s as %+v after %v, want online=%v", i, name, h, timeout, online)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// A leadership interval of one daemon, from its log.
type leadership struct {
	host       string
	from, till time.Time // till zero: still leading
	log        string
}

var leaderLineRE = regexp.MustCompile(`(?m)^time=(\S+) .*msg=(leading |"no longer leading|"leadership lost)`)

// leaderships reads every daemon log of every host (the past ones too) for
// the times it started and stopped leading. A daemon killed while leading
// stopped when it was killed.
func (c *hostCluster) leaderships() []leadership {
	c.t.Helper()
	var all []leadership
	for _, h := range c.hosts {
		logs := slices.Clone(h.past)
		if h.cmd.ProcessState == nil {
			logs = append(logs, pastDaemon{log: h.log})
		}
		for _, p := range logs {
			b, err := os.ReadFile(p.log)
			if err != nil {
				c.t.Fatal(err)
			}
			var open *leadership
			for _, m := range leaderLineRE.FindAllStringSubmatch(string(b), -1) {
				at, err := time.Parse(time.RFC3339Nano, m[1])
				if err != nil {
					c.t.Fatalf("%s: log time %q: %v", p.log, m[1], err)
				}
				if m[2] == "leading " {
					all = append(all, leadership{host: h.name, from: at, log: p.log})
					open = &all[len(all)-1]
				} else if open != nil {
					open.till, open = at, nil
				}
			}
			if open != nil && !p.ended.IsZero() {
				open.till = p.ended
			}
		}
	}
	slices.SortFunc(all, func(a, b leadership) int { return a.from.Compare(b.from) })
	return all
}

// checkOneLeader fails the test when two daemons' leadership intervals
// overlap: the reaper (the leader's loop) would have run twice at once.
func (c *hostCluster) checkOneLeader() []leadership {
	c.t.Helper()
	ls := c.leaderships()
	for i := 1; i < len(ls); i++ {
		prev := ls[i-1]
		if prev.till.IsZero() || prev.till.After(ls[i].from) {
			c.t.Errorf("two leaders at once: %s led from %s till %v, %s from %s\n%s",
				prev.host, prev.from.Format(time.StampMilli), prev.till.Format(time.StampMilli), ls[i].host, ls[i].from.Format(time.StampMilli), c.leadershipLines())
		}
	}
	return ls
}

// leadershipLines are the leader election lines of every current log,
// for a failure message.
func (c *hostCluster) leadershipLines() string {
	var b strings.Builder
	for _, h := range c.hosts {
		f, err := os.Open(h.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "lead") {
				fmt.Fprintf(&b, "%s: %s\n", h.name, sc.Text())
			}
		}
		f.Close()
	}
	return b.String()
}
