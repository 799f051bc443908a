-- An object's history (the web console's configuration page) reads the
-- newest events of one object kind and name before an id: this index
-- answers it, newest first, without scanning the log.
CREATE INDEX events_object ON events(object, subject, id);
