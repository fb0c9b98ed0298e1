-- Users of the REST API (functions/opex_api). Accounts and balances live in
-- the engine; this table only knows who may sign in.
CREATE TABLE users (
    id            text        PRIMARY KEY,            -- uuid4 hex, also the engine's user_id
    email         text        NOT NULL,               -- stored lower-cased
    password_hash text        NOT NULL,               -- argon2id (PHC string)
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (email = lower(email)),
    CHECK (id ~ '^[0-9a-f]{32}$')
);
CREATE UNIQUE INDEX users_email_key ON users (email);
