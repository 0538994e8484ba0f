-- The knowledge base the AI answers from (README "Knowledge base"): documents and question/answer
-- pairs, split into passages indexed with PostgreSQL full-text search. Re-runnable.
-- depends: 0027_notification_once

CREATE TABLE IF NOT EXISTS kb_documents (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE kb_documents
    ADD COLUMN IF NOT EXISTS title text NOT NULL,
    -- markdown | text | pdf | qa (one question/answer pair)
    ADD COLUMN IF NOT EXISTS source_kind text NOT NULL,
    -- the text search configuration its passages are indexed with (WAYPOST_KB_LANGUAGE, or --language)
    ADD COLUMN IF NOT EXISTS language regconfig NOT NULL DEFAULT 'simple',
    ADD COLUMN IF NOT EXISTS filename text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    -- 'cli', or the email of the operator who added it in the inbox
    ADD COLUMN IF NOT EXISTS created_by text NOT NULL DEFAULT 'cli';
ALTER TABLE kb_documents DROP CONSTRAINT IF EXISTS kb_documents_source_kind_check;
ALTER TABLE kb_documents
    ADD CONSTRAINT kb_documents_source_kind_check CHECK (source_kind IN ('markdown', 'text', 'pdf', 'qa'));

CREATE TABLE IF NOT EXISTS kb_passages (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE kb_passages
    ADD COLUMN IF NOT EXISTS document_id bigint NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
    -- its place in the document, from 1
    ADD COLUMN IF NOT EXISTS seq integer NOT NULL,
    -- the headings it sits under (a PDF: its page; a question/answer pair: the question)
    ADD COLUMN IF NOT EXISTS heading text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS text text NOT NULL,
    ADD COLUMN IF NOT EXISTS language regconfig NOT NULL DEFAULT 'simple',
    -- the heading's weight in the ranking: B (0.4) under a document's headings, which many passages
    -- share; A (1.0, as the text) for a pair's question
    ADD COLUMN IF NOT EXISTS heading_weight "char" NOT NULL DEFAULT 'B',
    ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector(language, heading), heading_weight) || setweight(to_tsvector(language, text), 'A')
    ) STORED;
CREATE UNIQUE INDEX IF NOT EXISTS kb_passages_document_seq_key ON kb_passages (document_id, seq);
CREATE INDEX IF NOT EXISTS kb_passages_tsv_idx ON kb_passages USING gin (tsv);
