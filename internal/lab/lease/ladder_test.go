package lease

import (
	"strings"
	"testing"
	"time"

	"stagehand/internal/store"
)

func TestParseLadder(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", "none", ""},
		{"none", "none", ""},
		{"warn=1h,suspend,undeploy=1d,archive=7d,delete=30d", "warn=1h0m0s,suspend,undeploy=24h0m0s,archive=168h0m0s,delete=720h0m0s", ""},
		{"suspend", "suspend", ""},
		{"warn=30s,undeploy=0", "warn=30s,undeploy=0", ""},
		{"suspend,archive=1h", "suspend,archive=1h0m0s", ""},
		{"warn=1h", "", "must suspend or undeploy"},
		{"suspend,warn=1h", "", "in the order"},
		{"suspend,suspend", "", "in the order"},
		{"suspend=1h", "", "takes no length"},
		{"undeploy", "", "needs a length"},
		{"suspend,undeploy=2d,archive=1d", "", "before the step ahead"},
		{"suspend,nap=1h", "", "is not one of"},
		{"suspend,undeploy=-1h", "", "is not a number"},
	} {
		l, err := ParseLadder(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseLadder(%q) = %v, want an error with %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("ParseLadder(%q): %v", tc.in, err)
		case tc.err == "" && l.String() != tc.want:
			t.Errorf("ParseLadder(%q) = %s, want %s", tc.in, l, tc.want)
		case tc.err == "":
			if again, err := ParseLadder(l.String()); err != nil || again.String() != l.String() {
				t.Errorf("%s does not read back: %v, %v", l, again, err)
			}
		}
	}
	for _, u := range []string{"ftp://h/x", "http://user:pw@h/x", "https:///x", "http://h/x#f", "h/x"} {
		if err := CheckWebhookURL(u); err == nil {
			t.Errorf("CheckWebhookURL(%q) accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/hook", "https://hooks.example/x?y=1"} {
		if err := CheckWebhookURL(u); err != nil {
			t.Errorf("CheckWebhookURL(%q): %v", u, err)
		}
	}
}

// TestPlanLadder: which step is due, for each place on the ladder and
// state, and that the one-step rule is replaced, not added to.
func TestPlanLadder(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	ladder, err := ParseLadder("warn=1h,suspend,undeploy=1d,archive=2d,delete=3d")
	if err != nil {
		t.Fatal(err)
	}
	noSuspend, _ := ParseLadder("undeploy=1h,delete=2h")
	dep, und, failed := store.StateDeployed, store.StateUndeployed, store.StateFailed
	for _, tc := range []struct {
		name   string
		ladder Ladder
		state  string
		lease  store.Lease
		want   string
	}{
		{"running", ladder, dep, store.Lease{DeployExpires: now.Add(2 * time.Hour)}, ""},
		{"warn due", ladder, dep, store.Lease{DeployExpires: now.Add(time.Hour)}, "lease-warn"},
		{"warned", ladder, dep, store.Lease{DeployExpires: now.Add(time.Minute), LadderStep: "warn", LadderExpires: now.Add(time.Minute)}, ""},
		{"suspend due", ladder, dep, store.Lease{DeployExpires: now, LadderStep: "warn", LadderExpires: now}, "lease-suspend save"},
		{"a missed warning comes first", ladder, dep, store.Lease{DeployExpires: now.Add(-time.Hour)}, "lease-warn"},
		{"suspend of a failed one discards", ladder, failed, store.Lease{DeployExpires: now, LadderStep: "warn", LadderExpires: now}, "lease-suspend"},
		{"suspended, in grace", ladder, und, store.Lease{LadderStep: "suspend", LadderExpires: now.Add(-time.Hour)}, ""},
		{"undeploy due", ladder, und, store.Lease{LadderStep: "suspend", LadderExpires: now.Add(-24 * time.Hour)}, "lease-undeploy"},
		{"archive due", ladder, und, store.Lease{LadderStep: "undeploy", LadderExpires: now.Add(-48 * time.Hour)}, "lease-archive"},
		{"delete due", ladder, und, store.Lease{LadderStep: "archive", LadderExpires: now.Add(-72 * time.Hour)}, "lease-delete"},
		{"all done", ladder, und, store.Lease{LadderStep: "delete", LadderExpires: now.Add(-99 * time.Hour)}, ""},
		{"cancelled after suspend", ladder, und, store.Lease{LadderStep: "suspend"}, ""},
		{"undeployed by hand after warn", ladder, und, store.Lease{LadderStep: "warn", LadderExpires: now.Add(-time.Hour)}, ""},
		{"deploying", ladder, store.StateDeploying, store.Lease{DeployExpires: now.Add(-time.Hour), LadderStep: "warn", LadderExpires: now.Add(-time.Hour)}, ""},
		{"suspend's claim lost: undeploy still running", ladder, dep, store.Lease{DeployExpires: now.Add(-24 * time.Hour), LadderStep: "suspend", LadderExpires: now.Add(-24 * time.Hour)}, "lease-undeploy running"},
		{"no suspend: undeploy a running one", noSuspend, dep, store.Lease{DeployExpires: now.Add(-time.Hour)}, "lease-undeploy running"},
		{"no suspend: delete after", noSuspend, und, store.Lease{LadderStep: "undeploy", LadderExpires: now.Add(-2 * time.Hour)}, "lease-delete"},
		{"safety net kept", ladder, und, store.Lease{DeployExpires: now.Add(time.Hour)}, "clear-deploy-lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := Leased{Object: ObjectConfig, Name: "c", State: tc.state, Lease: tc.lease, Ladder: tc.ladder, Policy: "daemon"}
			var got []string
			for _, a := range Plan(now, Policy{}, []Leased{it}) {
				s := a.Action
				if a.Save {
					s += " save"
				}
				if a.Running {
					s += " running"
				}
				got = append(got, s)
			}
			if g := strings.Join(got, ","); g != tc.want {
				t.Errorf("Plan = %q, want %q", g, tc.want)
			}
		})
	}
}
