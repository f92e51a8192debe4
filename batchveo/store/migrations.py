"""The database schema, as an append-only list of named migrations.

Never edit or reorder a migration that has shipped: a user's database records
the names it has applied (table ``_migrations``), and the store applies only
the ones it lacks, each in its own transaction. A database that knows a name
this code does not was written by a newer batchveo, and is refused rather than
guessed at.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "001_jobs",
        """
        CREATE TABLE batches (
            name        TEXT PRIMARY KEY,
            created_at  REAL NOT NULL,
            manifest    TEXT
        );
        CREATE TABLE jobs (
            id              TEXT PRIMARY KEY,
            batch           TEXT NOT NULL REFERENCES batches(name),
            state           TEXT NOT NULL,
            spec_hash       TEXT NOT NULL,
            prompt          TEXT NOT NULL,
            model           TEXT NOT NULL,
            params          TEXT NOT NULL,
            inputs          TEXT NOT NULL,
            output_name     TEXT,
            source          TEXT,
            cost_usd        REAL NOT NULL DEFAULT 0,
            operation       TEXT,
            video_uris      TEXT,
            files           TEXT,
            error_kind      TEXT,
            error           TEXT,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            next_poll_at    REAL,
            polls           INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            submitted_at    REAL,
            generated_at    REAL,
            finished_at     REAL
        );
        CREATE INDEX jobs_state ON jobs(state);
        CREATE INDEX jobs_batch ON jobs(batch, state);
        """,
    ),
    Migration(
        "002_events",
        """
        CREATE TABLE events (
            seq         INTEGER PRIMARY KEY,
            job_id      TEXT NOT NULL,
            from_state  TEXT,
            to_state    TEXT NOT NULL,
            at          REAL NOT NULL,
            attempt     INTEGER NOT NULL DEFAULT 0,
            detail      TEXT
        );
        CREATE INDEX events_job ON events(job_id, seq);
        CREATE INDEX jobs_poll_due ON jobs(state, next_poll_at);
        CREATE INDEX jobs_generated ON jobs(state, generated_at);
        """,
    ),
    Migration(
        "003_batch_budgets",
        """
        ALTER TABLE batches ADD COLUMN budget_usd REAL;
        """,
    ),
    Migration(
        # These served queries over small sets only (running and generated jobs are
        # bounded by the in-flight cap) and cost a third of loading 100k jobs.
        "004_fewer_indexes",
        """
        DROP INDEX IF EXISTS jobs_batch;
        DROP INDEX IF EXISTS jobs_poll_due;
        DROP INDEX IF EXISTS jobs_generated;
        """,
    ),
    Migration(
        # The event log is written by the database itself: a transition is then a
        # single UPDATE statement (atomic on its own, one round trip) instead of a
        # transaction of four. Every UPDATE that sets `state` also sets
        # `last_detail`, the event's detail.
        "005_transition_trigger",
        """
        ALTER TABLE jobs ADD COLUMN last_detail TEXT;
        CREATE TRIGGER jobs_transition_event AFTER UPDATE OF state ON jobs
        BEGIN
            INSERT INTO events (job_id, from_state, to_state, at, attempt, detail)
            VALUES (NEW.id, OLD.state, NEW.state, NEW.updated_at, NEW.attempts, NEW.last_detail);
        END;
        """,
    ),
    Migration(
        # Routes (issue 13): where each job is sent. NULL parts, and every part of the
        # rows loaded before routes, are the run's to fill (routes.resolve_route).
        # Samples: how many videos a job asked for (sampleCount; one before Vertex) and,
        # once it is back, how many came and how many the safety filter kept, with its
        # reasons. sample_cost_usd is the estimate of one returned video: a job's
        # cost_usd is it times the videos returned (times those asked until then), so a
        # partly filtered job costs what was returned, and setting it again is harmless.
        "006_routes_and_samples",
        """
        ALTER TABLE jobs ADD COLUMN provider TEXT;
        ALTER TABLE jobs ADD COLUMN project TEXT;
        ALTER TABLE jobs ADD COLUMN location TEXT;
        ALTER TABLE jobs ADD COLUMN storage_uri TEXT;
        ALTER TABLE jobs ADD COLUMN samples_requested INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE jobs ADD COLUMN samples_returned INTEGER;
        ALTER TABLE jobs ADD COLUMN samples_filtered INTEGER;
        ALTER TABLE jobs ADD COLUMN filtered_reasons TEXT;
        ALTER TABLE jobs ADD COLUMN sample_cost_usd REAL NOT NULL DEFAULT 0;
        UPDATE jobs SET sample_cost_usd = cost_usd;
        """,
    ),
    Migration(
        # Running totals (issue 14): per batch, state and stored route, how many jobs there
        # are, their estimated cost and their answered samples. `status` reads these few
        # lines instead of grouping every job: flat from 1k to 1M jobs. The triggers keep
        # them on every UPDATE and DELETE of a column they count; an INSERT is counted by
        # add_jobs, the one code that inserts jobs, once per load (store/totals.py: a
        # trigger per inserted row cost a sixth of loading 100k jobs). `route_key` spells
        # the route with its NULLs (quote() writes NULL, a text quoted): a key UNIQUE can
        # match. A line that falls to 0 jobs stays; readers skip it.
        "007_totals",
        """
        CREATE TABLE totals (
            batch       TEXT NOT NULL,
            state       TEXT NOT NULL,
            route_key   TEXT NOT NULL,
            provider    TEXT,
            project     TEXT,
            location    TEXT,
            storage_uri TEXT,
            jobs        INTEGER NOT NULL,
            cost_usd    REAL NOT NULL,
            answered    INTEGER NOT NULL,
            requested   INTEGER NOT NULL,
            returned    INTEGER NOT NULL,
            filtered    INTEGER NOT NULL,
            partial     INTEGER NOT NULL,
            PRIMARY KEY (batch, state, route_key)
        ) WITHOUT ROWID;
        INSERT INTO totals
            SELECT batch, state,
                quote(provider) || ',' || quote(project) || ',' || quote(location)
                    || ',' || quote(storage_uri),
                provider, project, location, storage_uri,
                COUNT(*), TOTAL(cost_usd), SUM(samples_returned IS NOT NULL),
                SUM(IIF(samples_returned IS NULL, 0, samples_requested)),
                SUM(COALESCE(samples_returned, 0)),
                SUM(IIF(samples_returned IS NULL, 0, COALESCE(samples_filtered, 0))),
                SUM(IFNULL(samples_returned BETWEEN 1 AND samples_requested - 1, 0))
            FROM jobs GROUP BY batch, state, provider, project, location, storage_uri;
        CREATE TRIGGER jobs_totals_delete AFTER DELETE ON jobs
        BEGIN
            INSERT INTO totals VALUES (
                OLD.batch, OLD.state,
                quote(OLD.provider) || ',' || quote(OLD.project) || ',' || quote(OLD.location)
                    || ',' || quote(OLD.storage_uri),
                OLD.provider, OLD.project, OLD.location, OLD.storage_uri,
                -1, -OLD.cost_usd, -(OLD.samples_returned IS NOT NULL),
                -IIF(OLD.samples_returned IS NULL, 0, OLD.samples_requested),
                -COALESCE(OLD.samples_returned, 0),
                -IIF(OLD.samples_returned IS NULL, 0, COALESCE(OLD.samples_filtered, 0)),
                -IFNULL(OLD.samples_returned BETWEEN 1 AND OLD.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs, cost_usd = cost_usd + excluded.cost_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
        END;
        CREATE TRIGGER jobs_totals_update AFTER UPDATE OF
            batch, state, provider, project, location, storage_uri,
            cost_usd, samples_requested, samples_returned, samples_filtered
            ON jobs
        WHEN OLD.batch IS NOT NEW.batch OR OLD.state IS NOT NEW.state
            OR OLD.provider IS NOT NEW.provider OR OLD.project IS NOT NEW.project
            OR OLD.location IS NOT NEW.location OR OLD.storage_uri IS NOT NEW.storage_uri
            OR OLD.cost_usd IS NOT NEW.cost_usd
            OR OLD.samples_requested IS NOT NEW.samples_requested
            OR OLD.samples_returned IS NOT NEW.samples_returned
            OR OLD.samples_filtered IS NOT NEW.samples_filtered
        BEGIN
            INSERT INTO totals VALUES (
                OLD.batch, OLD.state,
                quote(OLD.provider) || ',' || quote(OLD.project) || ',' || quote(OLD.location)
                    || ',' || quote(OLD.storage_uri),
                OLD.provider, OLD.project, OLD.location, OLD.storage_uri,
                -1, -OLD.cost_usd, -(OLD.samples_returned IS NOT NULL),
                -IIF(OLD.samples_returned IS NULL, 0, OLD.samples_requested),
                -COALESCE(OLD.samples_returned, 0),
                -IIF(OLD.samples_returned IS NULL, 0, COALESCE(OLD.samples_filtered, 0)),
                -IFNULL(OLD.samples_returned BETWEEN 1 AND OLD.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs, cost_usd = cost_usd + excluded.cost_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
            INSERT INTO totals VALUES (
                NEW.batch, NEW.state,
                quote(NEW.provider) || ',' || quote(NEW.project) || ',' || quote(NEW.location)
                    || ',' || quote(NEW.storage_uri),
                NEW.provider, NEW.project, NEW.location, NEW.storage_uri,
                +1, +NEW.cost_usd, +(NEW.samples_returned IS NOT NULL),
                +IIF(NEW.samples_returned IS NULL, 0, NEW.samples_requested),
                +COALESCE(NEW.samples_returned, 0),
                +IIF(NEW.samples_returned IS NULL, 0, COALESCE(NEW.samples_filtered, 0)),
                +IFNULL(NEW.samples_returned BETWEEN 1 AND NEW.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs, cost_usd = cost_usd + excluded.cost_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
        END;
        """,
    ),
    Migration(
        # The poll schedule learns from the latest finished jobs (Reads.generation_times):
        # this reads them newest first without a scan. Partial: rows without a video are
        # not in it, so loading (every row NULL here) pays nothing for it.
        "008_generated_at",
        """
        CREATE INDEX jobs_generated_at ON jobs(generated_at) WHERE generated_at IS NOT NULL;
        """,
    ),
    Migration(
        # Budgets judged from the running totals (issue 14): a claim reads the committed
        # cost of a few lines instead of summing every committed job. Float sums kept by
        # adding and taking away drift (a line of 1M jobs at $1.20 holds about $1.2M,
        # where one addition may be off by 1e-10), past the budget rule's tolerance; so
        # the totals count integer micro-dollars instead, each job's cost rounded once
        # (budget.micro_usd: CAST(cost_usd * 1000000 + 0.5 AS INTEGER)), and any sum of
        # them is exact whatever the order of the moves. The table is made again with
        # cost_micro_usd where cost_usd was, counted from the jobs, and so are the triggers
        # (naming the columns they write).
        "009_totals_micro_usd",
        """
        DROP TRIGGER jobs_totals_delete;
        DROP TRIGGER jobs_totals_update;
        DROP TABLE totals;
        CREATE TABLE totals (
            batch           TEXT NOT NULL,
            state           TEXT NOT NULL,
            route_key       TEXT NOT NULL,
            provider        TEXT,
            project         TEXT,
            location        TEXT,
            storage_uri     TEXT,
            jobs            INTEGER NOT NULL,
            cost_micro_usd  INTEGER NOT NULL,
            answered        INTEGER NOT NULL,
            requested       INTEGER NOT NULL,
            returned        INTEGER NOT NULL,
            filtered        INTEGER NOT NULL,
            partial         INTEGER NOT NULL,
            PRIMARY KEY (batch, state, route_key)
        ) WITHOUT ROWID;
        INSERT INTO totals
            SELECT batch, state,
                quote(provider) || ',' || quote(project) || ',' || quote(location)
                    || ',' || quote(storage_uri),
                provider, project, location, storage_uri,
                COUNT(*), SUM(CAST(cost_usd * 1000000 + 0.5 AS INTEGER)),
                SUM(samples_returned IS NOT NULL),
                SUM(IIF(samples_returned IS NULL, 0, samples_requested)),
                SUM(COALESCE(samples_returned, 0)),
                SUM(IIF(samples_returned IS NULL, 0, COALESCE(samples_filtered, 0))),
                SUM(IFNULL(samples_returned BETWEEN 1 AND samples_requested - 1, 0))
            FROM jobs GROUP BY batch, state, provider, project, location, storage_uri;
        CREATE TRIGGER jobs_totals_delete AFTER DELETE ON jobs
        BEGIN
            INSERT INTO totals (batch, state, route_key, provider, project, location, storage_uri,
                jobs, cost_micro_usd, answered, requested, returned, filtered, partial)
            VALUES (
                OLD.batch, OLD.state,
                quote(OLD.provider) || ',' || quote(OLD.project) || ',' || quote(OLD.location)
                    || ',' || quote(OLD.storage_uri),
                OLD.provider, OLD.project, OLD.location, OLD.storage_uri,
                -1, -CAST(OLD.cost_usd * 1000000 + 0.5 AS INTEGER),
                -(OLD.samples_returned IS NOT NULL),
                -IIF(OLD.samples_returned IS NULL, 0, OLD.samples_requested),
                -COALESCE(OLD.samples_returned, 0),
                -IIF(OLD.samples_returned IS NULL, 0, COALESCE(OLD.samples_filtered, 0)),
                -IFNULL(OLD.samples_returned BETWEEN 1 AND OLD.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
        END;
        CREATE TRIGGER jobs_totals_update AFTER UPDATE OF
            batch, state, provider, project, location, storage_uri,
            cost_usd, samples_requested, samples_returned, samples_filtered
            ON jobs
        WHEN OLD.batch IS NOT NEW.batch OR OLD.state IS NOT NEW.state
            OR OLD.provider IS NOT NEW.provider OR OLD.project IS NOT NEW.project
            OR OLD.location IS NOT NEW.location OR OLD.storage_uri IS NOT NEW.storage_uri
            OR OLD.cost_usd IS NOT NEW.cost_usd
            OR OLD.samples_requested IS NOT NEW.samples_requested
            OR OLD.samples_returned IS NOT NEW.samples_returned
            OR OLD.samples_filtered IS NOT NEW.samples_filtered
        BEGIN
            INSERT INTO totals (batch, state, route_key, provider, project, location, storage_uri,
                jobs, cost_micro_usd, answered, requested, returned, filtered, partial)
            VALUES (
                OLD.batch, OLD.state,
                quote(OLD.provider) || ',' || quote(OLD.project) || ',' || quote(OLD.location)
                    || ',' || quote(OLD.storage_uri),
                OLD.provider, OLD.project, OLD.location, OLD.storage_uri,
                -1, -CAST(OLD.cost_usd * 1000000 + 0.5 AS INTEGER),
                -(OLD.samples_returned IS NOT NULL),
                -IIF(OLD.samples_returned IS NULL, 0, OLD.samples_requested),
                -COALESCE(OLD.samples_returned, 0),
                -IIF(OLD.samples_returned IS NULL, 0, COALESCE(OLD.samples_filtered, 0)),
                -IFNULL(OLD.samples_returned BETWEEN 1 AND OLD.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
            INSERT INTO totals (batch, state, route_key, provider, project, location, storage_uri,
                jobs, cost_micro_usd, answered, requested, returned, filtered, partial)
            VALUES (
                NEW.batch, NEW.state,
                quote(NEW.provider) || ',' || quote(NEW.project) || ',' || quote(NEW.location)
                    || ',' || quote(NEW.storage_uri),
                NEW.provider, NEW.project, NEW.location, NEW.storage_uri,
                +1, +CAST(NEW.cost_usd * 1000000 + 0.5 AS INTEGER),
                +(NEW.samples_returned IS NOT NULL),
                +IIF(NEW.samples_returned IS NULL, 0, NEW.samples_requested),
                +COALESCE(NEW.samples_returned, 0),
                +IIF(NEW.samples_returned IS NULL, 0, COALESCE(NEW.samples_filtered, 0)),
                +IFNULL(NEW.samples_returned BETWEEN 1 AND NEW.samples_requested - 1, 0)
            ) ON CONFLICT (batch, state, route_key) DO UPDATE SET
                jobs = jobs + excluded.jobs,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                answered = answered + excluded.answered,
                requested = requested + excluded.requested,
                returned = returned + excluded.returned, filtered = filtered + excluded.filtered,
                partial = partial + excluded.partial;
        END;
        """,
    ),
    Migration(
        # A restart reads in constant time, whatever the size of the table (issue 14).
        # jobs_backoff: the few pending jobs waiting out a backoff, for when the next is due
        # and for pull_in_schedules (partial: a load, every row NULL here, pays nothing).
        # events_submits: the last submit, for the pacer's gap at a restart (one event in
        # four or five is a submit; nothing else is read by it). prices_applied: the price
        # file a run last applied to every job, and the last job it priced; the same prices
        # again reprice only the jobs loaded since (a load forgets it when it replaces).
        "010_restart_reads",
        """
        CREATE INDEX jobs_backoff ON jobs(next_attempt_at)
            WHERE state = 'pending' AND next_attempt_at IS NOT NULL;
        CREATE INDEX events_submits ON events(at) WHERE to_state = 'submitting';
        CREATE TABLE prices_applied (
            one             INTEGER PRIMARY KEY CHECK (one = 1),
            prices          TEXT NOT NULL,
            through_rowid   INTEGER NOT NULL
        );
        """,
    ),
    Migration(
        # Scene chains (issue 15): a hop names the job it extends (extends), its chain's
        # first job (chain_root) and its place (hop: 1 for the root); parent_generated_at
        # is when the parent's video was made, written as the hop is released, checked
        # against the retention again at claim. jobs_children: the hops of a parent, for
        # the release in the parent's own transaction (partial: other jobs pay nothing).
        # output_s: a hop's video length, what it is priced as (models.billed_params).
        "011_chains",
        """
        ALTER TABLE jobs ADD COLUMN extends TEXT;
        ALTER TABLE jobs ADD COLUMN chain_root TEXT;
        ALTER TABLE jobs ADD COLUMN hop INTEGER;
        ALTER TABLE jobs ADD COLUMN parent_generated_at REAL;
        ALTER TABLE jobs ADD COLUMN output_s INTEGER;
        CREATE INDEX jobs_children ON jobs(extends) WHERE extends IS NOT NULL;
        """,
    ),
    Migration(
        # Review (issue 16): one verdict per take, a take being a job row (a retake will be
        # its own row). A job entering done gets its row here, status NULL ("due"), in the
        # transition's own statement (the trigger); the review writes the verdict over it in
        # one statement. So a review cut off by a kill stays due and is asked again, and
        # none is recorded twice (one row per job id). reviews_due: the due rows by batch,
        # what a run reads at its start (partial: every reviewed row costs it nothing);
        # reviews_status: the counts of status and the flagged takes it lists.
        # review_settings: a batch's ``defaults: review:`` (JSON), the latest load's word.
        # review_costs: what each batch's reviews cost, in micro-dollars, kept by a trigger
        # as each is recorded and never taken back (a take reviewed again with --force was
        # paid twice): the budgets count it with the jobs' committed cost (budget.py).
        "012_reviews",
        """
        CREATE TABLE reviews (
            job_id          TEXT PRIMARY KEY REFERENCES jobs(id),
            batch           TEXT NOT NULL,
            status          TEXT CHECK (status IN ('passed', 'flagged', 'error', 'skipped')),
            score           REAL,
            matches_prompt  INTEGER,
            defects         TEXT,
            summary         TEXT,
            error           TEXT,
            model           TEXT,
            tokens_in       INTEGER NOT NULL DEFAULT 0,
            tokens_out      INTEGER NOT NULL DEFAULT 0,
            cost_usd        REAL NOT NULL DEFAULT 0,
            reviewed_at     REAL
        );
        CREATE INDEX reviews_due ON reviews(batch) WHERE status IS NULL;
        CREATE INDEX reviews_status ON reviews(status, batch);
        CREATE TABLE review_settings (
            batch       TEXT PRIMARY KEY,
            settings    TEXT NOT NULL
        );
        CREATE TABLE review_costs (
            batch           TEXT PRIMARY KEY,
            cost_micro_usd  INTEGER NOT NULL
        );
        INSERT INTO reviews (job_id, batch) SELECT id, batch FROM jobs WHERE state = 'done';
        CREATE TRIGGER jobs_review_due AFTER UPDATE OF state ON jobs
        WHEN NEW.state = 'done' AND OLD.state IS NOT 'done'
        BEGIN
            INSERT INTO reviews (job_id, batch) VALUES (NEW.id, NEW.batch)
                ON CONFLICT (job_id) DO NOTHING;
        END;
        CREATE TRIGGER reviews_cost AFTER UPDATE OF cost_usd ON reviews
        WHEN NEW.cost_usd > 0
        BEGIN
            INSERT INTO review_costs
                VALUES (NEW.batch, CAST(NEW.cost_usd * 1000000 + 0.5 AS INTEGER))
                ON CONFLICT (batch) DO UPDATE
                SET cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd;
        END;
        """,
    ),
    Migration(
        # Poster frames (issue 16): each video's still (a JPEG beside it, batchveo/posters.py)
        # as a path relative to the video's folder, in the order of ``files``; null for a
        # video that gave none. Written in the same statement as ``files`` (the poster file
        # exists first), or later by the report for videos done before it: NULL is "none
        # made yet".
        "013_posters",
        """
        ALTER TABLE jobs ADD COLUMN posters TEXT;
        """,
    ),
    Migration(
        # A reprice with new prices reads only what it must (issue 14): the price of one
        # request of each price shape (model, resolution, length, videos, audio) that the
        # jobs up to prices_applied.through_rowid hold (store/pricing.py). What 010 kept
        # (the last price file's text) no longer says that: forgotten, so the first
        # reprice reads every job once.
        "014_price_shapes",
        """
        CREATE TABLE price_shapes (
            model       TEXT NOT NULL,
            resolution  TEXT NOT NULL,
            duration_s  INTEGER NOT NULL,
            samples     INTEGER NOT NULL,
            audio       INTEGER NOT NULL,
            request_usd REAL NOT NULL,
            PRIMARY KEY (model, resolution, duration_s, samples, audio)
        );
        DELETE FROM prices_applied;
        """,
    ),
    Migration(
        # Retakes (issue 16): a flagged take with retakes left gets a new take, its own job
        # row (``ID~2``, ``ID~3``): ``take_of`` names the original (NULL on an original),
        # ``take`` numbers it (1: the original). The row is made in the transaction that
        # records the flagged verdict (store/takes.py), so a kill between cannot lose it or
        # make it twice; jobs_takes finds a job's takes (partial: originals cost nothing).
        # reviews.retake: what became of the retake a flagged verdict asked for ("retaken as
        # ID~2", "retake not made: over the budget", ...), for status and show.
        "015_retakes",
        """
        ALTER TABLE jobs ADD COLUMN take_of TEXT;
        ALTER TABLE jobs ADD COLUMN take INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX jobs_takes ON jobs(take_of, take) WHERE take_of IS NOT NULL;
        ALTER TABLE reviews ADD COLUMN retake TEXT;
        """,
    ),
)
