package deploy

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"stagehand/internal/console"
	"stagehand/internal/errdefs"
	"stagehand/internal/hypervisor"
	"stagehand/internal/store"
)

// ScreenEvery is the least time between two screendumps of one VM: a
// thumbnail page that many people watch asks QEMU once per period, and
// every other request gets the last picture.
const ScreenEvery = 2 * time.Second

// Display is the graphical side of a VM: its screen over VNC, screendumps
// and keys. *hypervisor.VM has one; a VM that does not (a test's fake)
// answers the display's requests as unavailable.
type Display interface {
	// VNCSocketPath is the unix socket of the VM's VNC server.
	VNCSocketPath() string
	// Screendump returns the screen as a PNG image.
	Screendump(ctx context.Context) ([]byte, error)
	// SendKeys presses the keys of a chord together.
	SendKeys(ctx context.Context, chord []string) error
	// TypeText types ASCII text on a US-layout keyboard.
	TypeText(ctx context.Context, text string) error
}

var _ Display = (*hypervisor.VM)(nil)

// vmConsoles is what one running VM's consoles share: the serial hub,
// opened when the first viewer comes, and the last screendump.
type vmConsoles struct {
	mu  sync.Mutex
	hub *console.Hub

	screenMu sync.Mutex // one screendump at a time
	screen   []byte
	screenAt time.Time
}

// close ends the hub, when there is one: the VM is gone.
func (c *vmConsoles) close() {
	c.mu.Lock()
	hub := c.hub
	c.hub = nil
	c.mu.Unlock()
	if hub != nil {
		hub.Close()
	}
}

// Consoles are the consoles and screens of the running VMs of a lab's
// deployments: the serial console (a hub every viewer shares, and its
// log), VNC, screendumps and keys. Safe for concurrent use.
type Consoles struct {
	store    store.Store
	vms      *runningVMs // the deployments' own
	host     hostNames
	hostName string // this host's, in messages about a VM that runs on another
	log      *slog.Logger
}

// running returns the running VM config/vmName with its store ID, or a
// conflict when it is not running.
func (cs *Consoles) running(ctx context.Context, config, vmName string) (*runningVM, int64, error) {
	id, host, err := vmRef(ctx, cs.store, config, vmName)
	if err != nil {
		return nil, 0, err
	}
	rv := cs.vms.get(id)
	if rv == nil && host != "" && cs.hostName != "" && host != cs.hostName {
		return nil, 0, runsElsewhere(config, vmName, host, cs.hostName)
	}
	if rv == nil {
		return nil, 0, errdefs.Conflict("VM %q of %q is not running", vmName, config)
	}
	return rv, id, nil
}

// Serial returns the serial console hub of a running VM, connecting it
// to QEMU's console socket on first use (and again after a connection
// that ended while the VM runs on). The hub ends when the VM stops. Its
// ring starts with the tail of the VM's serial log.
func (cs *Consoles) Serial(ctx context.Context, config, vmName string) (*console.Hub, error) {
	rv, id, err := cs.running(ctx, config, vmName)
	if err != nil {
		return nil, err
	}
	c := &rv.consoles
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hub != nil {
		select {
		case <-c.hub.Done():
		default:
			return c.hub, nil
		}
	}
	logFile := hypervisor.Spec{RunDir: cs.host.runDir(id)}.SerialLogPath()
	hub, err := console.Open(ctx, rv.vm.ConsoleSocketPath(), logFile,
		console.Options{Log: cs.log.With("config", config, "vm", vmName)})
	if err != nil {
		return nil, fmt.Errorf("console of VM %q of %q: %w", vmName, config, err)
	}
	c.hub = hub
	return hub, nil
}

// SerialSocket returns the unix socket of a running VM's serial console
// (where QEMU listens; the hub is its one client).
func (cs *Consoles) SerialSocket(ctx context.Context, config, vmName string) (string, error) {
	rv, _, err := cs.running(ctx, config, vmName)
	if err != nil {
		return "", err
	}
	return rv.vm.ConsoleSocketPath(), nil
}

