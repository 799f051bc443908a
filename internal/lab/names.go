package lab

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/journal"
)

// CheckName accepts the names users give to things: templates,
// networks, configurations, VMs and archives, and the directory's users,
// organizations, workspaces and groups. 1 to 63 characters of letters,
// digits, '.', '_' and '-', starting with a letter or digit, without two
// dots in a row. That rules out '/' (it separates org/ws), ':' (it marks
// group:G), '..', spaces and anything a shell or a path would misread
// (docs/decisions.md, "Names").
func CheckName(kind, name string) error {
	if name == "" {
		return errdefs.Invalid("%s name is empty", kind)
	}
	if len(name) > 63 {
		return errdefs.Invalid("%s name %q is longer than 63 characters", kind, name)
	}
	if strings.Contains(name, "..") {
		return errdefs.Invalid("%s name %q is not allowed: it holds \"..\"", kind, name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if i > 0 {
			ok = ok || r == '.' || r == '_' || r == '-'
		}
		if !ok {
			return errdefs.Invalid("%s name %q is not allowed: use letters, digits, '.', '_' and '-', starting with a letter or digit", kind, name)
		}
	}
	return nil
}

// Bounds of the free text users attach to things. They are shown in
// tables and event lists, so they stay short enough to read, and a request
// cannot make every later list carry megabytes.
const (
	MaxDescription = 1024
	MaxOwner       = 128
)

// checkText accepts a free-text field (a description, an owner): at most
// max bytes of valid UTF-8 without NUL or other control characters, which
// would end up raw on a user's terminal or cut a C string short.
func checkText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return errdefs.Invalid("%s of %d bytes is longer than %d", field, len(s), max)
	case hasControl(s):
		return errdefs.Invalid("%s %q holds a NUL or control character (or is not UTF-8)", field, s)
	}
	return nil
}

// newLayerPath returns a fresh layer path relative to the data dir. Layers
// live flat in one directory so that backing files are recorded as bare
// file names and the data dir can move.
func newLayerPath() string {
	return filepath.Join(layersDir, "l-"+journal.RandomHex(8)+".qcow2")
}

// newMAC returns a random locally administered unicast MAC address (first
// byte 0x52, the prefix QEMU users know, followed by 40 random bits).
func newMAC() string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return fmt.Sprintf("52:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4])
}

// abs turns a data-dir-relative path into an absolute one.
// Archive files, outside the data dir, are journalled with absolute paths.
func (s *core) abs(rel string) string { return journal.Abs(s.dataDir, rel) }

func sortedUnique(keys []string) []string {
	sort.Strings(keys)
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}
