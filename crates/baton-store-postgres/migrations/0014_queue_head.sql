-- Baton schema v14: merge-queue entries by their tested head. Before a change lands on top of
-- main, Baton asks whether another entry of the repository was tested as exactly main's commit
-- (a change or a batch still landing or deploying there); this index answers that with one
-- lookup instead of reading the repository's whole queue.
CREATE INDEX merge_queue_head ON merge_queue (repo, head, entered_at) WHERE head IS NOT NULL;