// display returns the display of a running VM.
func (cs *Consoles) display(ctx context.Context, config, vmName string) (*runningVM, Display, error) {
	rv, _, err := cs.running(ctx, config, vmName)
	if err != nil {
		return nil, nil, err
	}
	disp, ok := rv.vm.(Display)
	if !ok {
		return nil, nil, errdefs.Unavailable("VM %q of %q has no screen", vmName, config)
	}
	return rv, disp, nil
}

// VNC returns the unix socket of a running VM's VNC server: raw RFB,
// shared by every client. A VM started by a version without VNC has none
// until it is started again.
func (cs *Consoles) VNC(ctx context.Context, config, vmName string) (string, error) {
	_, disp, err := cs.display(ctx, config, vmName)
	if err != nil {
		return "", err
	}
	sock := disp.VNCSocketPath()
	if !fileExists(sock) {
		return "", errdefs.Unavailable("VM %q of %q has no VNC socket (started before the screen existed? stop and start it)", vmName, config)
	}
	return sock, nil
}

// Screen returns a PNG of a running VM's screen and when it was taken:
// a new screendump at most once per ScreenEvery per VM, the last one in
// between.
func (cs *Consoles) Screen(ctx context.Context, config, vmName string) ([]byte, time.Time, error) {
	rv, disp, err := cs.display(ctx, config, vmName)
	if err != nil {
		return nil, time.Time{}, err
	}
	c := &rv.consoles
	c.screenMu.Lock()
	defer c.screenMu.Unlock()
	if c.screen != nil && time.Since(c.screenAt) < ScreenEvery {
		return c.screen, c.screenAt, nil
	}
	png, err := disp.Screendump(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("screen of VM %q of %q: %w", vmName, config, err)
	}
	c.screen, c.screenAt = png, time.Now()
	return png, c.screenAt, nil
}

// SendKeys presses each chord ("ctrl-alt-del", "f2") on a running VM's
// keyboard, in order. Every chord is checked before the first is sent.
func (cs *Consoles) SendKeys(ctx context.Context, config, vmName string, chords []string) error {
	parsed := make([][]string, 0, len(chords))
	for _, ch := range chords {
		keys, err := hypervisor.ParseChord(ch)
		if err != nil {
			return err
		}
		parsed = append(parsed, keys)
	}
	_, disp, err := cs.display(ctx, config, vmName)
	if err != nil {
		return err
	}
	for _, keys := range parsed {
		if err := disp.SendKeys(ctx, keys); err != nil {
			return fmt.Errorf("keys of VM %q of %q: %w", vmName, config, err)
		}
	}
	return nil
}

// TypeText types text on a running VM's keyboard (printable ASCII,
// newline and tab, US layout; see hypervisor.TypeText).
func (cs *Consoles) TypeText(ctx context.Context, config, vmName, text string) error {
	if _, err := hypervisor.TextChords(text); err != nil {
		return err
	}
	_, disp, err := cs.display(ctx, config, vmName)
	if err != nil {
		return err
	}
	if err := disp.TypeText(ctx, text); err != nil {
		return fmt.Errorf("type on VM %q of %q: %w", vmName, config, err)
	}
	return nil
}

// SerialLog returns the path of a VM's serial console log (kept across
// runs).
func (cs *Consoles) SerialLog(ctx context.Context, config, vmName string) (string, error) {
	id, _, err := vmRef(ctx, cs.store, config, vmName)
	if err != nil {
		return "", err
	}
	p := hypervisor.Spec{RunDir: cs.host.runDir(id)}.SerialLogPath()
	if !fileExists(p) {
		return "", errdefs.NotFound("VM %q of %q has no console log yet (never deployed)", vmName, config)
	}
	return p, nil
}

// vmRef returns the store's ID of VM vmName of configuration config,
// and the host it runs on when config is deployed ("" otherwise, or when
// neither has a host recorded).
func vmRef(ctx context.Context, st store.Store, config, vmName string) (id int64, host string, err error) {
	err = st.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		vm, err := VMNamed(c, vmName)
		if err != nil {
			return err
		}
		id = vm.ID
		if c.State == store.StateDeployed {
			host = cmp.Or(vm.Host, c.Host)
		}
		return nil
	})
	return id, host, err
}
