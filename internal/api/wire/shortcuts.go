package wire

// ShortcutRun is the run of frozen layers a shortcut layer stands for
// (issue 15): it reads as RunTop, on the run's parent.
type ShortcutRun struct {
	// RunTop and RunBottom are the run's layers (absolute paths, or
	// "layer N (released)" once released).
	RunTop    string `json:"run_top"`
	RunBottom string `json:"run_bottom"`
	// Layers is how many layers of clone history the shortcut stands
	// for: what the chain limit counts.
	Layers int `json:"layers"`
}

// ShortcutReport is the answer of POST /configs/{name}/shortcut: what one
// pass of the shortcut builder did for the configuration.
type ShortcutReport struct {
	Config string `json:"config"`
	// Built are the shortcut layers made (path and run).
	Built []ShortcutBuilt `json:"built"`
	// Rebased are the layer files whose header now names a shortcut;
	// Switched the running disks switched live ("CONFIG/VM/DISK");
	// Released the layer files released.
	Rebased  []string `json:"rebased"`
	Switched []string `json:"switched"`
	Released []string `json:"released"`
}

// ShortcutBuilt is one shortcut layer a pass made.
type ShortcutBuilt struct {
	Path string `json:"path"`
	ShortcutRun
}
