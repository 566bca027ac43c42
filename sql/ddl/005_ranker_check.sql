-- The treatment check (docs/protocol.md, "The treatment model"): pooled over the window ending
-- D, every ranker arm against the best of popularity and ALS on the all-users, full-catalogue
-- cell, recall@20 and NDCG@20, per protocol. Written by the lift_rollup asset (replace
-- partition: window_end). CIs are the rollup's (user-day clusters, items resampled where shared).
CREATE TABLE IF NOT EXISTS reports.ranker_check (
    window_start    DATE    NOT NULL,
    window_end      DATE    NOT NULL,
    protocol        VARCHAR NOT NULL,
    arm             VARCHAR NOT NULL,   -- ranker_no_text, ranker_<encoder>[+slotsN]
    metric          VARCHAR NOT NULL,   -- recall | ndcg
    k               INTEGER NOT NULL,
    value           DOUBLE,             -- the ranker's pooled metric
    best_baseline   VARCHAR,            -- popularity | als: the higher of the two in this cell
    baseline_value  DOUBLE,
    abs_lift        DOUBLE,             -- value - baseline_value
    ci_low          DOUBLE,
    ci_high         DOUBLE,
    n_users         BIGINT,             -- user-days in the cell
    status          VARCHAR NOT NULL    -- above | reaches | short | below | too few
);
