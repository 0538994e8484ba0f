-- Named queries of the dev tools (waypost/devtools/, the tests and the benchmarks), loaded by name
-- with waypost.sql.query("name"); the runtime never runs them.

-- devtools_database_exists --
-- Whether the database named %(name)s exists (`waypost dev` creates it on first start)
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- devtools_worker_registered --
-- Whether any procrastinate worker has registered itself: `waypost dev`'s worker is up
SELECT 1 FROM procrastinate_workers

-- devtools_workers_listening --
-- How many connections LISTEN for procrastinate's job notifications on this database (run without parameters)
SELECT count(*) AS listening
  FROM pg_stat_activity
 WHERE query LIKE 'LISTEN %%procrastinate%%' AND datname = current_database()

-- devtools_simulated_reply --
-- The reply job and the AI's reply to the simulated inbound message %(wamid)s
SELECT j.status AS job_status, j.skip_reason, j.last_error, r.status AS reply_status, r.body AS reply
  FROM messages i
  JOIN outbound_jobs j ON j.id = i.turn_id
  LEFT JOIN messages r ON r.reply_to_message_id = j.inbound_message_id AND r.author = 'ai'
 WHERE i.wa_message_id = %(wamid)s

-- devtools_create_database --
-- A new database: {name} (and {template}, in the _from form) are filled with psycopg.sql.Identifier
CREATE DATABASE {name}

-- devtools_create_database_from --
-- A new database as a copy of another (a migrated template: each test's own database)
CREATE DATABASE {name} TEMPLATE {template}

-- devtools_drop_database --
-- Drop a database if it exists; FORCE ends the sessions still connected to it
DROP DATABASE IF EXISTS {name} WITH (FORCE)

-- devtools_latest_inbound --
-- The Graph id of a contact's latest message (what `waypost simulate --kind edit|revoke` changes by default)
SELECT m.wa_message_id
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE c.wa_id = %(wa_id)s AND m.direction = 'inbound' AND m.type NOT IN ('edit', 'revoke')
 ORDER BY m.id DESC LIMIT 1
