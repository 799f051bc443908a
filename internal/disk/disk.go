// Package disk owns qcow2 layers and chains: import a base, create a delta,
// freeze, detect an empty delta, consolidate a chain into a new base with
// progress, describe and check layers. It writes a new delta and reads a
// layer's mapping tables itself, the hot path of a linked clone; everything
// else goes through qemu-img.
package disk

// Info describes one layer file.
type Info struct {
	Path        string // absolute
	Format      string // "qcow2" or "raw"
	VirtualSize int64
	ActualSize  int64  // bytes allocated on the host filesystem
	BackingFile string // absolute path of the backing file, "" for a base
}
