package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/cli"
	"stagehand/internal/syncbuf"
)

func TestDeployFlags(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		fenced bool
		policy string
		daemon bool // a refusal comes from the daemon (the lab judges policies)
		want   string
	}{
		{[]string{}, cli.ExitOK, false, "", true, ""},
		{[]string{"--fenced"}, cli.ExitOK, true, wire.FenceInOut, true, ""},
		{[]string{"--fenced", "--fence-policy", "out"}, cli.ExitOK, true, wire.FenceOut, true, ""},
		{[]string{"--fence-policy=block", "--fenced"}, cli.ExitOK, true, wire.FenceBlock, true, ""},
		{[]string{"--fenced", "--fence-policy", "wide"}, cli.ExitUsage, false, "", true, `fence policy "wide"`},
		{[]string{"--fence-policy", "block"}, cli.ExitUsage, false, "", true, "fence policy needs a fenced deployment"},
		{[]string{"--fenced=maybe"}, cli.ExitUsage, false, "", false, "maybe"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			e := newEnv(t)
			args := append([]string{"config", "deploy", "web", "-o", "json"}, tt.args...)
			out, errOut, code := e.run(args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if code != cli.ExitOK {
				if out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.want) {
					t.Errorf("refusal printed stdout %q stderr %q, want one line with %q", out, errOut, tt.want)
				}
				if reached := e.calls.Load() != 0; reached != tt.daemon {
					t.Errorf("reached the daemon: %v, want %v", reached, tt.daemon)
				}
				if c, err := e.lab.GetConfig(t.Context(), "web"); err != nil || c.State != "undeployed" {
					t.Errorf("after the refusal: %+v, %v", c, err)
				}
				return
			}
			var c wire.Config
			if err := json.Unmarshal([]byte(out), &c); err != nil {
				t.Fatal(err)
			}
			if c.State != "deployed" || c.Fenced != tt.fenced || c.FencePolicy != tt.policy || c.VMs[0].PID == 0 {
				t.Errorf("config = %+v, want fenced %v policy %q", c, tt.fenced, tt.policy)
			}
		})
	}
}

func TestUndeployFlags(t *testing.T) {
	tests := []struct {
		flags []string
		code  int
		saved bool
	}{
		{nil, cli.ExitOK, false},
		{[]string{"--discard-state"}, cli.ExitOK, false},
		{[]string{"--save-state"}, cli.ExitOK, true},
		{[]string{"--save-state", "--discard-state"}, cli.ExitUsage, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			e := newEnv(t)
			if _, errOut, code := e.run("config", "deploy", "web"); code != 0 {
				t.Fatalf("deploy: %s", errOut)
			}
			before := e.calls.Load()
			out, errOut, code := e.run(append([]string{"config", "undeploy", "web", "-o", "json"}, tt.flags...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if code != cli.ExitOK {
				if !strings.Contains(errOut, "exclude each other") || e.calls.Load() != before {
					t.Errorf("stderr %q, daemon calls %d", errOut, e.calls.Load()-before)
				}
				return
			}
			var c wire.Config
			if err := json.Unmarshal([]byte(out), &c); err != nil {
				t.Fatal(err)
			}
			if c.State != "undeployed" || c.VMs[0].HasSavedState != tt.saved {
				t.Errorf("config = %+v, want saved state %v", c, tt.saved)
			}
			// Undeploying again is a conflict.
			if _, _, code := e.run("config", "undeploy", "web"); code != cli.ExitConflict {
				t.Errorf("second undeploy: exit %d", code)
			}
		})
	}
}

func TestConfigShowHasVMStateAndPID(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("config", "deploy", "web")
	if code != 0 {
		t.Fatalf("deploy: %s", errOut)
	}
	c, err := e.lab.GetConfig(t.Context(), "web")
	if err != nil || c.VMs[0].PID == 0 {
		t.Fatalf("deployed: %+v, %v", c, err)
	}
	pid := strconv.Itoa(c.VMs[0].PID)
	for _, want := range []string{"deployed", "PID", "running", pid} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	e.run("config", "undeploy", "web", "--save-state")
	out, _, _ = e.run("config", "show", "web")
	if !strings.Contains(out, "saved") || strings.Contains(out, pid) {
		t.Errorf("after undeploy --save-state:\n%s", out)
	}
}

func TestVMActionCommands(t *testing.T) {
	e := newEnv(t)
	if _, _, code := e.run("vm", "stop", "web", "vm1"); code != cli.ExitConflict {
		t.Fatalf("stop while undeployed: exit %d", code)
	}
	e.run("config", "deploy", "web")
	tests := []struct {
		args  []string
		code  int
		state string
	}{
		// Stop asks the guest to power off and returns; the VM is
		// stopped once it is off (waited for below).
		{[]string{"vm", "stop", "web", "vm1"}, cli.ExitOK, ""},
		{[]string{"vm", "start", "web", "vm1"}, cli.ExitOK, wire.VMRunning},
		{[]string{"vm", "reset", "web", "vm1"}, cli.ExitOK, wire.VMRunning},
		{[]string{"vm", "reset", "web", "nope"}, cli.ExitNotFound, ""},
		{[]string{"vm", "stop", "web"}, cli.ExitUsage, ""},
		{[]string{"vm", "pause", "web", "vm1"}, cli.ExitUsage, ""},
	}
	for _, tt := range tests {
		out, errOut, code := e.run(append(tt.args, "-o", "json")...)
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errOut)
			continue
		}
		if tt.args[1] == "stop" && code == cli.ExitOK {
			e.waitVM("web", wire.VMStopped)
		}
		if tt.state == "" {
			continue
		}
		var c wire.Config
		if err := json.Unmarshal([]byte(out), &c); err != nil || c.VMs[0].State != tt.state {
			t.Errorf("%v: %s (%v), want VM %s", tt.args, out, err, tt.state)
		}
	}
}

