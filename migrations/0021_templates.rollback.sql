DROP TABLE IF EXISTS message_templates;
