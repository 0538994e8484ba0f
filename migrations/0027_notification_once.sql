-- A notification that must be made once (the monthly service budget's threshold and cap) carries a
-- `once_key`, unique: two workers crossing the threshold at the same moment make one, where the
-- earlier "insert unless one exists" made two. Re-runnable.
-- depends: 0025_reengagement_functions

ALTER TABLE notifications ADD COLUMN IF NOT EXISTS once_key text;
-- the budget notifications made before this migration keep their text as their key (the earliest of
-- any doubled pair takes it)
UPDATE notifications n SET once_key = n.kind || ':' || n.body
 WHERE n.kind IN ('service_budget_threshold', 'service_budget_cap') AND n.once_key IS NULL
   AND n.id = (SELECT min(o.id) FROM notifications o WHERE o.kind = n.kind AND o.body = n.body);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_once_key_key ON notifications (once_key) WHERE once_key IS NOT NULL;
