-- Daily lift rows of the pretrained-LM ranker arms that are significant:
-- PRIMARY endpoints only (the confirmatory family that Holm corrects; every
-- other cell is exploratory and never called significant), adequately sized
-- (no flag: not too_few_users, not trivial), Holm-adjusted p < 0.05 and the
-- 95% CI of abs_lift excludes 0.
-- LM arms are ranker_<encoder>[+policy]; the no-text and TF-IDF rankers are
-- baselines, not LM arms (also with a slot policy, e.g. ranker_tfidf+slots2).
CREATE OR REPLACE VIEW reports.significant_lm_lift AS
SELECT
    day, snapshot, protocol, scope, arm, baseline_arm, segment_kind, segment,
    metric, k, value, baseline_value, abs_lift, rel_lift, ci_low, ci_high,
    rel_ci_low, rel_ci_high, p_value, p_adjusted, n_users, n_items, flag, role, ci_method,
    CASE WHEN abs_lift > 0 THEN 'gain' ELSE 'loss' END AS direction,
    encoder, encoder_fingerprint, config_hash, code_version
FROM reports.cold_start_lift
WHERE starts_with(arm, 'ranker_')
  AND split_part(arm, '+', 1) NOT IN ('ranker_no_text', 'ranker_tfidf')
  AND role = 'primary'
  AND flag IS NULL
  AND p_adjusted < 0.05
  AND (ci_low > 0 OR ci_high < 0)
ORDER BY day DESC, protocol, scope, arm, baseline_arm, segment_kind, segment, metric, k;
