-- The lift rows of the latest evaluated day (role: primary | exploratory; flag:
-- too_few_users | trivial), per protocol and scope, sorted by
-- segment from coldest to warmest. A protocol that did not run yesterday still
-- shows its own latest day (see the `day` column).
CREATE OR REPLACE VIEW reports.latest_lift_by_segment AS
SELECT
    day, snapshot, protocol, scope, arm, baseline_arm, segment_kind, segment,
    CASE segment
        WHEN 'new' THEN 0 WHEN 'cold' THEN 1 WHEN 'warming' THEN 2
        WHEN 'warm' THEN 3 WHEN 'all' THEN 4 ELSE 5
    END AS segment_order,
    metric, k, value, baseline_value, abs_lift, rel_lift, ci_low, ci_high,
    rel_ci_low, rel_ci_high, p_value, p_adjusted, n_users, n_items, flag, role, ci_method,
    -- only primary, adequately sized cells can be significant; the rest are exploratory
    coalesce(role = 'primary' AND flag IS NULL AND (ci_low > 0 OR ci_high < 0) AND p_adjusted < 0.05, false) AS significant,
    encoder, encoder_fingerprint, config_hash, code_version
FROM reports.cold_start_lift
QUALIFY day = max(day) OVER (PARTITION BY protocol, scope)
ORDER BY protocol, scope, arm, baseline_arm, segment_kind, segment_order, metric, k;
