//go:build debpackage

// Package deb tests the Debian package on this very host: built by
// scripts/build-deb.sh, installed with apt-get, its unit's command line
// run, used through the installed binary, removed. It installs into /usr,
// creates the group stagehand for a while and needs root, so it is built
// only with -tags debpackage and scripts/test.sh runs it alone, after the
// other tests (whose daemons would see the group).
package deb

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	unitFile  = "/lib/systemd/system/stagehand.service"
	installed = "/usr/bin/stagehand"
	enabled   = "/etc/systemd/system/multi-user.target.wants/stagehand.service"
)

// TestDebianPackage: the package installs with apt-get (its Depends met by
// this host), brings the binary, the unit (KillMode=process, the state
// directory 0710; systemd-analyze verify finds nothing wrong), man pages
// and completions, and makes the socket's group; the unit's ExecStart, run
// as systemd would (its EnvironmentFile read, $STAGEHAND_OPTS split into
// words) in a network namespace of its own, serves the installed CLI on
// the socket: a template imported by upload, a configuration made of it
// and cloned linked, names completed from the daemon; SIGTERM stops it
// cleanly. apt-get remove takes the binary and keeps the data and the
// configuration; purge takes the configuration and the unit's enablement
// and still keeps the data.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the package test installs a package: run it as root")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "stagehand").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("stagehand is installed on this host (%s): the test installs and removes its own build; remove it first", out)
	}
	_, err := user.LookupGroup("stagehand")
	hadGroup := err == nil
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// Build.
	began := time.Now()
	build := exec.Command(filepath.Join(root, "scripts", "build-deb.sh"), tmp)
	// xz would take half a minute more on 2 cores; what is packed is the same.
	build.Env = append(os.Environ(), "DEB_COMPRESSION=gzip")
	var buildErr bytes.Buffer
	build.Stderr = &buildErr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, buildErr.String())
	}
	deb := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`/stagehand_[0-9][^_/]*-1_[a-z0-9]+\.deb$`).MatchString(deb) {
		t.Fatalf("build-deb.sh printed %q, not a package path", deb)
	}
	t.Logf("built %s in %v", filepath.Base(deb), time.Since(began).Round(time.Millisecond))

	// Whatever happens next, leave the host as it was: the daemon (below)
	// is killed by its own cleanup, which runs first.
	t.Cleanup(func() {
		run(t, "dpkg", "--purge", "stagehand")
		if !hadGroup {
			if _, err := user.LookupGroup("stagehand"); err == nil {
				if out, err := exec.Command("delgroup", "--quiet", "stagehand").CombinedOutput(); err != nil {
					t.Errorf("delgroup stagehand: %v\n%s", err, out)
				}
			}
		}
	})

	// Install.
	began = time.Now()
	install := exec.Command("apt-get", "install", "-y", "-q", "--no-install-recommends", deb)
	install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install %s: %v\n%s", deb, err, out)
	}
	t.Logf("installed in %v", time.Since(began).Round(time.Millisecond))
	for _, f := range []string{
		installed, unitFile, "/etc/default/stagehand",
		"/usr/share/man/man1/stagehand.1.gz", "/usr/share/man/man1/stagehand-config-clone.1.gz", "/usr/share/man/man1/stagehand-serve.1.gz",
		"/usr/share/bash-completion/completions/stagehand", "/usr/share/zsh/vendor-completions/_stagehand", "/usr/share/fish/vendor_completions.d/stagehand.fish",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
		}
	}
	if _, err := user.LookupGroup("stagehand"); err != nil {
		t.Errorf("postinst made no group stagehand: %v", err)
	}
	if got, want := read(t, "/usr/share/bash-completion/completions/stagehand"), run(t, installed, "completion", "bash"); got != want {
		t.Errorf("the installed bash completion is not the binary's")
	}
	if page := run(t, "man", "-l", "/usr/share/man/man1/stagehand-config-clone.1.gz"); !strings.Contains(page, "stagehand config clone SRC NEW") {
		t.Errorf("man stagehand-config-clone:\n%s", page)
	}

	// The unit's command line, as systemd would run it.
	unit := parseUnit(t, read(t, unitFile))
	for key, want := range map[string]string{
		"Type": "simple", "KillMode": "process", "StateDirectory": "stagehand", "StateDirectoryMode": "0710",
		"EnvironmentFile": "-/etc/default/stagehand", "WantedBy": "multi-user.target",
	} {
		if unit[key] != want {
			t.Errorf("unit %s=%q, want %q", key, unit[key], want)
		}
	}
	// systemd's own reading of the unit: its keys, its ExecStart binary
	// and its Documentation pages (man) must all be there.
	if out, err := exec.Command("systemd-analyze", "verify", unitFile).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	if _, err := os.Lstat(enabled); err != nil {
		t.Errorf("postinst did not enable the unit: %v", err)
	}
	data := filepath.Join(tmp, "data")
	if err := os.WriteFile("/etc/default/stagehand", []byte(
		"# written by TestDebianPackage\nSTAGEHAND_OPTS=\"--data-dir "+data+" --accel tcg\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := parseEnvFile(t, read(t, strings.TrimPrefix(unit["EnvironmentFile"], "-")))
	argv := expandExecStart(unit["ExecStart"], env)
	if want := []string{installed, "serve", "--data-dir", "/var/lib/stagehand", "--data-dir", data, "--accel", "tcg"}; !slices.Equal(argv, want) {
		t.Fatalf("ExecStart expands to %q, want %q", argv, want)
	}
	ns := fmt.Sprintf("sh-deb-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	logPath := filepath.Join(tmp, "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	// systemd's environment: a plain PATH and the EnvironmentFile.
	daemon.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range env {
		daemon.Env = append(daemon.Env, k+"="+v)
	}
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	// done closes when the daemon has exited; waitErr is then its Wait.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = daemon.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			daemon.Process.Kill()
			<-done
		}
	})
	waitLog(t, logPath, done, "recovery done; accepting writes", 30*time.Second)

	// The installed CLI finds the daemon's socket in the data dir.
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(installed, args...)
		cmd.Env = append(os.Environ(), "STAGEHAND_DATA_DIR="+data, "STAGEHAND_SERVER=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("stagehand %s: %v: %s\nlast lines of the daemon's log:\n%s", strings.Join(args, " "), err, stderr.String(), tail(logPath, 20))
		}
		return string(out)
	}
	disk := filepath.Join(tmp, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", disk, "64M")
	cli("template", "import", "tmpl", "--disk", disk)
	cli("config", "create", "web", "--vm", "vm1=tmpl")
	cli("config", "clone", "web", "web-2")
	if chain := cli("disk", "chain", "web-2", "vm1"); strings.Count(strings.TrimSpace(chain), "\n") < 2 {
		t.Errorf("the linked clone's chain has fewer than 2 layers under its top:\n%s", chain)
	}
	if got := cli("__complete", "config", "show", ""); !regexp.MustCompile(`^web\t[^\n]*\nweb-2\t[^\n]*\n:4\n$`).MatchString(got) {
		t.Errorf("completion of configuration names from the installed daemon:\n%s", got)
	}
	if fi, err := os.Stat(filepath.Join(data, "stagehand.sock")); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("the socket with the group stagehand present: %v, %v; want mode 0660", fi.Mode(), err)
	}

	// SIGTERM, as systemctl stop sends it.
	daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("the daemon's exit on SIGTERM: %v\n%s", waitErr, tail(logPath, 20))
		}
	case <-time.After(20 * time.Second):
		t.Errorf("the daemon did not stop within 20s of SIGTERM")
	}

	// Remove: the binary goes, the data and the configuration stay.
	remove := exec.Command("apt-get", "remove", "-y", "-q", "stagehand")
	remove.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := remove.CombinedOutput(); err != nil {
		t.Fatalf("apt-get remove: %v\n%s", err, out)
	}
	if _, err := os.Stat(installed); err == nil {
		t.Errorf("%s is still there after apt-get remove", installed)
	}
	for _, kept := range []string{filepath.Join(data, "stagehand.db"), filepath.Join(data, "layers"), "/etc/default/stagehand"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("apt-get remove took %s: %v", kept, err)
		}
	}
	if st := run(t, "dpkg-query", "-W", "-f=${Status}", "stagehand"); st != "deinstall ok config-files" {
		t.Errorf("after remove, dpkg says %q", st)
	}

	// Purge: the configuration and the enablement go, the data stays.
	purge := exec.Command("dpkg", "--purge", "stagehand")
	said, err := purge.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, said)
	}
	if !strings.Contains(string(said), "kept") {
		t.Errorf("purge does not say what it kept:\n%s", said)
	}
	for _, gone := range []string{"/etc/default/stagehand", enabled, "/etc/systemd/system/stagehand.service"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is still there after purge", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "stagehand.db")); err != nil {
		t.Errorf("purge took the data: %v", err)
	}
}

// parseUnit returns the unit file's settings, the last of each key.
func parseUnit(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// parseEnvFile reads an EnvironmentFile as systemd does for the simple
// forms the package ships: KEY=value or KEY="value", # comments.
func parseEnvFile(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("environment file line %q", line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		m[k] = v
	}
	return m
}

// expandExecStart splits ExecStart into words and expands $NAME as
// systemd does: an unquoted word that is exactly $NAME becomes the value's
// whitespace-separated words (none when empty).
func expandExecStart(line string, env map[string]string) []string {
	var argv []string
	for _, w := range strings.Fields(line) {
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			argv = append(argv, strings.Fields(env[w[1:]])...)
			continue
		}
		argv = append(argv, w)
	}
	return argv
}

// waitLog waits until the daemon's log holds s; on failure (or the
// daemon's exit) it shows the log's last lines.
func waitLog(t *testing.T, path string, done <-chan struct{}, s string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(s)) {
			return
		}
		select {
		case <-done:
			t.Fatalf("the daemon exited before its log said %q:\n%s", s, tail(path, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("the daemon's log did not say %q within %v:\n%s", s, bound, tail(path, 30))
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a command that must succeed and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=100")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
