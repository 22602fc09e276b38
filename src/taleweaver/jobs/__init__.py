"""Background jobs: bulk exports, re-embedding a world, and whatever else a capability
registers, with progress, cancel, retries with backoff, kept results, and runs that
survive a replica's restart.

The queue is taskiq (https://taskiq-python.github.io), chosen over SAQ after checking
both on PyPI (autumn 2026):

- taskiq 0.13.0 (Sep 2026) and taskiq-redis 1.2.4 (Sep 2026) are released often; the
  core ships an in-process broker, so a laptop runs jobs with nothing to install,
  and taskiq-redis's stream broker (consumer groups, acknowledgements, redelivery of
  what a dead consumer held) serves a cluster on the Redis we already run. It
  installs against our redis 8 client with no conflict.
- SAQ 0.26.4 (May 2026) is maintained and has progress, abort and retries built in,
  but its queues are Redis (its `redis` extra pins redis<8, below ours), PostgreSQL
  through psycopg 3 (a second driver beside asyncpg) and HTTP: nothing that runs on
  a laptop without a server, so SQLite users would need a queue of our own.
  taskiq's PostgreSQL brokers (taskiq-pg 0.2.0, Mar 2025, and smaller ones) are
  young; we don't need one, since the cluster has Redis.

taskiq carries only "run job X"; each job's record (status, progress, attempts,
result, error, lease) lives in our database (`store.jobs_schema`), which is what
makes cancel, retry and restart work the same on SQLite and PostgreSQL, from any
replica (see `service.py`).
"""

from taleweaver.jobs.service import JobCancelled, JobContext, JobHandler, JobService, JobSettings

__all__ = ["JobCancelled", "JobContext", "JobHandler", "JobService", "JobSettings"]
