package api_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/store"
)

// newSpreadHosts is newTwoHosts with "web" deployed --fenced --spread and
// its one VM, vm1, placed on h2 (h1 has too little memory for it): h1 is
// the home and runs the fence's router, h2 runs vm1. The labs reach each
// other in-process (labtest.Hosts), the API handlers over HTTP.
func newSpreadHosts(t *testing.T) *twoHosts {
	t.Helper()
	hosts := &labtest.Hosts{}
	l1 := apitest.New(t, func(o *lab.Options) { o.HostName, o.HostLink = "h1", hosts.Link("h1") }).Seed(t)
	l2 := l1.OtherHost(t, "h2", func(o *lab.Options) { o.HostLink = hosts.Link("h2") })
	for name, l := range map[string]*apitest.Lab{"h1": l1, "h2": l2} {
		hosts.Add(name, l.DataDir())
		hosts.Serve(name, l.MoveEndpoints())
	}
	th := serveTwoHosts(t, l1, l2)
	for name, h := range map[string]struct {
		mem      int
		underlay string
	}{"h1": {64, "10.88.0.1"}, "h2": {4096, "10.88.0.2"}} {
		err := l1.Store().Update(context.Background(), func(tx store.Tx) error {
			host, err := tx.Hosts().Get(name)
			if err != nil {
				return err
			}
			host.MemoryMiB, host.CPUs, host.Underlay = h.mem, 2, h.underlay
			return tx.Hosts().Register(host)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	v, err := l1.Deploy(context.Background(), "web", lab.DeployOptions{Fenced: true, FencePolicy: "out", Spread: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.VMs) != 1 || v.VMs[0].Host != "h2" {
		t.Fatalf("web's VMs after a spread deploy: %+v, want vm1 on h2", v.VMs)
	}
	if on1, on2 := l1.Host.Hypervisor.Running(), l2.Host.Hypervisor.Running(); len(on1) != 0 || len(on2) != 1 {
		t.Fatalf("running on h1 %v, on h2 %v; want vm1 on h2 only", on1, on2)
	}
	return th
}

// vmState reads the state the store records of VM vm of "web".
func (th *twoHosts) vmState(t *testing.T, vm string) string {
	t.Helper()
	var state string
	err := th.l1.Store().View(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		i := slices.IndexFunc(c.VMs, func(v store.VM) bool { return v.Name == vm })
		state = c.VMs[i].State
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// waitVMState waits for the store to record VM vm of "web" in state want.
func (th *twoHosts) waitVMState(t *testing.T, vm, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for got := th.vmState(t, vm); got != want; got = th.vmState(t, vm) {
		if time.Now().After(deadline) {
			t.Fatalf("VM %s is %q, want %q", vm, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A VM action sent to the home of a spread deployment runs on the host
// that runs the VM, which records the VM's state as one host does; a user
// without the right is refused through either host, and the VM's host
// decides again for itself.
func TestForwardSpreadVMActionToItsHost(t *testing.T) {
	th := newSpreadHosts(t)
	admin := authHeader(th.l1.AdminToken(t))
	for _, step := range []struct{ action, state string }{{wire.VMStop, lab.VMStateStopped}, {wire.VMStart, lab.VMStateRunning}, {wire.VMReset, lab.VMStateRunning}} {
		status, hdr, body := hostSend(t, th.srv1, "POST", "/api/v1/configs/web/vms/vm1/"+step.action, "", admin...)
		if status != http.StatusOK || hdr.Get(api.HostHeader) != "h2" {
			t.Fatalf("%s of vm1 through h1: %d %s (host %q), want 200 from h2", step.action, status, body, hdr.Values(api.HostHeader))
		}
		th.waitVMState(t, "vm1", step.state)
	}
	if on1, on2 := th.l1.Host.Hypervisor.Running(), th.l2.Host.Hypervisor.Running(); len(on1) != 0 || len(on2) != 1 {
		t.Fatalf("after stop and start: running on h1 %v, on h2 %v; want vm1 on h2 only", on1, on2)
	}
	// The home's own lab does not act on it: it names the VM's host.
	if _, err := th.l1.Deployments.VMAction(context.Background(), "web", "vm1", lab.VMActionReset); err == nil || !strings.Contains(err.Error(), `"h2"`) {
		t.Errorf("reset of vm1 by h1's lab: %v, want an error naming h2", err)
	}

	eve := authHeader(th.l1.Token(t, "eve", apitest.TokenOptions{}))
	s1, _, b1 := hostSend(t, th.srv1, "POST", "/api/v1/configs/web/vms/vm1/stop", "", eve...)
	s2, _, b2 := hostSend(t, th.srv2, "POST", "/api/v1/configs/web/vms/vm1/stop", "", eve...)
	if s1 < 400 || s1 != s2 {
		t.Fatalf("eve stops vm1 through h1: %d %s; on h2: %d %s; want the same refusal", s1, b1, s2, b2)
	}
	// h2 decides again: h1's credential acting for eve gets what eve gets.
	eveID := strconv.FormatInt(th.l1.User(t, "eve", false).ID, 10)
	if s, _, b := hostSend(t, th.srv2, "POST", "/api/v1/configs/web/vms/vm1/stop", "", "Authorization", "Bearer "+th.cred1, api.ActingUserHeader, eveID); s != s1 {
		t.Fatalf("h2 asked by h1 for eve: %d %s, want %d", s, b, s1)
	}
	if got := th.vmState(t, "vm1"); got != lab.VMStateRunning || len(th.l2.Host.Hypervisor.Running()) != 1 {
		t.Fatalf("after eve's refused stops: vm1 %q, running on h2 %v", got, th.l2.Host.Hypervisor.Running())
	}
}

// The serial console websocket of a spread deployment's VM, opened
// through its home, is served by the VM's host; a user without the
// console right is refused.
func TestForwardSpreadVMConsoleToItsHost(t *testing.T) {
	th := newSpreadHosts(t)
	admin := authHeader(th.l1.AdminToken(t))
	th.l2.EchoConsole(t, "web", "vm1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(th.srv1.URL, "http") + "/api/v1/configs/web/vms/vm1/serial/ws"
	dial := func(auth string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{wire.ConsoleSubprotocol},
			HTTPHeader: http.Header{"Authorization": {auth}}})
	}
	eve := authHeader(th.l1.Token(t, "eve", apitest.TokenOptions{}))
	if c, resp, err := dial(eve[1]); err == nil {
		c.CloseNow()
		t.Fatal("eve opened vm1's console through h1")
	} else if resp == nil || resp.StatusCode < 400 {
		t.Fatalf("eve's console through h1: %v (%v), want a refusal", err, resp)
	}
	c, resp, err := dial(admin[1])
	if err != nil {
		t.Fatalf("serial console through h1: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	assertEchoedBy(ctx, t, c, resp, "h2", "hello from the home")
}
