-- Whether a marketing template may go to this contact of this business number: not when the latest
-- opt-out/opt-in of either of its identifiers (phone number, BSUID) is an opt-out, nor while it is
-- blocked. A contact with no event may. Utility and service messages do not ask.
CREATE OR REPLACE FUNCTION waypost_may_receive_marketing_v1(p_phone_number_id text, p_wa_id text, p_user_id text)
    RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce((
            SELECT e.kind = 'opt_in' FROM consent_events e
            WHERE e.phone_number_id = p_phone_number_id AND e.kind IN ('opt_out', 'opt_in')
              AND (e.wa_id = p_wa_id OR e.user_id = p_user_id)
            ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1), true)
       AND coalesce((
            SELECT e.kind = 'unblock' FROM consent_events e
            WHERE e.phone_number_id = p_phone_number_id AND e.kind IN ('block', 'unblock')
              AND (e.wa_id = p_wa_id OR e.user_id = p_user_id)
            ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1), true)
$$;
