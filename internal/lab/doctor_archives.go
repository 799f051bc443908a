package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"stagehand/internal/store"
)

// ProblemMissingArchiveFile is a file an archive's manifest lists that is
// missing or of another size.
const ProblemMissingArchiveFile = "missing-archive-file"

// archiveDirRE matches the directories the lab makes in the archive
// storage; anything else there is not the lab's and is left alone.
var archiveDirRE = regexp.MustCompile(`^a-[0-9a-f]{16}$`)

// doctorArchives checks the archive storage against the store: every file
// of every archive is there with its size, and every archive directory
// belongs to an archive (or to an operation in flight). With repair it
// removes orphan archive directories.
func (s *Service) doctorArchives(ctx context.Context, repair bool, inFlight map[string]bool, add func(Problem) *Problem) error {
	var archives []store.Archive
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		archives, err = tx.ListArchives()
		return err
	}); err != nil {
		return err
	}
	known := map[string]bool{}
	for i := range archives {
		a := &archives[i]
		known[a.Dir] = true
		dir := s.archiveDirOf(a)
		if inFlight[dirEntry(dir)] {
			continue
		}
		m, err := parseManifest(a.Manifest)
		if err != nil {
			add(Problem{Kind: ProblemCheckFailed, Subject: a.Name, Detail: err.Error()})
			continue
		}
		for _, f := range m.files() {
			p := filepath.Join(dir, f.Path)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				add(Problem{Kind: ProblemMissingArchiveFile, Subject: p, Detail: fmt.Sprintf("archive %q: %v", a.Name, err)})
			case st.Size() != f.Size:
				add(Problem{Kind: ProblemMissingArchiveFile, Subject: p, Detail: fmt.Sprintf("archive %q: %d bytes, the manifest says %d", a.Name, st.Size(), f.Size)})
			}
		}
	}
	entries, err := os.ReadDir(s.life.archiveDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(s.life.archiveDir, e.Name())
		if !e.IsDir() || !archiveDirRE.MatchString(e.Name()) || known[e.Name()] || inFlight[dirEntry(dir)] {
			continue
		}
		p := add(Problem{Kind: ProblemOrphanFile, Subject: dir, Detail: "archive directory no archive refers to", Repairable: true})
		if repair {
			p.Repaired = os.RemoveAll(dir) == nil
		}
	}
	return nil
}
