-- Statistics columns of the lift tables (docs/statistics.md). ALTER ... IF NOT
-- EXISTS so that warehouses created before these columns existed gain them.
--   se            standard error of abs_lift behind ci_low/ci_high and p_value
--   user_ci_low/high  CI from resampling user clusters only (items fixed), for comparison
--   n_clusters    distinct users (a pooled window's user-days of one user are one cluster)
--   n_items       distinct truth items resampled (two_way cells), NULL otherwise
--   ci_method     'two_way' (users and items resampled) | 'user_cluster'
--   role          'primary' (confirmatory family: Holm, verdict) | 'exploratory' (CI only,
--                 p_adjusted NULL, never significant)
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS se DOUBLE;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS user_ci_low DOUBLE;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS user_ci_high DOUBLE;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS n_clusters BIGINT;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS n_items BIGINT;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS ci_method VARCHAR;
ALTER TABLE reports.cold_start_lift ADD COLUMN IF NOT EXISTS role VARCHAR;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS se DOUBLE;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS user_ci_low DOUBLE;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS user_ci_high DOUBLE;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS n_clusters BIGINT;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS n_items BIGINT;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS ci_method VARCHAR;
ALTER TABLE reports.cold_start_lift_rollup ADD COLUMN IF NOT EXISTS role VARCHAR;
