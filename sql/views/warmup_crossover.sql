-- "Where does ID-only catch up?" For each warm-up curve (protocol, scope, arm,
-- baseline, segment_kind, metric@k, window) the first history bucket, in
-- bucket_order, where the lift is no longer clearly positive: abs_lift <= 0
-- or its 95% CI includes 0. Curves that never catch up within the observed
-- buckets have caught_up = false and NULL crossover columns.
CREATE OR REPLACE VIEW reports.warmup_crossover AS
WITH curves AS (
    SELECT
        protocol, scope, arm, baseline_arm, segment_kind, metric, k,
        window_start, window_end,
        count(*) AS buckets_observed,
        min(bucket_order) AS first_bucket_order,
        max(bucket_order) AS last_bucket_order
    FROM reports.warmup_curve
    GROUP BY ALL
),
caught AS (
    SELECT
        protocol, scope, arm, baseline_arm, segment_kind, metric, k,
        window_start, window_end,
        history_bucket, bucket_order, abs_lift, ci_low, ci_high, n_users
    FROM reports.warmup_curve
    WHERE abs_lift <= 0
       OR (ci_low IS NOT NULL AND ci_high IS NOT NULL AND ci_low <= 0 AND ci_high >= 0)
    QUALIFY row_number() OVER (
        PARTITION BY protocol, scope, arm, baseline_arm, segment_kind, metric, k,
                     window_start, window_end
        ORDER BY bucket_order
    ) = 1
)
SELECT
    c.protocol, c.scope, c.arm, c.baseline_arm, c.segment_kind, c.metric, c.k,
    c.window_start, c.window_end,
    x.history_bucket IS NOT NULL AS caught_up,
    x.history_bucket AS crossover_bucket,
    x.bucket_order   AS crossover_bucket_order,
    x.abs_lift       AS crossover_abs_lift,
    x.ci_low         AS crossover_ci_low,
    x.ci_high        AS crossover_ci_high,
    x.n_users        AS crossover_n_users,
    c.buckets_observed, c.first_bucket_order, c.last_bucket_order
FROM curves AS c
LEFT JOIN caught AS x
    ON  x.protocol = c.protocol AND x.scope = c.scope AND x.arm = c.arm
    AND x.baseline_arm = c.baseline_arm AND x.segment_kind = c.segment_kind
    AND x.metric = c.metric AND x.k IS NOT DISTINCT FROM c.k
    AND x.window_start = c.window_start AND x.window_end = c.window_end
ORDER BY c.protocol, c.scope, c.arm, c.baseline_arm, c.segment_kind, c.metric, c.k, c.window_end;
