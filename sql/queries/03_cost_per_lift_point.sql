-- What does a point of lift cost? Encoding throughput and seconds per encoder
-- (averaged over the window) next to its pooled new-item text lift
-- (ranker_<encoder> vs ranker_no_text, recall@20) from the latest rollup.
WITH cost AS (
    SELECT encoder, any_value(params) AS params, any_value(dim) AS dim,
           avg(texts_per_s) AS texts_per_s, sum(seconds) AS seconds,
           sum(texts_encoded) AS texts_encoded, sum(cache_hits) AS cache_hits
    FROM reports.encoder_cost
    GROUP BY encoder
),
lift AS (
    SELECT encoder, protocol, scope, abs_lift, ci_low, ci_high, n_users
    FROM reports.cold_start_lift_rollup
    WHERE baseline_arm = 'ranker_no_text' AND metric = 'recall' AND k = 20
      AND segment_kind = 'item' AND segment = 'new'
    QUALIFY window_end = max(window_end) OVER (PARTITION BY protocol, scope)
)
SELECT l.protocol, l.scope, c.encoder, c.params, c.dim,
       round(c.texts_per_s, 1) AS texts_per_s, round(c.seconds, 1) AS seconds,
       round(l.abs_lift, 4) AS abs_lift, round(l.ci_low, 4) AS ci_low,
       round(l.ci_high, 4) AS ci_high,
       round(c.seconds / nullif(l.abs_lift * 100, 0), 2) AS seconds_per_lift_point
FROM cost AS c
JOIN lift AS l USING (encoder)
ORDER BY l.protocol, l.scope, l.abs_lift DESC;
