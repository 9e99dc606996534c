-- Every case's latest state, open ones too, from the case topics (docs/contract.md section 7).
-- completed_case stays, as a view of the completed ones, for the queries written against it.
CREATE TABLE case_state (
    service       text NOT NULL,
    case_id       text NOT NULL,
    status        text NOT NULL,
    event_time    timestamptz NOT NULL,
    milestones    jsonb NOT NULL,
    measures      jsonb NOT NULL,
    attributes    jsonb NOT NULL,
    revision      integer NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, case_id)
);
CREATE INDEX case_state_status ON case_state (service, status, event_time);

INSERT INTO case_state (service, case_id, status, event_time, milestones, measures, attributes, revision)
SELECT service, case_id, 'completed', completed_at, milestones, measures, attributes, 1 FROM completed_case;
DROP TABLE completed_case;

CREATE VIEW completed_case AS
SELECT service, case_id, event_time AS completed_at, milestones, measures, attributes, updated_at
FROM case_state WHERE status = 'completed';
