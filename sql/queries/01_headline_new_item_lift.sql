-- Headline: yesterday's LM lift for NEW items and NEW users at recall@20,
-- both against TF-IDF (beyond lexical overlap) and no-text (text lift).
-- Read both scopes: `full` ranks the whole catalogue, `cold_only` ranks only
-- new items (the usual paper protocol); never quote one as the other.
SELECT protocol, scope, arm, baseline_arm, segment_kind, segment,
       round(value, 4) AS value, round(baseline_value, 4) AS baseline,
       round(abs_lift, 4) AS abs_lift, round(rel_lift, 3) AS rel_lift,
       round(ci_low, 4) AS ci_low, round(ci_high, 4) AS ci_high,
       round(p_adjusted, 4) AS p_adj, n_users, flag, role
FROM reports.latest_lift_by_segment
WHERE metric = 'recall' AND k = 20
  AND segment = 'new'
  AND baseline_arm IN ('ranker_tfidf', 'ranker_no_text')
ORDER BY protocol, scope, segment_kind, arm, baseline_arm;
