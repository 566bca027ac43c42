-- The study's tables (docs/study.md): written by the encoder_study asset for the window
-- ending D (replace partition: window_end). Lifts are exploratory (95% CIs from the same
-- two-way / user-cluster bootstrap as reports.cold_start_lift_rollup; no verdict).

-- Model-size ladder: one row per window x protocol x cell x encoder.
CREATE TABLE IF NOT EXISTS reports.encoder_study (
    window_start              DATE    NOT NULL,
    window_end                DATE    NOT NULL,
    days_pooled               BIGINT,
    protocol                  VARCHAR NOT NULL,
    cell                      VARCHAR NOT NULL,   -- cold_items (cold_only scope) | new_users (full scope)
    encoder                   VARCHAR NOT NULL,
    is_lm                     BOOLEAN,            -- a (pretrained or distilled) language model
    teacher                   VARCHAR,            -- distilled students: the teacher encoder
    params                    BIGINT,             -- model parameters (fitted numbers for tfidf/metadata)
    dim                       BIGINT,
    texts_per_s               DOUBLE,             -- cold encode of the catalogue on this machine
    catalogue_seconds         DOUBLE,             -- seconds for that encode (tfidf/metadata: fit + encode)
    catalogue_texts           BIGINT,
    vector_bytes              BIGINT,             -- float32 vectors of the catalogue
    precision                 VARCHAR,
    device                    VARCHAR,
    metric                    VARCHAR,
    k                         INTEGER,
    value                     DOUBLE,             -- ranker_<encoder>'s metric in the cell
    lift_vs_no_text           DOUBLE,             -- ranker_<encoder> - ranker_no_text
    ci_low_vs_no_text         DOUBLE,
    ci_high_vs_no_text        DOUBLE,
    lift_vs_tfidf             DOUBLE,             -- ranker_<encoder> - ranker_tfidf
    ci_low_vs_tfidf           DOUBLE,
    ci_high_vs_tfidf          DOUBLE,
    content_lift_vs_tfidf     DOUBLE,             -- content_<encoder> - content_tfidf
    content_ci_low_vs_tfidf   DOUBLE,
    content_ci_high_vs_tfidf  DOUBLE,
    n_users                   BIGINT,
    n_items                   BIGINT,
    flag                      VARCHAR,
    share_of_teacher_lift     DOUBLE,             -- students: lift_vs_no_text / the teacher's (NULL unless the teacher's CI is above 0)
    speedup_vs_teacher        DOUBLE,             -- students: texts_per_s / the teacher's
    pareto                    BOOLEAN             -- no other encoder has lower catalogue_seconds AND higher lift_vs_no_text
);

-- Fusion ablation: which item inputs carry the lift, one row per window x protocol x cell x variant.
CREATE TABLE IF NOT EXISTS reports.fusion_ablation (
    window_start         DATE    NOT NULL,
    window_end           DATE    NOT NULL,
    days_pooled          BIGINT,
    protocol             VARCHAR NOT NULL,
    cell                 VARCHAR NOT NULL,
    step                 INTEGER NOT NULL,   -- 0 = metadata reference, then inputs added one kind at a time
    variant              VARCHAR NOT NULL,   -- title | meta | desc | image | no language model
    inputs               VARCHAR,
    encoder              VARCHAR,            -- encoder whose arms serve the variant (NULL: not measurable here)
    note                 VARCHAR,            -- e.g. 'same inputs as minilm-l6 on this catalogue'
    metric               VARCHAR,
    k                    INTEGER,
    value                DOUBLE,
    lift_vs_no_text      DOUBLE,
    ci_low_vs_no_text    DOUBLE,
    ci_high_vs_no_text   DOUBLE,
    previous_variant     VARCHAR,
    lift_vs_previous     DOUBLE,             -- ranker of this variant - ranker of the previous one
    ci_low_vs_previous   DOUBLE,
    ci_high_vs_previous  DOUBLE,
    n_users              BIGINT,
    flag                 VARCHAR
);

-- New users' profile text: the new-user cell (full scope), text arms and the categorical
-- attribute baseline (content_attributes: popularity among users sharing each attribute) against popularity and against each other.
CREATE TABLE IF NOT EXISTS reports.new_user_text (
    window_start    DATE    NOT NULL,
    window_end      DATE    NOT NULL,
    days_pooled     BIGINT,
    protocol        VARCHAR NOT NULL,
    arm             VARCHAR NOT NULL,
    encoder         VARCHAR,
    baseline_arm    VARCHAR NOT NULL,
    metric          VARCHAR,
    k               INTEGER,
    value           DOUBLE,
    baseline_value  DOUBLE,
    abs_lift        DOUBLE,
    ci_low          DOUBLE,
    ci_high         DOUBLE,
    n_users         BIGINT,
    flag            VARCHAR
);
