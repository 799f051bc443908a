package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benchmarks of real deployments (issue 4: parallel start, the daemon's
// memory per VM), fenced deployments (issue 5) and address allocation over
// the API. Like the deploy tests, everything runs in throwaway namespaces
// made here, and guests are reached from those namespaces only. Results and
// the commands that produce them are in docs/benchmarks.md.

// asTest runs body with a *testing.T, so that a benchmark can use the e2e
// helpers (newNetns, startDaemonIn, deployFixture, the daemon's methods),
// which take *testing.T and register their clean-ups on it. The clean-ups
// (daemon, QEMUs, namespaces) run when body ends, failed or not. body runs
// on another goroutine: it reports failures through t, never b. b fails
// when body failed, and is skipped when body was (no root, no QEMU).
func asTest(b *testing.B, body func(t *testing.T)) {
	b.Helper()
	finished := false
	all := func(pat, str string) (bool, error) { return true, nil } // whatever -test.run says
	ok := testing.RunTests(all, []testing.InternalTest{{Name: b.Name(), F: func(t *testing.T) {
		body(t)
		finished = true
	}}})
	switch {
	case !ok:
		b.Fatal("benchmark body failed (see its output above)")
	case !finished:
		b.Skip("benchmark body skipped (see its output above)")
	}
}

// pollEvery is how often a guest is asked whether it answers yet.
const pollEvery = 50 * time.Millisecond

// waitHTTP asks http://ip/ from ns every pollEvery (curl: at most 1 s to
// connect, then up to 60 s for the answer) until the guest answers, and
// returns when it first did. A guest that accepted the connection is
// answering: with many guests on the cores its handler (a shell script
// that forks) can take seconds, and a try cut off at 1 s would never see
// it answer.
func waitHTTP(ctx context.Context, ns *netns, ip string) (time.Time, error) {
	argv := ns.exec("curl", "-sf", "-o", "/dev/null", "--connect-timeout", "1", "--max-time", "60", "http://"+ip+"/")
	for {
		err := exec.CommandContext(ctx, argv[0], argv[1:]...).Run()
		if err == nil {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("guest %s never answered: %w (last try: %v)", ip, ctx.Err(), err)
		case <-time.After(pollEvery):
		}
	}
}

// waitAllHTTP polls every ip at once and returns when the last one first
// answered.
func waitAllHTTP(t *testing.T, ns *netns, ips []string, timeout time.Duration) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	answered := make([]time.Time, len(ips))
	errs := make([]error, len(ips))
	var wg sync.WaitGroup
	for i, ip := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answered[i], errs[i] = waitHTTP(ctx, ns, ip)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	last := answered[0]
	for _, a := range answered[1:] {
		if a.After(last) {
			last = a
		}
	}
	return last
}

// rssKiB is the resident set size of process pid (VmRSS), in KiB.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status: VmRSS %q: %v", pid, v, err)
			}
			return kib
		}
	}
	t.Fatalf("/proc/%d/status: no VmRSS", pid)
	return 0
}

// cpuTime is the CPU time (user + system) process pid has used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after "pid (comm) ": state is field 3, utime 14, stime 15, in
	// clock ticks of 1/100 s (USER_HZ on Linux).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// qemuUsage sums the RSS and the CPU time of the QEMU processes in ns.
func qemuUsage(t *testing.T, ns *netns) (n int, rss int64, cpu time.Duration) {
	t.Helper()
	for _, p := range ns.qemuPIDs(t) {
		pid, _ := strconv.Atoi(p)
		rss += rssKiB(t, pid)
		cpu += cpuTime(t, pid)
		n++
	}
	return n, rss, cpu
}

// daemonPID is the PID of the stagehand daemon itself (`ip netns exec`
// execs it in place, so it is the started process).
func daemonPID(t *testing.T, d *daemon) int {
	t.Helper()
	pid := d.cmd.Process.Pid
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "stagehand" {
		t.Fatalf("process %d is %q, not the stagehand daemon", pid, comm)
	}
	return pid
}

// deployTimes is what one timed deploy took, from the start of
// `config deploy`.
type deployTimes struct {
	command   time.Duration // until `config deploy` returned
	addressed time.Duration // until every guest printed STAGEHAND-IP on its serial console
	answered  time.Duration // until every guest answered HTTP
}

func (a *deployTimes) add(r deployTimes) {
	a.command += r.command
	a.addressed += r.addressed
	a.answered += r.answered
}

// deployedJSON is what `config deploy -o json` says of the VMs.
type deployedJSON struct {
	VMs []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
		NICs []struct {
			IP         string `json:"ip"`
			ExternalIP string `json:"external_ip"`
		} `json:"nics"`
	} `json:"vms"`
}

