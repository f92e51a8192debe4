"""A run: the pipeline's stages and what drives them.

runner.py ..... composes the stages over one store and the routes' clients; the one
                drain check; how a run stops (signals, --max-runtime, errors)
result.py ..... RunResult: what a run ends with, its exit code and its last line
app.py ........ the composition root: run_night, plan_night (the order nothing is
                written in until the input is known good)
access.py ..... what each route needs to be reached (keys, Google credentials), its
                client, and every secret to scrub
config.py ..... RunConfig: every setting of a run, documented
context.py .... what the stages share: the stop policy (StopLevel), the signals
                that transitions fire, stats, backoff, end_job
lanes.py ...... a lane per route (Route.key): its client, pacer, slots, submitters;
                ClientsByRoute, the run's clients
routed.py ..... what the run asks the store about routes (claims, waits, samples)
slots.py ...... in-flight slots and --max-jobs places, given back by transitions
wakeups.py .... Signal and Waiters: every wait ends by a signal or a due time
pacing.py ..... the pacer: one next-slot scheduler on the run clock, 429 pauses
schedule.py ... when to poll, pure: the flags' fixed rule and the rule learned from
                finished jobs (the expected notice delay held to --max-notice-delay)
pollplan.py ... which rule each poll follows; the samples it learns from, per model
                and resolution (the store's history, then the jobs seen done)
submitter.py .. pending -> submitting -> running (the numbered steps)
poller.py ..... running -> generated / done (videos sent inline) / failed / expired
downloader.py . generated -> done (its DownloadQueue and failure counts)
duequeue.py ... items due at a time for a pool of idle workers (downloads, reviews)
reviewer.py ... done takes watched by a model: the review stage (its pacer, workers,
                reaction table), run_reviewer for a run, ReviewClient
review_queue.py the reviews due now or later (a backoff, a 429's pause)
review_cost.py  what a review costs: tokens from seconds of video, dollars from tokens
review_app.py . batchveo review: the review stage alone, over videos finished earlier
dropfolder.py . --watch: manifests dropped in a folder
loading.py .... manifests into the store (load, run MANIFEST, the drop folder)
plan.py ....... what a run would send and cost (--dry-run, plan)
"""
