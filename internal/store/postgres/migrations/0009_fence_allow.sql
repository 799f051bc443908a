-- Egress allow-lists (issue 15): a fenced deployment's allowed
-- destinations, canonical entries (CIDR[:PORT[/PROTO]]) separated by
-- commas, kept with fence_policy so a restarted daemon rebuilds the same
-- rules; '' is no list.
ALTER TABLE configs ADD COLUMN fence_allow TEXT NOT NULL DEFAULT '';