func TestVMConsoleThroughAPipe(t *testing.T) {
	e := newEnv(t)
	if _, _, code := e.run("vm", "console", "web", "vm1"); code != cli.ExitConflict {
		t.Fatalf("console while undeployed: exit %d", code)
	}
	e.run("config", "deploy", "web")
	e.lab.EchoConsole(t, "web", "vm1")

	start := time.Now()
	out, errOut, code := runCLIInput(e.url, strings.NewReader("echo hello\r\n"), "vm", "console", "web", "vm1")
	if code != 0 || out != "echo hello\r\n" || errOut != "" {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("session took %v, want about a second of quiet after stdin's end", d)
	}

	// Output that keeps coming after stdin's end is still waited for.
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "one ")
		time.Sleep(300 * time.Millisecond)
		io.WriteString(pw, "two")
		pw.Close()
	}()
	out, errOut, code = runCLIInput(e.url, pr, "vm", "console", "web", "vm1")
	if code != 0 || out != "one two" {
		t.Fatalf("slow pipe: exit %d stdout %q stderr %q", code, out, errOut)
	}

	if _, errOut, code := runCLIInput(e.url, strings.NewReader(""), "vm", "console", "web", "nope"); code != cli.ExitNotFound || strings.Count(errOut, "\n") != 1 {
		t.Errorf("unknown VM: exit %d stderr %q", code, errOut)
	}
}

func TestVMLogCommand(t *testing.T) {
	e := newEnv(t)
	if _, _, code := e.run("vm", "log", "web", "vm1"); code != cli.ExitNotFound {
		t.Fatalf("no log: exit %d", code)
	}
	e.run("config", "deploy", "web")
	logFile := e.lab.SerialLog(t, "web", "vm1")
	if err := os.WriteFile(logFile, []byte("SeaBIOS\r\nbooting\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := e.run("vm", "log", "web", "vm1"); code != 0 || out != "SeaBIOS\r\nbooting\r\n" {
		t.Fatalf("log: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// -f goes on until interrupted, which is a normal end.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errw syncbuf.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"--server", e.url, "vm", "log", "-f", "web", "vm1"}, cli.Deps{Stdout: &out, Stderr: &errw})
	}()
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("login: ")
	f.Close()
	for deadline := time.Now().Add(5 * time.Second); !strings.HasSuffix(out.String(), "login: "); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("followed output %q", out.String())
		}
	}
	cancel()
	select {
	case code := <-exited:
		if code != 0 || errw.String() != "" {
			t.Fatalf("interrupted -f: exit %d stderr %q", code, errw.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("vm log -f did not end on interrupt")
	}
}

func TestDoctorShowsTheAccelerator(t *testing.T) {
	e := newEnv(t, apitest.Accel("/dev/kvm absent"))
	out, errOut, code := e.run("doctor")
	if code != 0 || !strings.Contains(out, "accelerator: tcg (/dev/kvm absent)\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = e.run("doctor", "-o", "json")
	var rep wire.DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Accel != "tcg" || rep.AccelReason != "/dev/kvm absent" {
		t.Fatalf("report = %s, %v", out, err)
	}
}
