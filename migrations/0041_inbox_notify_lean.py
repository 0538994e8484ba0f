"""The live inbox's triggers call waypost_notify_inbox_v2, which reads the conversation id from its
column instead of converting the whole row to jsonb (issue 17). Same triggers, same payloads; the
rollback puts v1 back. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0040_plan_proof_lookup"}


def triggers(function: str) -> str:
    """The four waypost_inbox_* triggers (0009_operator_inbox, 0039_inbox_reply_jobs) calling `function`."""
    return f"""
DROP TRIGGER IF EXISTS waypost_inbox_conversations ON conversations;
CREATE TRIGGER waypost_inbox_conversations AFTER INSERT OR UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION {function}('id');
DROP TRIGGER IF EXISTS waypost_inbox_messages ON messages;
CREATE TRIGGER waypost_inbox_messages AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION {function}('conversation_id');
DROP TRIGGER IF EXISTS waypost_inbox_notifications ON notifications;
CREATE TRIGGER waypost_inbox_notifications AFTER INSERT OR UPDATE ON notifications
    FOR EACH ROW EXECUTE FUNCTION {function}('conversation_id');
DROP TRIGGER IF EXISTS waypost_inbox_outbound_jobs ON outbound_jobs;
CREATE TRIGGER waypost_inbox_outbound_jobs AFTER UPDATE OF status ON outbound_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NOT (OLD.status IN ('pending', 'running') AND NEW.status IN ('pending', 'running')))
    EXECUTE FUNCTION {function}('conversation_id');
"""


steps = [
    step(function_source("waypost_notify_inbox_v2"), "DROP FUNCTION IF EXISTS waypost_notify_inbox_v2()"),
    step(triggers("waypost_notify_inbox_v2"), triggers("waypost_notify_inbox_v1")),
]
