// Package disk owns qcow2 layers and chains through qemu-img: import a base,
// create a delta, freeze, detect an empty delta, consolidate a chain into a
// new base with progress, describe and check layers.
package disk

// Info describes one layer file.
type Info struct {
	Path        string // absolute
	Format      string // "qcow2" or "raw"
	VirtualSize int64
	ActualSize  int64  // bytes allocated on the host filesystem
	BackingFile string // absolute path of the backing file, "" for a base
}
