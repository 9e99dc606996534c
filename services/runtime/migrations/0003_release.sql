-- The cross-border release's audit (docs/contract.md section 8, docs/release.md). It never leaves:
-- the exact values beside what was released, so an auditor can check every decision.

-- One row per cell and destination: decided once, never updated (what makes decisions sticky).
CREATE TABLE release_decision (
    destination     text        NOT NULL,
    cell_key        text        NOT NULL,  -- <indicator>|<window>|<window_start>|<k=v,...>
    indicator       text        NOT NULL,
    window_size     text        NOT NULL CHECK (window_size IN ('P1D', 'P1M')),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    dimensions      jsonb       NOT NULL,
    unit            text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('released', 'suppressed')),
    reason          text        CHECK (reason IN ('min_cases', 'min_contributors', 'dominance', 'secondary')),
    exact           jsonb       NOT NULL,  -- internal values: never released as such
    released        jsonb,                 -- the rounded values on the topic (NULL when suppressed)
    policy          text        NOT NULL,
    policy_version  text        NOT NULL,
    policy_sha256   text        NOT NULL,
    decided_at      timestamptz NOT NULL,
    PRIMARY KEY (destination, cell_key),
    CHECK ((status = 'released') = (reason IS NULL))
);
CREATE INDEX release_decision_window ON release_decision (destination, window_start);

-- A change to a cell after its decision: recorded, never released (once per distinct value).
CREATE TABLE release_withheld (
    destination     text        NOT NULL,
    cell_key        text        NOT NULL,
    exact           jsonb       NOT NULL,
    exact_sha256    text        NOT NULL,
    policy_sha256   text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, cell_key, exact_sha256)
);

-- How far each destination's windows are decided: the event time every input partition reached
-- (a window is final, and decided, once its end plus its indicator's grace is behind it).
CREATE TABLE release_progress (
    destination     text        PRIMARY KEY,
    event_time      timestamptz NOT NULL,
    policy_sha256   text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
