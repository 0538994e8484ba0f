DROP TABLE IF EXISTS media_chunks, media;
