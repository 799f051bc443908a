package lease

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"stagehand/internal/store"
)

// Space is a snapshot of the layer tree and of what refers to each layer,
// to compute what deleting a set of objects would really free. Layers are
// shared: a layer is freed only when every disk and child that keeps it
// goes too, exactly as the lab's releaseLayers decides at deletion, so
// deleting several objects together can free more than the sum of each
// alone. The lab fills it in one store transaction (NewSpace, AddDisk,
// AddStateFile, AddArchive).
type Space struct {
	layers     map[int64]store.Layer
	children   map[int64]int
	topRefs    map[int64]int // disks whose top the layer is
	configTops map[string][]int64
	stateFiles map[string][]string // saved states, deleted with the configuration
	archives   map[string]string   // archive name -> directory
	sizes      map[int64]int64     // allocated bytes of layers, filled lazily
}

// Ref names one object that deleting frees space of.
type Ref struct {
	Object string // ObjectConfig, ObjectLibrary or ObjectArchive
	Name   string
}

// LayerSizer returns the bytes a layer's file (a path as the store keeps
// it) takes on disk.
type LayerSizer func(ctx context.Context, path string) (int64, error)

// NewSpace starts a space model over every layer, by ID.
func NewSpace(layers map[int64]store.Layer) *Space {
	m := &Space{layers: layers, children: map[int64]int{}, topRefs: map[int64]int{},
		configTops: map[string][]int64{}, stateFiles: map[string][]string{}, archives: map[string]string{}, sizes: map[int64]int64{}}
	for _, l := range layers {
		if l.ParentID != 0 {
			m.children[l.ParentID]++
		}
	}
	return m
}

func key(object, name string) string { return object + "/" + name }

// AddDisk records that a disk of the configuration (object, name) has the
// layer top as its top.
func (m *Space) AddDisk(object, name string, top int64) {
	m.topRefs[top]++
	k := key(object, name)
	m.configTops[k] = append(m.configTops[k], top)
}

// AddStateFile records a saved state file deleted with the configuration.
func (m *Space) AddStateFile(object, name, path string) {
	k := key(object, name)
	m.stateFiles[k] = append(m.stateFiles[k], path)
}

// AddArchive records the directory of an archive.
func (m *Space) AddArchive(name, dir string) { m.archives[name] = dir }

// freedLayers returns the layers deleting the configurations keys would
// release, by the rule of the lab's releaseLayers.
func (m *Space) freedLayers(keys []string) []int64 {
	topRefs := map[int64]int{}
	children := map[int64]int{}
	var queue []int64
	for _, k := range keys {
		for _, id := range m.configTops[k] {
			topRefs[id]--
			queue = append(queue, id)
		}
	}
	freed := map[int64]bool{}
	var out []int64
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		l, ok := m.layers[id]
		if !ok || freed[id] || l.TemplateID != 0 {
			continue
		}
		if m.topRefs[id]+topRefs[id] > 0 || m.children[id]+children[id] > 0 {
			continue
		}
		freed[id] = true
		out = append(out, id)
		if l.ParentID != 0 {
			children[l.ParentID]--
			queue = append(queue, l.ParentID)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// FreedLayer is one layer a deletion would release, with its size.
type FreedLayer struct {
	ID    int64
	Path  string // as the store keeps it
	Bytes int64
}

// Frees returns the bytes deleting objects together frees; size measures
// a freed layer (once: the model remembers it).
func (m *Space) Frees(ctx context.Context, size LayerSizer, objects []Ref) (int64, error) {
	total, _, err := m.FreesLayers(ctx, size, objects)
	return total, err
}

// FreesLayers is Frees with the layers it counts: the bytes deleting
// objects together frees, and which layers (by ID) are released.
func (m *Space) FreesLayers(ctx context.Context, size LayerSizer, objects []Ref) (int64, []FreedLayer, error) {
	var keys, states []string
	var total int64
	for _, o := range objects {
		if o.Object == ObjectArchive {
			total += AllocatedBytes(m.archives[o.Name])
			continue
		}
		k := key(o.Object, o.Name)
		keys = append(keys, k)
		states = append(states, m.stateFiles[k]...)
	}
	total += freedStateBytes(states)
	var layers []FreedLayer
	for _, id := range m.freedLayers(keys) {
		n, ok := m.sizes[id]
		if !ok {
			var err error
			if n, err = size(ctx, m.layers[id].Path); err != nil {
				return 0, nil, fmt.Errorf("size of layer %s: %w", m.layers[id].Path, err)
			}
			m.sizes[id] = n
		}
		total += n
		layers = append(layers, FreedLayer{ID: id, Path: m.layers[id].Path, Bytes: n})
	}
	return total, layers, nil
}

// AllocatedBytes returns the bytes path (a file, or a directory with all
// it holds) takes on its filesystem.
func AllocatedBytes(path string) int64 {
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && !st.IsDir() {
			total += sys.Blocks * 512
		}
		return nil
	})
	return total
}
