-- Anomaly scores and detector models (storage/scores.py).

-- name: create_scores_stage
CREATE TEMP TABLE IF NOT EXISTS anomaly_scores_stage (
    point_id integer, ts timestamptz, score real, model text
) ON COMMIT DELETE ROWS

-- name: copy_scores_stage
COPY anomaly_scores_stage (point_id, ts, score, model) FROM STDIN (FORMAT binary)

-- name: merge_scores_stage
INSERT INTO anomaly_scores (point_id, ts, score, model)
SELECT DISTINCT ON (point_id, ts, model) point_id, ts, score, model FROM anomaly_scores_stage
ON CONFLICT (point_id, ts, model) DO UPDATE SET score = EXCLUDED.score

-- name: select_scores
SELECT point_id, ts, score, model FROM anomaly_scores
WHERE point_id = %(point_id)s AND ts >= %(since)s AND ts < %(until)s
ORDER BY ts, model

-- name: delete_scores_before
DELETE FROM anomaly_scores WHERE ts < %(before)s

-- name: next_model_version
SELECT coalesce(max(version), 0) + 1 FROM detector_models WHERE name = %(name)s

-- name: insert_model
INSERT INTO detector_models (name, version, trained_at, points, rows, params, blob)
VALUES (%(name)s, %(version)s, %(trained_at)s, %(points)s, %(rows)s, %(params)s, %(blob)s)

-- name: latest_model
SELECT version, trained_at, blob FROM detector_models WHERE name = %(name)s
ORDER BY version DESC LIMIT 1

-- name: prune_models
DELETE FROM detector_models WHERE name = %(name)s AND version <= %(keep_after)s

-- name: readings_history
SELECT point_id, extract(epoch FROM ts)::float8, value FROM readings
WHERE point_id = ANY(%(point_ids)s) AND ts >= %(since)s AND ts < %(until)s
  AND value IS NOT NULL AND (quality & %(bad_mask)s) = 0
ORDER BY point_id, ts

-- name: readings_of_points_like
SELECT p.name, r.ts, r.value FROM readings r JOIN points p ON p.id = r.point_id
WHERE p.name LIKE ANY(%(patterns)s) AND r.ts >= %(since)s AND r.ts < %(until)s AND r.value IS NOT NULL
ORDER BY p.name, r.ts
