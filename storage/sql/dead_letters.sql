-- name: insert_dead_letter
INSERT INTO dead_letters (ts, source, reason, payload) VALUES (%s, %s, %s, %s);

-- name: trim_dead_letters
DELETE FROM dead_letters
WHERE id <= (SELECT id FROM dead_letters ORDER BY id DESC OFFSET %(keep)s LIMIT 1);

-- name: list_dead_letters
SELECT id, ts, source, reason, payload
FROM dead_letters
WHERE (%(source)s::text IS NULL OR source = %(source)s::text)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_dead_letters
SELECT count(*) FROM dead_letters
WHERE (%(source)s::text IS NULL OR source = %(source)s::text);
