-- Trained detector models (seasonal baseline + IsolationForest), newest version per name wins.
CREATE TABLE IF NOT EXISTS detector_models (
    name       text NOT NULL,
    version    integer NOT NULL,
    trained_at timestamptz NOT NULL DEFAULT now(),
    points     integer NOT NULL DEFAULT 0,
    rows       bigint NOT NULL DEFAULT 0,
    params     jsonb NOT NULL DEFAULT '{}'::jsonb,
    blob       bytea NOT NULL,
    PRIMARY KEY (name, version)
);
