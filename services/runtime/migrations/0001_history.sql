-- Indicator history: the latest revision of every indicator key (contract section 4).
CREATE TABLE indicator_window (
    key           text PRIMARY KEY,
    service       text NOT NULL,
    indicator     text NOT NULL,
    window_size   text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    dimensions    jsonb NOT NULL,
    unit          text NOT NULL,
    count         bigint NOT NULL,
    revision      integer NOT NULL,
    final         boolean NOT NULL,
    late_events   integer NOT NULL,
    data          jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX indicator_window_lookup ON indicator_window (indicator, window_size, window_start);

-- One row per completed case (declaration, refund, payment): milestones and measures.
CREATE TABLE completed_case (
    service       text NOT NULL,
    case_id       text NOT NULL,
    completed_at  timestamptz NOT NULL,
    milestones    jsonb NOT NULL,
    measures      jsonb NOT NULL,
    attributes    jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, case_id)
);
CREATE INDEX completed_case_when ON completed_case (service, completed_at);
