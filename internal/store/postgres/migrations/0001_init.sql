-- Endpoints and deployments as JSON documents (the store.Endpoint and
-- store.Deployment shapes, as in the SQLite store) with their version for
-- optimistic concurrency. Names compare byte-wise (COLLATE "C") so list
-- order is the same as SQLite's whatever the database's locale.
CREATE TABLE endpoints (
	name    text COLLATE "C" PRIMARY KEY,
	data    jsonb NOT NULL,
	version bigint NOT NULL
);

CREATE TABLE deployments (
	endpoint text COLLATE "C" NOT NULL REFERENCES endpoints (name) ON DELETE CASCADE,
	name     text COLLATE "C" NOT NULL,
	data     jsonb NOT NULL,
	version  bigint NOT NULL,
	PRIMARY KEY (endpoint, name)
);
