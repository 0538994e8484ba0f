"""The live inbox hears of the AI's reply job too (trigger waypost_inbox_outbound_jobs): a job skipped
(the AI paused, a handover) or failed changes no message or conversation row, so an open conversation
kept showing "AI is replying…" until something else changed. Only the changes a page shows are
announced: pending and running look the same. Re-runnable."""

from yoyo import step

__depends__ = {"0038_reply_start_history"}

TRIGGER = """
DROP TRIGGER IF EXISTS waypost_inbox_outbound_jobs ON outbound_jobs;
CREATE TRIGGER waypost_inbox_outbound_jobs AFTER UPDATE OF status ON outbound_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NOT (OLD.status IN ('pending', 'running') AND NEW.status IN ('pending', 'running')))
    EXECUTE FUNCTION waypost_notify_inbox_v1('conversation_id');
"""

steps = [step(TRIGGER, "DROP TRIGGER IF EXISTS waypost_inbox_outbound_jobs ON outbound_jobs")]
