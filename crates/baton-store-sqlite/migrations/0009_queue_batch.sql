-- Baton schema v9: batches in the merge queue (docs/merge-queue.md). `batch` names the task whose
-- change ends the batch (its test covers every change of the batch at once); `split` caps the size
-- of the next batch this change joins, after a red batch was split in two to find its culprit.
ALTER TABLE merge_queue ADD COLUMN batch INTEGER;
ALTER TABLE merge_queue ADD COLUMN split INTEGER;
