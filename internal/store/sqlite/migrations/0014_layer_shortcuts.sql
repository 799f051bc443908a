-- Shortcut layers (issue 15): a frozen layer written to stand for a run
-- of frozen layers, so that deep chains read through one layer. Its
-- parent_id is the run's parent (the file's backing, as for any layer);
-- shortcut_of is the run's top and shortcut_bottom its lowest layer (ids
-- kept after the run is released: history, not references, hence no
-- foreign key); shortcut_layers is the logical depth the shortcut stands
-- for (what the chain limit counts). 0 everywhere on other layers.
ALTER TABLE layers ADD COLUMN shortcut_of INTEGER NOT NULL DEFAULT 0;
ALTER TABLE layers ADD COLUMN shortcut_bottom INTEGER NOT NULL DEFAULT 0;
ALTER TABLE layers ADD COLUMN shortcut_layers INTEGER NOT NULL DEFAULT 0;