// timeDeploy runs `config deploy name args...` and waits until every
// guest answers HTTP from ns: on its own address, or with external set on
// its external address. Meanwhile it watches the guests' serial logs for
// the line the guest prints once DHCP gave it its address, which tells the
// guest's boot from the network path to it.
func timeDeploy(t *testing.T, d *daemon, ns *netns, name string, external bool, args ...string) deployTimes {
	t.Helper()
	start := time.Now()
	var c deployedJSON
	d.json(&c, append([]string{"config", "deploy", name}, args...)...)
	command := time.Since(start)
	var ips, logs []string
	var offsets []int64
	for _, vm := range c.VMs {
		ip := vm.NICs[0].IP
		if external {
			ip = vm.NICs[0].ExternalIP
		}
		if ip == "" {
			t.Fatalf("%s/%s has no address to reach (external=%v): %+v", name, vm.Name, external, vm.NICs[0])
		}
		ips = append(ips, ip)
		// The log is appended to across deploys, and the guest prints
		// nothing of its own before QEMU has long been started: this
		// boot's lines come after the current end.
		log := serialLog(t, vm.PID)
		st, err := os.Stat(log)
		if err != nil {
			t.Fatal(err)
		}
		logs, offsets = append(logs, log), append(offsets, st.Size())
	}
	addressed := make(chan time.Time, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() { addressed <- waitSerialLines(ctx, logs, offsets, "STAGEHAND-IP") }()
	last := waitAllHTTP(t, ns, ips, 3*time.Minute)
	r := deployTimes{command: command, answered: last.Sub(start)}
	if a := <-addressed; a.IsZero() {
		t.Fatalf("%s: a guest never printed STAGEHAND-IP on its serial console: %v", name, logs)
	} else {
		r.addressed = a.Sub(start)
	}
	return r
}

// serialLog is the serial console log of the QEMU process pid: the
// logfile= of its serial chardev.
func serialLog(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("QEMU %d: %v", pid, err)
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		if !strings.HasPrefix(arg, "socket,id=serial0,") {
			continue
		}
		for _, opt := range strings.Split(arg, ",") {
			if p, ok := strings.CutPrefix(opt, "logfile="); ok {
				return p
			}
		}
	}
	t.Fatalf("QEMU %d: no serial logfile in its command line", pid)
	return ""
}

// waitSerialLines polls logs every pollEvery until each holds line after
// its offset, and returns when the last one did (zero on ctx's end).
func waitSerialLines(ctx context.Context, logs []string, offsets []int64, line string) time.Time {
	seen := make([]bool, len(logs))
	for {
		all := true
		for i, log := range logs {
			if !seen[i] {
				b, err := os.ReadFile(log)
				seen[i] = err == nil && int64(len(b)) > offsets[i] && strings.Contains(string(b[offsets[i]:]), line)
			}
			all = all && seen[i]
		}
		if all {
			return time.Now()
		}
		select {
		case <-ctx.Done():
			return time.Time{}
		case <-time.After(pollEvery):
		}
	}
}

func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }

// BenchmarkDeployParallel deploys a 1-VM and a 3-VM configuration of the
// direct-kernel-boot test guest, one after the other in each iteration, and
// times each from `config deploy` until every guest answers HTTP on its
// address. The VMs of a configuration start in parallel, so 3VM/1VM should
// stay near 1 (goal ≤ 1.3). It also reports the daemon's RSS growth per
// deployed VM (0 VMs vs the 3-VM configuration running, ÷ 3), and the
// average RSS of a guest's QEMU for scale, and the CPU time each QEMU used
// until its guest answered: with 3 guests on 2 cores, that CPU time bounds
// how parallel the start can be.
func BenchmarkDeployParallel(b *testing.B) {
	var one, three deployTimes
	var daemonKiB, qemuKiB int64
	var cpuOne, cpuThree time.Duration
	var n int
	asTest(b, func(t *testing.T) {
		requireVMs(t)
		guest := guestImages(t)
		ns := newNetns(t)
		d := startDaemonIn(t, ns, t.TempDir())
		pid := daemonPID(t, d)
		deployFixture(t, d, guest, "10.74.0.0/24", "10.74.0.10-10.74.0.50")
		d.ok("config", "create", "one", "--vm", "a=kguest,net=lan")
		d.ok("config", "create", "three", "--vm", "a=kguest,net=lan", "--vm", "b=kguest,net=lan", "--vm", "c=kguest,net=lan")
		// Untimed warm-up: the kernel, initrd and QEMU in the page cache,
		// the daemon's deploy paths run once.
		timeDeploy(t, d, ns, "one", false)
		d.ok("config", "undeploy", "one")

		for b.Loop() {
			one.add(timeDeploy(t, d, ns, "one", false))
			q, rss, cpu := qemuUsage(t, ns)
			if q != 1 {
				t.Fatalf("%d QEMU processes with the 1-VM configuration deployed, want 1", q)
			}
			cpuOne += cpu
			d.ok("config", "undeploy", "one")

			before := rssKiB(t, pid)
			three.add(timeDeploy(t, d, ns, "three", false))
			daemonKiB += rssKiB(t, pid) - before
			q, rss, cpu = qemuUsage(t, ns)
			if q != 3 {
				t.Fatalf("%d QEMU processes with the 3-VM configuration deployed, want 3", q)
			}
			qemuKiB += rss
			cpuThree += cpu
			d.ok("config", "undeploy", "three")
			n++
		}
	})
	b.ReportMetric(ms(one.answered, n), "ms-1vm/op")
	b.ReportMetric(ms(three.answered, n), "ms-3vm/op")
	b.ReportMetric(float64(three.answered)/float64(one.answered), "3vm/1vm")
	b.ReportMetric(ms(one.command, n), "ms-1vm-cmd/op")
	b.ReportMetric(ms(three.command, n), "ms-3vm-cmd/op")
	b.ReportMetric(ms(one.addressed, n), "ms-1vm-ip/op")
	b.ReportMetric(ms(three.addressed, n), "ms-3vm-ip/op")
	b.ReportMetric(float64(daemonKiB)/3/float64(n), "KiB-daemon/vm")
	b.ReportMetric(float64(qemuKiB)/3/float64(n), "KiB-qemu/vm")
	b.ReportMetric(ms(cpuOne, n), "ms-cpu-qemu-1vm/op")
	b.ReportMetric(ms(cpuThree, 3*n), "ms-cpu-qemu-3vm/vm")
}

