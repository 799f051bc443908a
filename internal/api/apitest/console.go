package apitest

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
	"stagehand/internal/lab/deploy"
)

// EchoConsole serves the console socket of a running VM (where QEMU would
// listen) and sends every byte it reads back, like a serial console with
// echo on. It returns the socket's path. An echo session ends when its
// client half-closes or closes. Everything stops when the test ends.
func (l *Lab) EchoConsole(tb testing.TB, config, vm string) string {
	tb.Helper()
	sock := l.runFile(tb, config, vm, "")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		os.Remove(sock)
	})
	return sock
}

// SerialLog returns the file a deployed VM's serial log is written to (by
// QEMU; here by the test), next to its console socket.
func (l *Lab) SerialLog(tb testing.TB, config, vm string) string {
	tb.Helper()
	return l.runFile(tb, config, vm, "log")
}

// runFile returns the console socket (what "") or the serial log ("log")
// of a running VM, creating its run directory as QEMU does.
func (l *Lab) runFile(tb testing.TB, config, vm, what string) string {
	tb.Helper()
	sock, err := l.Deployments.VMConsoleSocket(context.Background(), config, vm)
	if err != nil {
		tb.Fatal(err)
	}
	spec := hypervisor.Spec{RunDir: filepath.Dir(sock)}
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if what == "log" {
		return spec.SerialLogPath()
	}
	return spec.ConsoleSocketPath()
}

// QEMU makes the lab run its VMs as real QEMU processes (under TCG, as on
// the machines that build Stagehand); segments and fences stay the fake
// host's, so its VMs must have no NIC.
func QEMU() Option {
	return func(o *lab.Options) {
		o.Hypervisor = deploy.QEMU{Log: o.Logger}
	}
}

// GuestTemplate imports the test guest (scripts/build-test-guest.sh, in
// testdata/guest/out) as template name, booting its kernel with a shell
// on the serial console (stagehand.shell). It skips the test when the guest or QEMU is missing.
func (l *Lab) GuestTemplate(tb testing.TB, name string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: no guests in the fast tier")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		tb.Skip("qemu-system-x86_64 not installed")
	}
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(file), "../../../testdata/guest/out")
	var files []string
	for _, f := range []string{"vmlinuz", "initrd.img", "cmdline"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			tb.Skipf("test guest not built (scripts/build-test-guest.sh): %v", err)
		}
		// The lab imports only from its import directories (the temp dir).
		p := filepath.Join(l.Dir, "images", name+"-"+f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			tb.Fatal(err)
		}
		files = append(files, p)
	}
	cmdline, _ := os.ReadFile(files[2])
	spec := lab.TemplateSpec{Name: name, Disks: []string{l.Image(tb, name+".qcow2", 64<<20)}, MemoryMiB: 256,
		Kernel: files[0], Initrd: files[1], Cmdline: strings.TrimSpace(string(cmdline)) + " stagehand.shell"}
	if _, err := l.Templates.Import(context.Background(), spec); err != nil {
		tb.Fatal(err)
	}
}
