DROP TABLE IF EXISTS template_syncs;
DROP TABLE IF EXISTS template_events;
