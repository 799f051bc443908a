package e2e

import (
	"strings"
	"testing"
	"time"

	"stagehand/internal/cluster"
)

// TestThreeHostsRegister: three daemons on one PostgreSQL over the
// underlay each list all three hosts active, online and with their
// capacity; what one host makes the others list; `host drain h2` through
// one host shows h2 draining through every host, and undrain makes it
// active again.
func TestThreeHostsRegister(t *testing.T) {
	c := newCluster(t, 3)
	for i := 1; i <= 3; i++ {
		hs := c.hostList(i)
		if len(hs) != 3 {
			t.Fatalf("host list through h%d: %+v, want h1, h2, h3", i, hs)
		}
		for j := 1; j <= 3; j++ {
			h, want := hs[c.host(j).name], c.host(j).url
			if h.State != "active" || !h.Online || h.MemoryMiB <= 0 || h.CPUs <= 0 || h.AdvertiseURL != want {
				t.Errorf("host list through h%d: %+v, want active, online, with memory and CPUs, advertising %s", i, h, want)
			}
		}
	}

	img := makeImage(t, t.TempDir())
	c.host(1).ok("template", "import", "linux", "--disk", img, "--cpus", "1", "--memory", "256")
	c.host(1).ok("network", "create", "lan", "--subnet", "10.89.0.0/24", "--pool", "10.89.0.10-10.89.0.20")
	c.host(1).ok("config", "create", "web", "--vm", "app=linux,net=lan")
	for i := 2; i <= 3; i++ {
		if out := c.host(i).ok("config", "list"); !strings.Contains(out, "web") {
			t.Errorf("config list through h%d:\n%s\nwant web, made through h1", i, out)
		}
	}

	c.host(1).ok("host", "drain", "h2")
	for i := 1; i <= 3; i++ {
		if h := c.hostList(i)["h2"]; h.State != "draining" || !h.Online {
			t.Errorf("after host drain h2, through h%d: %+v, want draining and online", i, h)
		}
		if h := c.hostList(i)["h3"]; h.State != "active" {
			t.Errorf("after host drain h2, through h%d: h3 %+v, want still active", i, h)
		}
	}
	c.host(3).ok("host", "undrain", "h2")
	for i := 1; i <= 3; i++ {
		if h := c.hostList(i)["h2"]; h.State != "active" {
			t.Errorf("after host undrain h2, through h%d: %+v, want active", i, h)
		}
	}
	c.checkOneLeader()
}

// TestLeaderKilled: kill -9 the leader's daemon. Another host's log says
// it leads within one offline threshold (the server ends a dead process's
// session, and its advisory lock, at once); the others list the killed
// host offline after the threshold; restarted, it comes back online and
// follows while the new leader keeps leading; from the logs, no two hosts
// ever led at the same time.
func TestLeaderKilled(t *testing.T) {
	c := newCluster(t, 3)
	old := c.waitLeader(0, cluster.OfflineAfter)

	killed := time.Now()
	c.kill9(old)
	next := c.waitLeader(old, cluster.OfflineAfter)
	took := time.Since(killed)
	t.Logf("h%d killed; h%d leads %v later (threshold %v)", old, next, took.Round(100*time.Millisecond), cluster.OfflineAfter)

	// Listed offline by every other host: not before its last heartbeat
	// is OfflineAfter old, and within a heartbeat of that.
	for i := 1; i <= 3; i++ {
		if i != old {
			c.waitListed(i, c.host(old).name, false, cluster.OfflineAfter+cluster.HeartbeatInterval)
		}
	}
	if gone := time.Since(killed); gone < cluster.OfflineAfter-cluster.HeartbeatInterval {
		t.Errorf("h%d listed offline %v after it was killed, before the threshold %v could pass", old, gone, cluster.OfflineAfter)
	}
	t.Logf("h%d listed offline by the others %v after it was killed", old, time.Since(killed).Round(100*time.Millisecond))

	c.restart(old)
	for i := 1; i <= 3; i++ {
		c.waitListed(i, c.host(old).name, true, 2*cluster.HeartbeatInterval)
	}
	// A follower tries the lock every heartbeat: sample for longer than
	// one try plus a new leader's wait.
	for end := time.Now().Add(cluster.HeartbeatInterval + 3*time.Second); time.Now().Before(end); {
		if ls := c.leaders(); len(ls) != 1 || ls[0] != next {
			t.Fatalf("after h%d's restart the leaders are %v, want h%d alone\n%s", old, ls, next, c.leadershipLines())
		}
		time.Sleep(200 * time.Millisecond)
	}
	ls := c.checkOneLeader()
	if len(ls) != 2 || ls[0].host != c.host(old).name || ls[1].host != c.host(next).name {
		t.Errorf("leaderships %+v, want h%d then h%d", ls, old, next)
	}
}

// TestPartitionedHost: cut the leader's underlay link. Its log says it lost
// the lock (its connection stops answering); another host leads within
// the offline threshold (the server ends the cut session when TCP
// keepalive gives up); the others list the cut host offline. Healed, it
// is online again and follows; from the logs, no two hosts ever led at the
// same time, so the reaper never ran twice at once.
func TestPartitionedHost(t *testing.T) {
	c := newCluster(t, 3)
	old := c.waitLeader(0, cluster.OfflineAfter)
	h := c.host(old)

	cut := time.Now()
	c.cut(old)
	h.waitLog(`msg="leadership lost`, cluster.OfflineAfter)
	t.Logf("h%d cut; its log says it lost the lock %v later", old, time.Since(cut).Round(100*time.Millisecond))
	if l := c.leader(); l == old {
		t.Errorf("h%d still says it leads after saying it lost the lock", old)
	}
	next := c.waitLeader(old, cluster.OfflineAfter)
	t.Logf("h%d leads %v after h%d was cut (threshold %v)", next, time.Since(cut).Round(100*time.Millisecond), old, cluster.OfflineAfter)
	for i := 1; i <= 3; i++ {
		if i != old {
			c.waitListed(i, h.name, false, cluster.OfflineAfter+cluster.HeartbeatInterval)
		}
	}
	t.Logf("h%d listed offline by the others %v after the cut", old, time.Since(cut).Round(100*time.Millisecond))

	healed := time.Now()
	c.heal(old)
	for i := 1; i <= 3; i++ {
		c.waitListed(i, h.name, true, cluster.OfflineAfter)
	}
	t.Logf("h%d listed online by every host %v after the heal", old, time.Since(healed).Round(100*time.Millisecond))
	for end := time.Now().Add(cluster.HeartbeatInterval + 3*time.Second); time.Now().Before(end); {
		if ls := c.leaders(); len(ls) != 1 || ls[0] != next {
			t.Fatalf("after the heal the leaders are %v, want h%d alone\n%s", ls, next, c.leadershipLines())
		}
		time.Sleep(200 * time.Millisecond)
	}
	ls := c.checkOneLeader()
	if len(ls) != 2 || ls[0].host != h.name || ls[1].host != c.host(next).name {
		t.Errorf("leaderships %+v, want h%d then h%d", ls, old, next)
	}
}
