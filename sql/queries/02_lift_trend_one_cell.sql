-- Trend of one cell over the last 60 days: is the lift stable, and is the
-- 7-day mean above zero? Edit the arm / baseline / segment to taste.
SELECT day, round(abs_lift, 4) AS abs_lift, round(ci_low, 4) AS ci_low,
       round(ci_high, 4) AS ci_high, round(abs_lift_7d_mean, 4) AS mean_7d,
       days_in_7d_mean, n_users, flag
FROM reports.lift_trend
WHERE protocol = 'item_holdout' AND scope = 'cold_only'
  AND arm = 'ranker_minilm' AND baseline_arm = 'ranker_tfidf'
  AND segment_kind = 'item' AND segment = 'new'
  AND metric = 'recall' AND k = 20
  AND day >= current_date - INTERVAL 60 DAYS
ORDER BY day;
