package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

type statusJSON struct {
	Accel struct {
		State          string  `json:"state"`
		Accel          string  `json:"accel"`
		Reason         string  `json:"reason"`
		ProbingSeconds float64 `json:"probing_seconds"`
	} `json:"accel"`
	Recovered bool `json:"recovered"`
	Counts    struct {
		Deployed   int `json:"deployed_configs"`
		RunningVMs int `json:"running_vms"`
	} `json:"counts"`
}

// TestDeployWaitsForTheProbe: the daemon answers while its accelerator
// probe hangs (STAGEHAND_TEST_PROBE=hang, the same on every host); a deploy
// sent meanwhile waits for the probe, which gives up after --probe-timeout,
// and then runs its guest under TCG.
func TestDeployWaitsForTheProbe(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	t.Cleanup(func() { killLeftovers(data) })
	const probeTimeout = 6 * time.Second
	began := time.Now()
	d := startDaemonArgv(t, data, ns.exec(binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--probe-timeout", probeTimeout.String()), "STAGEHAND_TEST_PROBE=hang")
	d.wrap = ns.exec

	var st statusJSON
	d.json(&st, "status")
	if st.Accel.State != "probing" {
		t.Fatalf("status %s after the start: %+v, want probing", time.Since(began), st.Accel)
	}
	deployFixture(t, d, guest, "10.79.0.0/24", "10.79.0.10-10.79.0.50")
	d.ok("config", "create", "p", "--vm", "a=kguest,net=lan")
	d.json(&st, "status")
	if st.Accel.State != "probing" {
		t.Fatalf("the probe ended before the deploy was sent (%s after the start): the test shows nothing", time.Since(began))
	}
	sent := time.Since(began)
	d.ok("config", "deploy", "p")
	answered := time.Since(began)
	t.Logf("deploy sent %s after the start, answered after %s (probe timeout %s)", sent.Round(time.Millisecond), answered.Round(time.Millisecond), probeTimeout)
	if answered < probeTimeout {
		t.Errorf("deploy answered %s after the start, before the probe's timeout %s", answered, probeTimeout)
	}

	log, _ := os.ReadFile(d.log)
	waited := strings.Index(string(log), `msg="deploy waits for the accelerator probe"`)
	gaveUp := strings.Index(string(log), `msg="accelerator probe failed; using TCG"`)
	started := strings.Index(string(log), "starting qemu")
	if waited < 0 || gaveUp < waited || started < gaveUp {
		t.Fatalf("want the deploy to wait, the probe to give up, then QEMU to start (at %d, %d, %d); last lines:\n%s", waited, gaveUp, started, d.logTail(30))
	}
	d.json(&st, "status")
	if st.Accel.State != "ready" || st.Accel.Accel != "tcg" || !strings.Contains(st.Accel.Reason, "STAGEHAND_TEST_PROBE=hang") ||
		st.Counts.Deployed != 1 || st.Counts.RunningVMs != 1 {
		t.Errorf("status after the deploy: %+v", st)
	}
	pids := ns.qemuPIDs(t)
	if len(pids) != 1 {
		t.Fatalf("QEMU processes: %v", pids)
	}
	cmdline, _ := os.ReadFile("/proc/" + pids[0] + "/cmdline")
	if !strings.Contains(string(cmdline), "-accel\x00tcg\x00") {
		t.Errorf("guest QEMU not under TCG: %q", cmdline)
	}
	ns.waitGuest(t, d.config("p").VMs[0].NICs[0].IP, 90*time.Second)
	d.ok("config", "undeploy", "p")
}
