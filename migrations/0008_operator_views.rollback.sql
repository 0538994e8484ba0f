DROP VIEW IF EXISTS waypost_conversation_queues, waypost_failed_sends, waypost_stuck_jobs, waypost_jobs_by_status;
