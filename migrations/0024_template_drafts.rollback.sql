DROP TABLE IF EXISTS template_drafts;
