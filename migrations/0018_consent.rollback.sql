DROP TABLE IF EXISTS block_requests;
DROP TABLE IF EXISTS consent_events;
