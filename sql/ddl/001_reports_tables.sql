-- Analyst tables of the nightly cold-start lift pipeline (schema `reports`).
-- Idempotent: safe to run on every materialization of the analyst_views asset.
-- Writers replace a partition (e.g. one day x protocol) in one transaction:
-- DELETE the partition's rows, INSERT the new ones, COMMIT.
-- Identity columns are NOT NULL; measures may be NULL (e.g. a cell with too
-- few users carries a flag and NULL statistics instead of a confident number).

CREATE SCHEMA IF NOT EXISTS reports;

-- Per arm x segment x metric value of one evaluation day.
CREATE TABLE IF NOT EXISTS reports.arm_metrics (
    day            DATE    NOT NULL,
    protocol       VARCHAR NOT NULL,   -- e.g. time_split, item_holdout
    scope          VARCHAR NOT NULL,   -- full | cold_only
    arm            VARCHAR NOT NULL,
    segment_kind   VARCHAR NOT NULL,   -- user | item | all
    segment        VARCHAR NOT NULL,   -- new | cold | warming | warm | all
    metric         VARCHAR NOT NULL,   -- recall, ndcg, hitrate, mrr, ...
    k              INTEGER,
    value          DOUBLE,
    n_users        INTEGER,
    encoder        VARCHAR,
    config_hash    VARCHAR,
    code_version   VARCHAR
);

-- Paired lift of an arm over a baseline arm, one evaluation day.
CREATE TABLE IF NOT EXISTS reports.cold_start_lift (
    day                 DATE    NOT NULL,
    snapshot            DATE,
    protocol            VARCHAR NOT NULL,
    scope               VARCHAR NOT NULL,
    arm                 VARCHAR NOT NULL,
    baseline_arm        VARCHAR NOT NULL,
    segment_kind        VARCHAR NOT NULL,
    segment             VARCHAR NOT NULL,
    metric              VARCHAR NOT NULL,
    k                   INTEGER,
    value               DOUBLE,
    baseline_value      DOUBLE,
    abs_lift            DOUBLE,
    rel_lift            DOUBLE,
    ci_low              DOUBLE,   -- 95% paired-bootstrap CI of abs_lift
    ci_high             DOUBLE,
    rel_ci_low          DOUBLE,   -- 95% CI of rel_lift
    rel_ci_high         DOUBLE,
    p_value             DOUBLE,
    p_adjusted          DOUBLE,   -- Holm over the segment x metric family
    n_users             INTEGER,
    flag                VARCHAR,  -- e.g. 'too_few_users'; NULL when fine
    encoder             VARCHAR,
    encoder_fingerprint VARCHAR,
    config_hash         VARCHAR,
    code_version        VARCHAR
);

-- Same as cold_start_lift, pooled over the users of a window of days.
CREATE TABLE IF NOT EXISTS reports.cold_start_lift_rollup (
    window_start        DATE    NOT NULL,
    window_end          DATE    NOT NULL,
    protocol            VARCHAR NOT NULL,
    scope               VARCHAR NOT NULL,
    arm                 VARCHAR NOT NULL,
    baseline_arm        VARCHAR NOT NULL,
    segment_kind        VARCHAR NOT NULL,
    segment             VARCHAR NOT NULL,
    metric              VARCHAR NOT NULL,
    k                   INTEGER,
    value               DOUBLE,
    baseline_value      DOUBLE,
    abs_lift            DOUBLE,
    rel_lift            DOUBLE,
    ci_low              DOUBLE,
    ci_high             DOUBLE,
    rel_ci_low          DOUBLE,
    rel_ci_high         DOUBLE,
    p_value             DOUBLE,
    p_adjusted          DOUBLE,
    n_users             INTEGER,
    flag                VARCHAR,
    encoder             VARCHAR,
    encoder_fingerprint VARCHAR,
    config_hash         VARCHAR,
    code_version        VARCHAR
);

-- Lift by amount of prior history (warm-up): where does ID-only catch up?
CREATE TABLE IF NOT EXISTS reports.warmup_curve (
    protocol        VARCHAR NOT NULL,
    scope           VARCHAR NOT NULL,
    arm             VARCHAR NOT NULL,
    baseline_arm    VARCHAR NOT NULL,
    segment_kind    VARCHAR NOT NULL,   -- user | item: whose history is bucketed
    history_bucket  VARCHAR NOT NULL,   -- e.g. '0', '1-2', '3-4', '5-9', ...
    bucket_order    INTEGER NOT NULL,   -- sort key of history_bucket
    metric          VARCHAR NOT NULL,
    k               INTEGER,
    value           DOUBLE,
    baseline_value  DOUBLE,
    abs_lift        DOUBLE,
    ci_low          DOUBLE,
    ci_high         DOUBLE,
    n_users         INTEGER,
    window_start    DATE    NOT NULL,
    window_end      DATE    NOT NULL
);

-- What an encoder cost on one day.
CREATE TABLE IF NOT EXISTS reports.encoder_cost (
    day                 DATE    NOT NULL,
    encoder             VARCHAR NOT NULL,
    encoder_fingerprint VARCHAR,
    params              BIGINT,
    dim                 INTEGER,
    texts_total         INTEGER,
    texts_encoded       INTEGER,   -- texts_total - cache_hits
    cache_hits          INTEGER,
    seconds             DOUBLE,
    texts_per_s         DOUBLE,
    device              VARCHAR,   -- cpu | cuda | ...
    precision           VARCHAR    -- fp32 | fp16 | int8 | ...
);
