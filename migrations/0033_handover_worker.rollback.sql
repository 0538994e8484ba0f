DROP INDEX IF EXISTS notifications_handover_idx;
