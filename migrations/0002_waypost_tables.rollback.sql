DROP TABLE IF EXISTS notifications, message_statuses, webhook_events, outbound_jobs, messages, conversations;
