-- Lift per day of each arm / baseline / segment / metric@k cell, with a
-- 7-day trailing mean of abs_lift (over the days the cell has rows).
-- Filter it: WHERE arm = ... AND baseline_arm = ... AND segment = ... AND metric = ...
CREATE OR REPLACE VIEW reports.lift_trend AS
SELECT
    day, protocol, scope, arm, baseline_arm, segment_kind, segment, metric, k,
    value, baseline_value, abs_lift, rel_lift, ci_low, ci_high, p_adjusted,
    n_users, flag, role, encoder,
    avg(abs_lift) OVER (
        PARTITION BY protocol, scope, arm, baseline_arm, segment_kind, segment, metric, k
        ORDER BY day
        RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW
    ) AS abs_lift_7d_mean,
    count(*) OVER (
        PARTITION BY protocol, scope, arm, baseline_arm, segment_kind, segment, metric, k
        ORDER BY day
        RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW
    ) AS days_in_7d_mean
FROM reports.cold_start_lift
ORDER BY protocol, scope, arm, baseline_arm, segment_kind, segment, metric, k, day;