// BenchmarkFencedDeploy deploys a 3-VM configuration --fenced and times it
// from `config deploy` until every guest answers HTTP on its external
// address, asked from a client namespace on the network's bridge (goal:
// under 5 s under TCG). Each deploy gets new external addresses, so the
// client never has them in its ARP cache. In the same iterations, in
// alternating order, it deploys the same configuration unfenced (reached on
// its own addresses from the same client), so fenced/unfenced is the
// fence's share whatever the machine's load.
func BenchmarkFencedDeploy(b *testing.B) {
	var fenced, unfenced deployTimes
	var n int
	asTest(b, func(t *testing.T) {
		requireVMs(t)
		guest := guestImages(t)
		ns := newNetns(t)
		clientNS := newNetns(t)
		d := startDaemonIn(t, ns, t.TempDir())
		deployFixture(t, d, guest, "10.81.0.0/24", "10.81.0.10-10.81.0.60")
		d.ok("config", "create", "three", "--vm", "a=kguest,net=lan", "--vm", "b=kguest,net=lan", "--vm", "c=kguest,net=lan")
		// Untimed warm-up, unfenced: it makes the network's bridge, which
		// the client then joins, and warms the page cache.
		timeDeploy(t, d, ns, "three", false)
		d.ok("config", "undeploy", "three")
		attachClient(t, ns, clientNS, "lan", "10.81.0.200/24")

		deploy := func(fence bool) {
			if fence {
				fenced.add(timeDeploy(t, d, clientNS, "three", true, "--fenced"))
			} else {
				unfenced.add(timeDeploy(t, d, clientNS, "three", false))
			}
			d.ok("config", "undeploy", "three")
		}
		for b.Loop() {
			deploy(n%2 == 0)
			deploy(n%2 != 0)
			n++
		}
	})
	b.ReportMetric(ms(fenced.answered, n), "ms-fenced-3vm/op")
	b.ReportMetric(ms(fenced.command, n), "ms-fenced-3vm-cmd/op")
	b.ReportMetric(ms(unfenced.answered, n), "ms-unfenced-3vm/op")
	b.ReportMetric(ms(unfenced.command, n), "ms-unfenced-3vm-cmd/op")
	b.ReportMetric(ms(fenced.addressed, n), "ms-fenced-3vm-ip/op")
	b.ReportMetric(ms(unfenced.addressed, n), "ms-unfenced-3vm-ip/op")
	b.ReportMetric(float64(fenced.answered)/float64(unfenced.answered), "fenced/unfenced")
}

// BenchmarkAllocationsOverAPI is the allocation load (`config set-ip …
// pool` over the API) from 1, 10 and 50 concurrent clients: 2,000
// allocations per iteration, spread evenly, checked for duplicates after
// the run (-benchtime=5x makes the 10,000 of docs/benchmarks.md).
// Comparing the latencies tells queueing (p99 growing with the clients)
// from the cost of one allocation (clients=1).
func BenchmarkAllocationsOverAPI(b *testing.B) {
	const perIteration = 2000
	for _, clients := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var lat []time.Duration
			var wall time.Duration
			asTest(b, func(t *testing.T) {
				l := newAllocLoad(t, clients)
				for b.Loop() {
					l1, w := l.run(t, perIteration/clients)
					lat, wall = append(lat, l1...), wall+w
					if t.Failed() {
						return
					}
				}
				l.checkExclusive(t)
			})
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/wall.Seconds(), "allocs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
		})
	}
}
