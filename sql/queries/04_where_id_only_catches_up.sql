-- Warm-up: after how much history does ID-only (ALS / no-text ranker) catch
-- up with the LM ranker? One row per curve of the latest window.
SELECT protocol, scope, arm, baseline_arm, segment_kind, metric, k,
       caught_up, crossover_bucket, round(crossover_abs_lift, 4) AS lift_there,
       crossover_n_users, buckets_observed
FROM reports.warmup_crossover
QUALIFY window_end = max(window_end) OVER (PARTITION BY protocol, scope)
ORDER BY protocol, scope, segment_kind, arm, baseline_arm, metric, k;
