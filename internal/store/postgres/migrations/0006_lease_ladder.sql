-- Graduated leases (issue 15): the step of its workspace's lease ladder a
-- configuration's deployment reached, the expiry the ladder counts from
-- (0 when none: still the deployment lease's, or cancelled by an
-- extension), and when the step was taken; each workspace's lease policy.
ALTER TABLE leases ADD COLUMN ladder_step TEXT NOT NULL DEFAULT '';
ALTER TABLE leases ADD COLUMN ladder_expires BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN ladder_at BIGINT NOT NULL DEFAULT 0;

CREATE TABLE lease_policies (
	workspace_id BIGINT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
	policy       TEXT   NOT NULL -- JSON: the ladder and the webhook
);
