DROP TABLE IF EXISTS kb_passages;
DROP TABLE IF EXISTS kb_documents;
