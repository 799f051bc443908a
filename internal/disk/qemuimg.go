package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"stagehand/internal/command"
	"stagehand/internal/errdefs"
)

// QemuImg implements the lab's DiskTool with the qemu-img command, except
// CreateDelta and HasData, which handle qcow2 natively (see qcow2.go). Every
// method takes absolute paths (relative ones are made absolute against the
// working directory) and never changes a layer it was not asked to write.
type QemuImg struct {
	// Binary is the qemu-img executable. New finds it in $PATH; when it is
	// empty every method fails with an error saying qemu-img is missing.
	Binary string
	// Log receives each qemu-img command line at debug level and the
	// choices worth explaining; the daemon gives its own logger. Nil is
	// slog.Default().
	Log *slog.Logger
}

// log returns the logger of q's commands.
func (q *QemuImg) log() *slog.Logger {
	if q.Log == nil {
		return slog.Default()
	}
	return q.Log
}

// errNoQemuImg is returned by every method when qemu-img was not found.
var errNoQemuImg = errdefs.Unavailable("qemu-img not found in $PATH (install qemu-utils)")

// New returns a QemuImg using the qemu-img found in $PATH. It does not
// fail: a missing qemu-img is reported by each call, and by Version, which
// the daemon calls at start-up to fail early.
func New() *QemuImg {
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		return &QemuImg{}
	}
	return &QemuImg{Binary: path}
}

// Version returns the first line of `qemu-img --version`, or an error when
// qemu-img is missing or does not run.
func (q *QemuImg) Version(ctx context.Context) (string, error) {
	out, err := q.run(ctx, "--version")
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first), nil
}

func (q *QemuImg) run(ctx context.Context, args ...string) ([]byte, error) {
	if q.Binary == "" {
		return nil, errNoQemuImg
	}
	return command.Runner{Log: q.Log}.Run(ctx, q.Binary, args...)
}

func (q *QemuImg) runLines(ctx context.Context, onLine func(string), args ...string) error {
	if q.Binary == "" {
		return errNoQemuImg
	}
	return command.Runner{Log: q.Log}.RunLines(ctx, onLine, q.Binary, args...)
}

// imageInfo is one object of `qemu-img info --output=json`.
type imageInfo struct {
	Filename        string `json:"filename"`
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	ActualSize      int64  `json:"actual-size"`
	BackingFilename string `json:"backing-filename"`
	BackingFormat   string `json:"backing-filename-format"`
	Encrypted       bool   `json:"encrypted"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
			Corrupt  bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// info runs `qemu-img info` on path. extra holds options such as "-U" or
// "-f qcow2"; path must already be absolute.
func (q *QemuImg) info(ctx context.Context, path string, extra ...string) (imageInfo, error) {
	args := append(append([]string{"info", "--output=json"}, extra...), path)
	out, err := q.run(ctx, args...)
	if err != nil {
		return imageInfo{}, err
	}
	var ii imageInfo
	if err := json.Unmarshal(out, &ii); err != nil {
		return imageInfo{}, fmt.Errorf("decode qemu-img info: %w", err)
	}
	return ii, nil
}

// Info describes one layer file. It opens the file with -U (force share)
// so that it also works on the top layer of a running VM.
func (q *QemuImg) Info(ctx context.Context, path string) (Info, error) {
	path, err := absPath(path)
	if err != nil {
		return Info{}, err
	}
	if _, err := os.Stat(path); err != nil {
		return Info{}, fmt.Errorf("info %q: %w", path, err)
	}
	ii, err := q.info(ctx, path, "-U")
	if err != nil {
		return Info{}, fmt.Errorf("info %q: %w", path, err)
	}
	return Info{
		Path:        path,
		Format:      ii.Format,
		VirtualSize: ii.VirtualSize,
		ActualSize:  ii.ActualSize,
		BackingFile: resolveBacking(path, ii.BackingFilename),
	}, nil
}

// Chain returns the absolute paths of path's backing chain, top first.
func (q *QemuImg) Chain(ctx context.Context, path string) ([]string, error) {
	path, err := absPath(path)
	if err != nil {
		return nil, err
	}
	out, err := q.run(ctx, "info", "-U", "--backing-chain", "--output=json", path)
	if err != nil {
		return nil, fmt.Errorf("chain of %q: %w", path, err)
	}
	var infos []imageInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		return nil, fmt.Errorf("chain of %q: decode qemu-img info: %w", path, err)
	}
	// qemu-img prints each backing file as it resolved it; resolve the
	// recorded names ourselves so every entry is absolute and clean.
	chain := []string{path}
	for i, ii := range infos {
		if ii.BackingFilename == "" {
			if i != len(infos)-1 {
				return nil, fmt.Errorf("chain of %q: layer %q has no backing file but is not last", path, chain[i])
			}
			break
		}
		chain = append(chain, resolveBacking(chain[i], ii.BackingFilename))
	}
	if len(chain) != len(infos) {
		return nil, fmt.Errorf("chain of %q: qemu-img listed %d layers, backing files name %d", path, len(infos), len(chain))
	}
	return chain, nil
}

// resolveBacking turns a backing file name as recorded in layer into an
// absolute path: relative names are relative to the layer's directory.
// Names with a protocol prefix ("nbd:", "json:") are returned as they are.
func resolveBacking(layer, backing string) string {
	if backing == "" || filepath.IsAbs(backing) || hasProtocol(backing) {
		return backing
	}
	return filepath.Join(filepath.Dir(layer), backing)
}

// hasProtocol reports whether QEMU would read name as "protocol:rest"
// rather than a file name: a ':' before any '/'.
func hasProtocol(name string) bool {
	colon := strings.IndexByte(name, ':')
	slash := strings.IndexByte(name, '/')
	return colon >= 0 && (slash < 0 || colon < slash)
}

// absPaths makes each of paths absolute in place (absPath).
func absPaths(paths ...*string) error {
	for _, p := range paths {
		abs, err := absPath(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

func absPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", path, err)
	}
	return abs, nil
}
