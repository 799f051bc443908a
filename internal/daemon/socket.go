package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"stagehand/internal/peer"
)

// SocketFile is the daemon's unix socket inside the data dir. The CLI uses
// it by default when it exists.
const SocketFile = "stagehand.sock"

// SocketGroup is the group whose members may use the socket. When it
// exists the socket is root:stagehand 0660 and the data dir 0710 (its
// members may pass through to the socket, not list or read the files);
// when it does not, only root may use the socket (0600).
const SocketGroup = "stagehand"

// maxSocketPath is the longest path a sockaddr_un holds (108 bytes with
// the terminating NUL).
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// socketAccess is who may use the socket: gid -1 is root only.
type socketAccess struct {
	group string
	gid   int
}

// lookupSocketAccess finds group (SocketGroup unless a test names another).
func lookupSocketAccess(group string) socketAccess {
	if group == "" {
		group = SocketGroup
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return socketAccess{group: group, gid: -1}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return socketAccess{group: group, gid: -1}
	}
	return socketAccess{group: group, gid: gid}
}

func (a socketAccess) shared() bool { return a.gid >= 0 }

// socketMode and dataDirMode are the modes that let a's group reach the
// socket and nothing else.
func (a socketAccess) socketMode() fs.FileMode {
	if a.shared() {
		return 0o660
	}
	return 0o600
}

func (a socketAccess) dataDirMode() fs.FileMode {
	if a.shared() {
		return 0o710
	}
	return 0o700
}

// socketListener is the daemon's unix socket. Its connections carry their
// peer's credentials, read once at accept (see credAddr).
type socketListener struct {
	*net.UnixListener
	path  string
	inode uint64
	log   *slog.Logger
}

// listenSocket listens on the unix socket path, which it makes usable by
// access only. A socket file left by a daemon that crashed is removed,
// but only once a connect to it is refused: a daemon still answering there
// is an error.
func listenSocket(ctx context.Context, path string, access socketAccess, log *slog.Logger) (*socketListener, error) {
	if err := removeStaleSocket(ctx, path, log); err != nil {
		return nil, err
	}
	var ln *net.UnixListener
	err := withShortPath(path, func(p string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on socket %s: %w", path, err)
	}
	// The listener may know the socket by a /proc/self/fd path that is
	// gone by Close: the daemon removes the file itself (close).
	ln.SetUnlinkOnClose(false)
	sl := &socketListener{UnixListener: ln, path: path, log: log}
	fail := func(err error) (*socketListener, error) {
		sl.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if access.shared() {
		if err := os.Chown(path, os.Getuid(), access.gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(path, access.socketMode()); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sl.inode = st.Ino
	}
	if access.shared() {
		log.Info("socket usable by root and the group", "socket", path, "group", access.group, "mode", access.socketMode())
	} else {
		log.Info("socket usable by root only: no group "+access.group+" on this host", "socket", path, "mode", access.socketMode())
	}
	return sl, nil
}

// Close stops listening and removes the socket file, if it is still the
// one this listener made (a second daemon may have replaced it).
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == l.inode {
			if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				l.log.Warn("remove socket", "socket", l.path, "err", rerr)
			}
		}
	}
	return err
}

// Accept returns the next connection with its peer's credentials as its
// remote address. A connection whose credentials cannot be read is closed
// and skipped: a request without them must not be served as if from TCP.
func (l *socketListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peer.ReadCred(c)
		if err != nil {
			l.log.Warn("socket connection refused", "err", err)
			c.Close()
			continue
		}
		return &credConn{UnixConn: c, addr: credAddr{cred}}, nil
	}
}

// credConn is a socket connection whose RemoteAddr is its peer's
// credentials. They travel as the address because the connection reaches
// http.Server.ConnContext wrapped by the connection limit, which keeps
// RemoteAddr and hides everything else.
type credConn struct {
	*net.UnixConn
	addr credAddr
}

func (c *credConn) RemoteAddr() net.Addr { return c.addr }

// credAddr is a unix peer as a net.Addr; its String is what request logs
// show as the remote address.
type credAddr struct{ cred peer.Cred }

func (a credAddr) Network() string { return "unix" }
func (a credAddr) String() string {
	return fmt.Sprintf("unix:uid=%d,gid=%d,pid=%d", a.cred.UID, a.cred.GID, a.cred.PID)
}

// connContext is the daemon's http.Server.ConnContext: a request over the
// socket carries its peer's credentials; one over TCP carries none.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if a, ok := c.RemoteAddr().(credAddr); ok {
		return peer.WithCred(ctx, a.cred)
	}
	return ctx
}

// removeStaleSocket removes path if it is a socket nothing answers on.
func removeStaleSocket(ctx context.Context, path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket %s: a file that is not a socket is in the way (mode %s); not removing it", path, fi.Mode())
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = withShortPath(path, func(p string) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", p)
		if err == nil {
			c.Close()
		}
		return err
	})
	switch {
	case err == nil:
		return fmt.Errorf("socket %s: a daemon answers on it already (is stagehand serve running on this data dir?)", path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("socket %s: cannot tell whether a daemon answers on it, so it stays: %w", path, err)
	}
	log.Info("removing a stale socket: nothing answers on it", "socket", path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	return nil
}

// withShortPath calls fn with path, or, when path is too long for a
// sockaddr, with the same file reached through /proc/self/fd/N of its
// directory (a data dir deep in a temporary directory can be that long).
func withShortPath(path string, fn func(string) error) error {
	if len(path) <= maxSocketPath {
		return fn(path)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(short) > maxSocketPath {
		return fmt.Errorf("socket path %s is too long", path)
	}
	return fn(short)
}
