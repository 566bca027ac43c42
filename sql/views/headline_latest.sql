-- The verdict of each primary endpoint in the latest pooled window
-- (see reports.headline WHERE window_kind = 'day' for daily reports). Verdict:
-- 'lift' | 'harm' (Holm-adjusted p < 0.05 over the primary family, by sign),
-- 'no detectable lift', 'too few' (under min_users, trivial, or not run).
CREATE OR REPLACE VIEW reports.headline_latest AS
SELECT *
FROM reports.headline
WHERE window_kind = 'window'
QUALIFY window_end = max(window_end) OVER ()
ORDER BY protocol, endpoint;
