package doctor

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"stagehand/internal/disk"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// ProblemMissingArchiveFile is a file an archive's manifest lists that is
// missing or of another size.
const ProblemMissingArchiveFile = "missing-archive-file"

// archiveDirRE matches the directories the lab makes in the archive
// storage; anything else there is not the lab's and is left alone.
var archiveDirRE = regexp.MustCompile(`^a-[0-9a-f]{16}$`)

// checkArchives checks the archive storage against the store: every file
// of every archive is there with its size and nothing half-written is in
// it; every archive directory belongs to an archive (or to an operation in
// flight); no temporary file or directory (".NAME.tmp": an archive being
// built, a bundle being imported) is left by an interrupted run. With
// repair it removes orphan archive directories and the temporary ones.
func (d *run) checkArchives() error {
	root := d.dr.cfg.ArchiveDir
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	// Read the records after listing, as checkLeftovers does.
	var archives []store.Archive
	if err := d.dr.cfg.Store.View(d.ctx, func(tx store.Tx) error {
		var err error
		archives, err = tx.Archives().List()
		return err
	}); err != nil {
		return err
	}
	journalled, err := d.dr.knownFiles(d.ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for i := range archives {
		a := &archives[i]
		known[a.Dir] = true
		dir := filepath.Join(root, a.Dir)
		if d.inFlight[journal.DirEntry(dir)] || journalled[journal.DirEntry(dir)] {
			continue
		}
		d.checkArchiveFiles(a, dir)
	}
	for _, e := range entries {
		path := filepath.Join(root, e.Name())
		switch {
		case journalled[journal.DirEntry(path)] || journalled[path] || d.reported[path]:
		case disk.IsTempName(e.Name()):
			d.leftover(path, e.IsDir(), "")
		case e.IsDir() && archiveDirRE.MatchString(e.Name()) && !known[e.Name()]:
			p := d.add(Problem{Kind: ProblemOrphanFile, Subject: path, Detail: "archive directory no archive refers to", Repairable: true})
			if d.repair {
				p.Repaired = os.RemoveAll(path) == nil
			}
		}
	}
	return nil
}

// checkArchiveFiles checks one archive's directory: each file its manifest
// lists is there with its size, and no temporary file is inside.
func (d *run) checkArchiveFiles(a *store.Archive, dir string) {
	m, err := bundle.Parse(a.Manifest)
	if err != nil {
		d.add(Problem{Kind: ProblemCheckFailed, Subject: a.Name, Detail: err.Error()})
		return
	}
	for _, f := range m.Files() {
		p := filepath.Join(dir, f.Path)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			d.add(Problem{Kind: ProblemMissingArchiveFile, Subject: p, Detail: fmt.Sprintf("archive %q: %v", a.Name, err)})
		case st.Size() != f.Size:
			d.add(Problem{Kind: ProblemMissingArchiveFile, Subject: p, Detail: fmt.Sprintf("archive %q: %d bytes, the manifest says %d", a.Name, st.Size(), f.Size)})
		}
	}
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir || !disk.IsTempName(e.Name()) {
			return nil
		}
		d.leftover(path, e.IsDir(), "")
		if e.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}
