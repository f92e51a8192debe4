"""The job table: the only memory batchveo has between two runs.

    store.py ......... Store, the one class callers use: open, close, and the parts below
    db.py ............ one connection, one lock, transactions (the concurrency traps)
    schema.py ........ the SQLite needed, pragmas, migrations applied
    migrations.py .... the schema, append-only
    rows.py .......... Job, Event, TransitionEvent, Transition, AddResult; the column codec
    loading.py ....... add_jobs, loading: specs become rows, idempotent, all or nothing,
                       one transaction fed in chunks
    loadrows.py ...... a load's SQL of one job: a new row, a replaced one, a rerouted one
    outputcheck.py ... a load's videos against every job's, in the table (no folder clash)
    writes.py ........ transitions, retry and cancel: every state change, checked
    guarded.py ....... the guarded UPDATE of one transition (writes, chainwrites)
    chainwrites.py ... scene chains: a hop released, failed or reopened with its parent
    chainreads.py .... scene chains as status, show and the report read them
    groupcommit.py ... writes waiting at the same moment share one statement
    claims.py ........ a submitter takes the next pending job, or hands it back
    claimmarks.py .... where a claim's walk starts: rows found wanting are not read again
    reads.py ......... Reads, the live store's async queries (status, show, the run)
    snapshot.py ...... Snapshot, a read-only look at one moment without an event loop
                       (plan, export, the report), on a connection of its own
    totals.py ........ running totals per batch, state and route: status without a scan
    budget.py ........ what counts against a budget, the one budget rule (micro-dollars),
                       the claims' filter, when the next pending job is due
    pricing.py ....... reprice: the estimates from a price file, by price shape (only the
                       jobs of shapes whose price changed, and the jobs loaded since)
    reviews.py ....... one review per take (due, then its verdict), batches' review settings
    takes.py ......... retakes made with a flagged verdict (ID~2), the chosen take of a job

Other packages import from here, not from the modules: the layout inside may change.
"""

from batchveo.store.budget import (
    COMMITTED_STATES,
    MICRO_USD,
    SPENT_STATES,
    BudgetRoom,
    micro_usd,
)
from batchveo.store.reads import Brief
from batchveo.store.reviews import Recorded, Review, ReviewStatus
from batchveo.store.rows import (
    AddResult,
    Event,
    Job,
    Transition,
    TransitionEvent,
    TransitionObserver,
)
from batchveo.store.snapshot import Snapshot
from batchveo.store.store import Store
from batchveo.store.takes import OVER_BUDGET, Retake, RetakeAsk, Take

__all__ = [
    "COMMITTED_STATES",
    "MICRO_USD",
    "OVER_BUDGET",
    "SPENT_STATES",
    "AddResult",
    "Brief",
    "BudgetRoom",
    "Event",
    "Job",
    "Recorded",
    "Retake",
    "RetakeAsk",
    "Review",
    "ReviewStatus",
    "Snapshot",
    "Store",
    "Take",
    "Transition",
    "TransitionEvent",
    "TransitionObserver",
    "micro_usd",
]
