-- The knowledge base (migration 0028_knowledge; README "Knowledge base" and "Schema").

-- kb_language_exists --
-- Whether a text search configuration of that name exists (WAYPOST_KB_LANGUAGE, --language)
SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = %(language)s) AS found

-- kb_document_insert --
INSERT INTO kb_documents (title, source_kind, language, filename, created_by)
VALUES (%(title)s, %(source_kind)s, %(language)s::regconfig, %(filename)s, %(created_by)s)
RETURNING id

-- kb_passage_insert --
-- One passage of a document, indexed in its document's language
INSERT INTO kb_passages (document_id, seq, heading, text, language, heading_weight)
SELECT %(document_id)s, %(seq)s, %(heading)s, %(text)s, d.language,
       CASE d.source_kind WHEN 'qa' THEN 'A' ELSE 'B' END::"char"
  FROM kb_documents d WHERE d.id = %(document_id)s

-- kb_documents_list --
-- Every document and pair, newest first, with its passage count
SELECT d.id, d.title, d.source_kind, d.language::text AS language, d.filename, d.created_at, d.created_by,
       count(p.id) AS passages, sum(length(p.text)) AS chars
  FROM kb_documents d
  LEFT JOIN kb_passages p ON p.document_id = d.id
 GROUP BY d.id
 ORDER BY d.created_at DESC, d.id DESC
 LIMIT %(limit)s

-- kb_document_passages --
SELECT seq, heading, text FROM kb_passages WHERE document_id = %(document_id)s ORDER BY seq

-- kb_document_delete --
-- Its passages go with it (ON DELETE CASCADE)
DELETE FROM kb_documents WHERE id = %(document_id)s RETURNING id, title

-- kb_search --
-- The passages that match any word of the query (the caller joins the words with `or`), ranked by
-- cover density scaled to 0..1 (ts_rank_cd normalization 32: rank / (rank + 1)). Each passage is
-- searched in its own language; `qa_only` keeps question/answer pairs only (the `rules` provider)
WITH queries AS (
    SELECT l.language, websearch_to_tsquery(l.language, %(query)s) AS query
      FROM (SELECT DISTINCT language FROM kb_documents) l  -- documents: far fewer rows than passages
)
SELECT p.id AS passage_id, p.document_id, d.title, d.source_kind, p.seq, p.heading, p.text,
       ts_rank_cd(p.tsv, q.query, 32)::float8 AS score
  FROM queries q
  JOIN kb_passages p ON p.language = q.language AND p.tsv @@ q.query
  JOIN kb_documents d ON d.id = p.document_id
 WHERE NOT %(qa_only)s OR d.source_kind = 'qa'
 ORDER BY score DESC, p.id
 LIMIT %(limit)s
