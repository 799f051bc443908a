package daemon

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/peer"
	"stagehand/internal/syncbuf"
)

// peerPath is the test-only route that answers what peer.FromContext finds
// in a request's context.
const peerPath = "/test/peer"

type peerAnswer struct {
	Cred peer.Cred
	OK   bool
}

// answerPeer wraps the API's handler with the peerPath route.
func answerPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != peerPath {
			next.ServeHTTP(w, r)
			return
		}
		c, ok := peer.FromContext(r.Context())
		json.NewEncoder(w).Encode(peerAnswer{Cred: c, OK: ok})
	})
}

// getPeer asks the daemon, through hc at base, what credentials its
// request arrived with.
func getPeer(t *testing.T, hc *http.Client, base string) peerAnswer {
	t.Helper()
	resp, err := hc.Get(base + peerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a peerAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// socketClient is an http.Client that reaches the daemon over sock.
func socketClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func requireQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
}

// TestSocketCarriesThePeersCredentials runs the daemon and finds its socket
// in the data dir, root only (there is no stagehand group here) or
// root:stagehand 0660 (there is); a request over it carries this test
// process's uid, gid and pid in its context, one over TCP none. The socket
// is gone once the daemon stops.
func TestSocketCarriesThePeersCredentials(t *testing.T) {
	requireQemuImg(t)
	d := runDaemon(t, slog.LevelInfo, func(c *Config) { c.wrapHandler = answerPeer })
	sock := filepath.Join(d.cfg.DataDir, SocketFile)
	access := lookupSocketAccess("")
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != access.socketMode() {
		t.Errorf("socket %s: mode %s, want a socket %s", sock, fi.Mode(), access.socketMode())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(os.Getuid()) || (access.shared() && int(st.Gid) != access.gid) {
		t.Errorf("socket owned by %d:%d", st.Uid, st.Gid)
	}
	if want := "socket usable by root only"; !access.shared() && !strings.Contains(d.logs.String(), want) {
		t.Errorf("log does not say %q:\n%s", want, d.logs)
	}
	if !strings.Contains(d.logs.String(), "socket="+sock) {
		t.Errorf("the serving line does not name the socket:\n%s", d.logs)
	}

	got := getPeer(t, socketClient(sock), "http://localhost")
	want := peer.Cred{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	if !got.OK || got.Cred != want {
		t.Errorf("over the socket the request carried %+v, want %+v", got, want)
	}
	if got := getPeer(t, http.DefaultClient, "http://"+d.addr); got.OK {
		t.Errorf("over TCP the request carried %+v, want nothing", got)
	}

	d.stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after stop: %v, want gone", err)
	}
}

// TestSocketGroup runs the daemon with an existing group as the socket's
// (the stagehand group itself may not exist on the test host): the socket
// is 0660 in that group, the data dir 0710 in it (members may pass, not
// list), and the store file is root's only.
func TestSocketGroup(t *testing.T) {
	requireQemuImg(t)
	if os.Getuid() != 0 {
		t.Skip("changing a file's group to one the user is not in needs root")
	}
	g, err := user.LookupGroup("daemon")
	if err != nil {
		t.Skip("no group daemon to stand in for stagehand")
	}
	gid, _ := strconv.Atoi(g.Gid)
	d := runDaemon(t, slog.LevelInfo, func(c *Config) { c.socketGroup = "daemon" })
	for _, f := range []struct {
		path string
		mode fs.FileMode
		gid  int
	}{
		{filepath.Join(d.cfg.DataDir, SocketFile), 0o660, gid},
		{d.cfg.DataDir, 0o710, gid},
		{filepath.Join(d.cfg.DataDir, StoreFile), 0o600, -1},
	} {
		fi, err := os.Lstat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode || (f.gid >= 0 && int(fi.Sys().(*syscall.Stat_t).Gid) != f.gid) {
			t.Errorf("%s: mode %s group %d, want %s group %d", f.path, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, f.mode, f.gid)
		}
	}
	if !strings.Contains(d.logs.String(), `msg="socket usable by root and the group"`) || !strings.Contains(d.logs.String(), "group=daemon") {
		t.Errorf("log does not name the group:\n%s", d.logs)
	}
}

// TestStaleSocket: a socket file nothing answers on (a crashed daemon's)
// is replaced; one a daemon answers on, or a file that is not a socket,
// stops the start with an error and is left alone.
func TestStaleSocket(t *testing.T) {
	requireQemuImg(t)
	start := func(dir string) (error, string) {
		cfg := DefaultConfig()
		cfg.DataDir = dir
		cfg.NoVMs = true
		logs := &syncbuf.Buffer{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		exited := make(chan error, 1)
		go func() { exited <- Run(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
		for {
			select {
			case err := <-exited:
				return err, logs.String()
			default:
			}
			if strings.Contains(logs.String(), `msg="stagehand serving"`) {
				cancel()
				return <-exited, logs.String()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	crashed := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(crashed, SocketFile), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err, logs := start(crashed); err != nil || !strings.Contains(logs, "removing a stale socket") {
		t.Errorf("over a stale socket: %v\n%s", err, logs)
	}

	live := t.TempDir()
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(live, SocketFile), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err, _ := start(live); err == nil || !strings.Contains(err.Error(), "a daemon answers on it already") {
		t.Errorf("over a live socket: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(live, SocketFile)); err != nil {
		t.Errorf("the live socket was removed: %v", err)
	}

	file := t.TempDir()
	if err := os.WriteFile(filepath.Join(file, SocketFile), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err, _ := start(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(file, SocketFile)); err != nil || string(b) != "mine" {
		t.Errorf("the regular file became %q, %v", b, err)
	}
}

// TestSocketWithALongPath serves on a data dir whose socket path is longer
// than a sockaddr holds.
func TestSocketWithALongPath(t *testing.T) {
	requireQemuImg(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	d := runDaemon(t, slog.LevelInfo, func(c *Config) { c.DataDir = dir; c.wrapHandler = answerPeer })
	sock := filepath.Join(dir, SocketFile)
	if len(sock) <= maxSocketPath {
		t.Fatalf("socket path of %d bytes is not long", len(sock))
	}
	dirf, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dirf.Close()
	short := "/proc/self/fd/" + strconv.Itoa(int(dirf.Fd())) + "/" + SocketFile
	if got := getPeer(t, socketClient(short), "http://localhost"); !got.OK {
		t.Errorf("over the long socket: %+v", got)
	}
	d.stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after stop: %v, want gone", err)
	}
}
