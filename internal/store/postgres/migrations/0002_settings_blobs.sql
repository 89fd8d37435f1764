-- Settings the whole installation shares (store.Setting as JSON: the
-- sealed aml_token signing key set, the sealed admin credentials).
CREATE TABLE settings (
	name    text COLLATE "C" PRIMARY KEY,
	data    jsonb NOT NULL,
	version bigint NOT NULL
);

-- Uploaded snapshots (store.Blobs): one row per blob, written in the same
-- transaction as its chunks, so a blob is visible whole or not at all.
CREATE TABLE blobs (
	digest     text COLLATE "C" PRIMARY KEY,
	size       bigint NOT NULL,
	chunks     integer NOT NULL,
	created_at timestamptz NOT NULL
);

CREATE TABLE blob_chunks (
	digest text COLLATE "C" NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
	seq    integer NOT NULL,
	data   bytea NOT NULL,
	PRIMARY KEY (digest, seq)
);
