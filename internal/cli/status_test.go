package cli_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/cli"
	"stagehand/internal/lab"
)

func TestStatus(t *testing.T) {
	e := newEnv(t, apitest.Accel("KVM guest did not reach userspace"))
	if _, err := e.lab.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.run("status")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		`(?m)^Accelerator:\s+tcg \(KVM guest did not reach userspace\)$`,
		`(?m)^Store:\s+-$`, // the test's handler has no daemon description
		`(?m)^Data dir:\s+` + regexp.QuoteMeta(e.lab.DataDir()) + `$`,
		`(?m)^Recovered:\s+yes$`,
		`(?m)^Templates:\s+1$`,
		`(?m)^Networks:\s+1$`,
		`(?m)^Configurations:\s+1 \(1 deployed\)$`,
		`(?m)^Running VMs:\s+1$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status table lacks %s:\n%s", want, out)
		}
	}
	out, _, code = e.run("status", "-o", "json")
	var st wire.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Accel.State != wire.AccelReady || st.Accel.Accel != "tcg" ||
		st.Counts.Deployed != 1 || !st.Recovered {
		t.Fatalf("status -o json: exit %d\n%s", code, out)
	}
}

// TestStatusWithoutDaemon: the error names the address and says nothing
// listens there.
func TestStatusWithoutDaemon(t *testing.T) {
	_, errOut, code := runCLI("http://127.0.0.1:1", "status")
	if code != cli.ExitUnavailable || !strings.Contains(errOut, "cannot reach the stagehand server at http://127.0.0.1:1: no daemon is listening there") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
