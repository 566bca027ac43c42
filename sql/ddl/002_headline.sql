-- The headline: one verdict per primary endpoint (docs/statistics.md).
-- One row per (window_start, window_end, protocol, endpoint). A daily report has
-- window_kind 'day' and window_start = window_end = D; the pooled rollup has
-- window_kind 'window'. Verdict: 'lift' | 'no detectable lift' | 'harm' | 'too few'.
CREATE TABLE IF NOT EXISTS reports.headline (
    window_start    DATE    NOT NULL,
    window_end      DATE    NOT NULL,
    window_kind     VARCHAR NOT NULL,   -- day | window
    protocol        VARCHAR NOT NULL,
    endpoint        VARCHAR NOT NULL,   -- e.g. lm_vs_tfidf/cold_items
    arm             VARCHAR NOT NULL,
    baseline_arm    VARCHAR NOT NULL,
    scope           VARCHAR NOT NULL,
    segment_kind    VARCHAR NOT NULL,
    segment         VARCHAR NOT NULL,
    metric          VARCHAR NOT NULL,
    k               INTEGER,
    value           DOUBLE,
    baseline_value  DOUBLE,
    abs_lift        DOUBLE,
    rel_lift        DOUBLE,
    ci_low          DOUBLE,   -- 95% CI of abs_lift (two-way / user-cluster bootstrap)
    ci_high         DOUBLE,
    p_value         DOUBLE,   -- normal p from the bootstrap SE; NULL for 'too few'
    p_adjusted      DOUBLE,   -- Holm over the primary endpoints of this window x protocol
    n_users         BIGINT,
    n_items         BIGINT,   -- distinct truth items (resampled by the two-way bootstrap)
    verdict         VARCHAR NOT NULL
);
