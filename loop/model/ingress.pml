/* ingress.pml: a Promela model of ctxloop's foreign ingress, for Spin.
 *
 * Run: tools/check_spin_model.sh (exhaustive; every property below, then
 * every mutant, which must be caught). Size: 3.57M states (safety and
 * no_lost_wake), 4.68M (no_lost_stop), 0.45M (CAPACITY=1), 0.43M
 * (no_stuck_waiter), 7.14M (no cycles, --full); about 60 s of
 * CPU in all, under 400 MB (COLLAPSE). Steps are labelled in comments
 * (P1.., W1.., X1.., L-..); the C++ names each step it implements with a
 * comment "ingress.pml: <step>".
 *
 * A DEFECT THIS MODEL FOUND (fixed in the code): with CAPACITY=1 ltl
 * no_stuck_waiter was violated while Reserve was a fetch_add, undone by a
 * fetch_sub when full: between them pending_ was one too high. If the
 * loop's Release landed there, it saw pending above the low-water mark and
 * woke nobody; the refuser's fetch_sub then took pending to the mark, and a
 * WaitForRoom caller that saw the loop full slept with the loop idle until
 * shutdown (forever with an infinite deadline). Reserve is now a load and
 * a compare-and-swap to +1 only below the limit (it never overshoots);
 * the old form is kept as the mutant MUT_RESERVE_OVERSHOOT, which the
 * script requires no_stuck_waiter to catch. Trail: tools/check_spin_model.sh
 * --trail 'MUT_RESERVE_OVERSHOOT -DCAPACITY=1' no_stuck_waiter.
 *
 * WHAT IS MODELLED
 * The foreign ingress of one loop (loop/internal/foreign_ingress.h
 * ForeignIngress): head_ holding a node list or a tag kEmpty / kArmed /
 * kClosed, the Treiber push (a compare-and-swap on head_), the loop's take
 * of the whole list (one exchange) and its reversal to FIFO, arming (a
 * compare-and-swap kEmpty -> kArmed), the eventfd written only by the push
 * that replaced kArmed, and the close at shutdown. Around it: the registry
 * pin (loop_registry.{h,cc}: Pin, Unpin, the closed bit, the two pin epochs,
 * CloseAndWaitForPins, WaitForEarlierPins), the accept table entry of one
 * context C (ForeignAcceptTable), DestroyContext(C) with its marker task
 * (loop_contexts.cc), Run's event loop (loop_core.cc Run, OnWake, OnBatch,
 * loop_ready_queue.cc RunBatch with its batch-end take), the stop flag and
 * a foreign Stop() [S12], and Shutdown's close, drain and unregister
 * (loop_shutdown.cc) up to the LoopCore's destruction.
 *
 * PROCESSES
 *  Loop      The loop thread: Run() (L-R1..L-R3) until a stop, with one
 *            DestroyContext(C) from a callback at any point (L-D1..L-D6,
 *            its marker L-M1), then Shutdown() (L-S1..L-S8); the takes
 *            (L-T1..L-T4), QueueIngress (L-Q1..L-Q4), batches (L-B1..L-B5)
 *            and wake-ups (L-W1..L-W3) inside.
 *  Poster    x2. A foreign Post (loop.cc Post, loop_ingress.cc
 *            ForeignPostSlot::Open / Commit, LoopCore::PushForeign,
 *            WriteWakeFd): P3 the node and its task built first, no pin
 *            held; P1 Pin; P2 accept_.Accepts; [P4 reserve: the pending
 *            bound]; P5 Push; P6 the eventfd write if the push replaced
 *            kArmed; P7 Unpin; P8 refusal (task destroyed after the unpin).
 *            Poster 0 posts POSTS (2) tasks, poster 1 POSTS1 (1); each to
 *            the root or to C (chosen nondeterministically per post). With
 *            CAPACITY: posts go to the root only (no DestroyContext: it is
 *            checked without CAPACITY), poster 1's post is bounded or
 *            PostNeverFull (nondeterministic), and poster 0, refused for
 *            room, calls WaitForRoom (W1..W6) before its next post.
 *  Destroyer The thread that ends the loop, as LoopThread's owner does: a
 *            foreign Loop::Stop() (loop_core.cc LoopCore::Stop: X1 Pin, X2
 *            the flag, X3 push a kStop node, X4 the eventfd write, X5 Unpin),
 *            then it joins the loop thread (X6), which shuts down and
 *            destroys the loop [S11]; then it checks the final state.
 *
 * PROPERTIES (all checked by tools/check_spin_model.sh)
 *  - Every accepted post runs exactly once, on the loop, in post order per
 *    poster (FIFO: the reversal), never after its context's FreeContext,
 *    and every post to C that passed the accept check has run when the
 *    marker runs [S7]; a refused post never runs (assertions in run_entry
 *    and the Destroyer's final check).
 *  - No push is accepted after close: a pinned push never even finds the
 *    ingress closed (assert res != R_CLOSED), and Close exchanges head_ for
 *    good, so nothing links after it.
 *  - No poster touches a closed or destroyed loop: every access to the
 *    loop's memory (accept table, head_, eventfd, stop flag) holds a pin of
 *    a loop that is alive (TOUCH).
 *  - No lost wake-up: ltl no_lost_wake: never is the loop asleep in epoll
 *    (label `sleep`, no loopbreak, no batch scheduled, eventfd not readable)
 *    while nodes wait in head_ and no poster still owes its eventfd write.
 *  - No lost stop: ltl no_lost_stop (weak fairness): once Stop() pushed
 *    its node, Run() returns. Also invalid end states (safety run): every execution ends
 *    with the loop shut down and every process finished; a stranded loop
 *    or a shutdown waiting forever is a deadlock Spin reports.
 *  - No cycles (--full: pan -l with no progress labels): every execution
 *    is finite, so the end-state checks judge all of them.
 *  - CAPACITY=N (spin -DCAPACITY=1): Loop::Options::max_pending_foreign.
 *    P4 (ForeignIngress::Reserve, after the accept check, before the push):
 *    fetch_add(1); if the old value was >= N, fetch_sub(1) and refuse
 *    (kResourceExhausted: counted in cap_refused, never run). The loop
 *    releases after the tasks ran (RunForeignSegment: L-B6 the seq_cst
 *    fetch_sub, L-B7 the seq_cst load of waiters, L-B8 WakeAll if the count
 *    is at or below N/2 and a waiter is registered), not when it takes.
 *    Stop() (kStop) and PostNeverFull are exempt. Checked: the reserved
 *    tasks not yet run never exceed N (assert at P4), a refused post never
 *    runs, pending_ and waiters are 0 at the end, a waiter is woken at
 *    shutdown at the latest (L-SR room_->Close(); else an invalid end
 *    state), and ltl no_stuck_waiter: never is a waiter blocked (no wake-up
 *    since the epoch it read, the signal open) while pending <= N/2 and the
 *    loop sleeps with nothing queued or owed. WaitForRoom (loop.cc): W1 Pin,
 *    W2 waiters.fetch_add (seq_cst), W3 epoch under mu, W4 HasRoom (seq_cst
 *    load), W5 Unpin, W6 wait until the epoch changes or closed. The
 *    seq_cst pair W2/W4 against L-B6/L-B7 is a store-load (Dekker) pattern:
 *    in SC's single order one side sees the other, which is what the model's
 *    interleavings give, so SC is exact for it.
 *
 * ABSTRACTED (and why it is sound to)
 *  - Node recycling (the pool and per-thread caches, foreign_ingress.cc):
 *    each post has its own node. The ingress never reads a node it does not
 *    own (no ABA: the loop takes the whole list, a pusher only writes its
 *    own node before its CAS, and a successful CAS links in front of
 *    exactly the value it compared), so reuse cannot change an outcome;
 *    the pool is a stack under a mutex, outside this protocol.
 *  - Delayed posts, cancels and fd-watch stops push nodes the same way
 *    (same P1-P7); their loop-side handling (timers, claims) is not here.
 *  - The accept table of other contexts, local (same-thread) posts, the
 *    owner check in Pin, shutdown's timers [S4], hooks [S10],
 *    watches [S6] and its round budget [S3] (no task here reposts).
 *  - The slot's generation: after Unregister the model's slot stays
 *    closed; in the code a later loop reopens it with a new generation,
 *    which fails the old handle's pin just the same.
 *  - The eventfd is one bit (readable or not): the loop reads it to zero
 *    and only readiness matters. A ForeignSegment is flattened into the
 *    ready queue: a batch runs the entries (nodes) queued when it started.
 *  - DestroyContext is called from a callback between batches; the code
 *    also calls it from tasks inside a batch (then in_batch defers the
 *    batch scheduling to the batch end, L-B5).
 *
 * MEMORY ORDERS: why a sequentially consistent model is sound here
 *  - head_: every write after construction is a read-modify-write (push
 *    CAS release, take exchange acquire, arming CAS acquire, Close exchange
 *    acquire), so all of them lie in one modification order and each reads
 *    the latest value: for head_ alone, SC. A push's first load is relaxed
 *    and may be stale, but it only supplies the CAS's expected value: a
 *    stale value fails the CAS (which reloads) and a successful CAS links in
 *    front of exactly what it replaced. So the model makes load + CAS one
 *    step (P5); likewise Take's acquire load only picks which RMW follows,
 *    and each Take iteration is one step (L-T1/L-T4).
 *  - Node contents (next, ctx, task, kind) are written before the push's
 *    release CAS and read after the loop's acquire exchange; since every
 *    later write of head_ is an RMW, the release sequence of each push
 *    reaches the exchange, so the loop sees every node as written.
 *  - eventfd: write(2) and read(2) on one kernel object, serialized by its
 *    lock, so the push before a write happens before the take after the
 *    read that drained it (OnWake reads, then takes: L-W1, L-W2).
 *  - The slot state: every write is an RMW (Pin CAS acq_rel, Unpin fetch_sub
 *    release, close fetch_or acq_rel, epoch flip fetch_xor acq_rel): one
 *    order, SC for that variable. A waiter's acquire load that reads a pin
 *    count of 0 synchronizes with every Unpin (release sequence), so all a
 *    poster did under its pin happens before what the loop does after the
 *    wait (L-D3, L-S3, L-S7). The old epoch's count only falls after the
 *    flip, so the waits are exact; the model's waits are guards.
 *  - The accept entry (store release, Accepts load acquire): a pin that
 *    follows the flip in the slot's order reads from it (acq_rel) and so
 *    sees the store to 0 made before the flip. A pin that precedes the flip
 *    has no such edge: it may read the old generation even after the store
 *    in real time, which SC would forbid. The model gives such a poster
 *    (before_flip) that stale read explicitly (P2); DestroyContext waits
 *    for it (L-D3), which is what makes [S7] exact.
 *  - stop_requested_: Stop's store is sequenced before its release push,
 *    and QueueIngress reads the flag (relaxed) after the acquire take that
 *    found the kStop node, so it sees it (L-Q4: exact in the model). The
 *    other relaxed loads (StopRequestedInBatch L-B3, OnWake L-W3) have no
 *    such edge: the model lets them read false while the flag is set.
 *    Run's exchange (L-R1) is an RMW: the latest value.
 *  - The loop's private steps (running tasks, the ready queue, batch flags)
 *    are merged into atomic steps with at most one shared access, or with
 *    reads that commute with every other process's steps (the relaxed stop
 *    reads may read stale anyway); the Poster's Unpin is folded into its
 *    last step (P5 or P6): only the loop's waits read the pin counts, and
 *    they cannot pass while the pin is held, so no interleaving is lost.
 *  - Not modelled: wake_writes_ (a relaxed statistic), g_owner_epoch,
 *    refused_full_ (a relaxed statistic: cap_refused), RunUntilIdle and its
 *    hold of cross-thread posts (TakeIngressUnlessHeld; ArmIfEmpty when it
 *    returns): Run(until_idle) is a different loop body with its own
 *    settle step, not cheap to add; the release of delayed nodes at take
 *    (delayed nodes are not modelled), the release every 64 posts (the
 *    model has 3), WaitForRoom's retry loop and deadline (the poster goes
 *    on to its next post, which re-checks by posting).
 *  - Reserve's fetch_add/fetch_sub are relaxed: pending_ is one atomic
 *    whose writes are all RMWs (one modification order), so each RMW reads
 *    the latest value; the W4/L-B7 loads are seq_cst. Node `counted` is
 *    written before the push (release) and read after the take (acquire).
 *
 * MUTANTS (spin -DMUT_...; tools/check_spin_model.sh checks each is caught)
 *  MUT_NO_WAKE_WRITE        P6: the push that replaced kArmed writes nothing
 *  MUT_NO_BATCH_END_TAKE    L-B4: no take at the end of a batch
 *  MUT_TAKE_BEFORE_READ     L-W1/L-W2 swapped: take, then drain the eventfd
 *  MUT_ARM_STORE            L-T4: arm with load + plain store, not a CAS
 *  MUT_NO_REVERSE           L-T2: run the list LIFO
 *  MUT_UNPIN_BEFORE_PUSH    P7 before P5
 *  MUT_CLOSE_BEFORE_PINS    L-S4 before L-S2/L-S3
 *  MUT_CLOSE_NO_DRAIN       L-S5: what Close took is dropped
 *  MUT_NO_WAIT_EARLIER_PINS L-D2/L-D3 skipped
 *  MUT_STOP_FLAG_AFTER_PUSH X2 after X3
 *  MUT_RELEASE_ON_TAKE      release when taken (before the run), as the
 *                           old L-Q3 did: the bound on unrun tasks breaks
 *  MUT_NO_RELEASE           L-B6..L-B8 skipped
 *  MUT_STOP_COUNTED         Stop() reserves like a post (not exempt)
 *  MUT_NO_ROOM_CLOSE        L-SR skipped: a waiter sleeps past shutdown
 *  MUT_WAIT_READ_BEFORE_REGISTER  W4 before W2
 *  MUT_WAITERS_BEFORE_RELEASE     L-B7 before L-B6
 *  MUT_RESERVE_OVERSHOOT          P4 as fetch_add, undone by fetch_sub when full
 * (the CAPACITY mutants with CAPACITY=1)
 */

/* ------------------------------------------------------------------ sizes */
#ifndef POSTS
#define POSTS 2            /* posts of poster 0 (the node ids reserved) */
#endif
#ifndef POSTS1
#define POSTS1 1           /* posts of poster 1 (at most POSTS) */
#endif
#define POSTS_OF(p) (p == 0 -> POSTS : POSTS1)
#define NPOST 2            /* poster processes */
#define EMPTY 0            /* head_ tags (ForeignIngress kEmpty/kArmed/kClosed) */
#define ARMED 1
#define CLOSED 2
#define FIRST 3            /* node ids start here (kFirstNode) */
#define STOPNODE (FIRST + NPOST * POSTS)   /* the destroyer's kStop node */
#define NSLOTS (STOPNODE + 1)
#define NIL 0              /* a null `next` */
#define MARKER 255         /* DestroyContext's FreeContext marker task */
#define ROOT 0             /* contexts: the root (never destroyed) and C */
#define CTXC 1

/* ghost node states */
#define N_NEW 0            /* not posted yet */
#define N_ACCEPTED 1       /* passed the pin and accept check: must run once */
#define N_PUSHED 2         /* linked into head_ */
#define N_TAKEN 3          /* taken by the loop, in the ready queue */
#define N_RAN 4
#define N_REFUSED 5        /* pin or accept check refused: must never run */
#define N_CAP_REFUSED 6    /* CAPACITY: refused, counted, must never run */

/* push results (ForeignIngress::PushResult) */
#define R_NONE 0
#define R_QUEUED 1
#define R_WAKE 2
#define R_CLOSED 3

#define OPEN 0             /* LoopCore::Phase */
#define DRAINING 1
#define PCLOSED 2

/* ------------------------------------------------------------- the loop */
byte head = ARMED;         /* ForeignIngress::head_: starts armed */
byte nxt[NSLOTS];          /* IngressNode::next */
byte nctx[NSLOTS];         /* IngressNode::ctx */
bit efd = 0;               /* LoopCore::wake_fd_: readable or not */
bool stop_flag = false;    /* LoopCore::stop_requested_ */
byte phase = OPEN;         /* LoopCore::phase_ */
bool accept_c = true;      /* ForeignAcceptTable entry of C (root: always) */
bool batch_sched = false;  /* LocalPoster::batch_scheduled_ */
bool in_batch = false;     /* LocalPoster::in_batch_ */
bool loopbreak = false;    /* event_base_loopbreak was called */
chan ready = [NSLOTS] of { byte };  /* LocalPoster::ready_ (flattened) */
bool alive = true;         /* the LoopCore's memory: ingress, eventfd, table */

/* LoopSlot::state of the registry (loop_registry.h) */
bool slot_closed = false;  /* kClosedBit */
bit epoch = 0;             /* kEpochBit */
byte pins[2];              /* pins taken in epoch 0 / 1 */

#ifdef CAPACITY
#define LOW (CAPACITY / 2) /* LoopCore::low_water_: waiters wake at or below */
byte pending = 0;          /* ForeignIngress::pending_ (reserved, unreleased) */
byte cap_refused = 0;      /* refusals counted (refused_full_) */
byte waiters = 0;          /* RoomSignal::waiters */
byte room_epoch = 0;       /* RoomSignal::epoch (under mu) */
bool room_closed = false;  /* RoomSignal::closed (under mu) */
bool counted[NSLOTS];      /* IngressNode::counted */
byte unrun_counted = 0;    /* ghost: reserved user tasks not yet run */
bool wblocked = false;     /* ghost: poster 0 blocked in WaitForRoom's wait */
byte wepoch = 0;           /* ghost copy of the epoch the waiter read */
#endif

/* ----------------------------------------------------------- ghost state */
byte nst[NSLOTS];          /* node states above */
byte last_run[NPOST];      /* FIFO per producer: 1 + index of the last run */
byte wake_owed = 0;        /* pushes that found ARMED and have not written */
bool flipped = false;      /* DestroyContext flipped the pin epoch */
bool destroyed = false;    /* DestroyContext(C) was called */
bool freed_c = false;      /* its marker ran: FreeContext(C) */
bool stop_pushed = false;  /* the foreign Stop() pushed its node */
bool run_returned = false; /* Loop::Run returned */
bool loop_done = false;    /* the loop thread finished (joinable) */
byte posters_done = 0;

#define TOUCH(pinned) assert(pinned && alive)
/* LoopRegistry::Unpin (fetch_sub, release). `early`: the mutant that
 * unpins before the push has unpinned already. */
#define UNPIN(unit, pinned) \
  if :: early -> skip :: else -> pins[unit]-- fi; pinned = false

/* --------------------------------------------- loop thread (owner) code */

/* ForeignIngress::Reverse: l (LIFO) -> out (FIFO); the list is the loop's. */
inline reverse(l, out) {
  out = NIL;
#ifdef MUT_NO_REVERSE
  out = l;
#else
  do
  :: l == NIL -> break
  :: else -> rtmp = nxt[l]; nxt[l] = out; out = l; l = rtmp
  od
#endif
}

/* loop_ingress.cc LoopCore::QueueIngress, on the FIFO list l: stop nodes
 * set qstop, task nodes go to the ready queue (one ForeignSegment entry in
 * the code, flattened here). Loop-private but for the reads of phase_ and
 * stop_requested_ (exact here: see the header). Called inside an atomic. */
inline queue_ingress(l) {
  qstop = false; qtasks = false;
  do
  :: l == NIL -> break
  :: l == STOPNODE -> qstop = true;                   /* L-Q1 kStop */
     rtmp = nxt[l]; nxt[l] = NIL; l = rtmp
  :: l != NIL && l != STOPNODE ->                     /* L-Q2 kTask */
     assert(nst[l] == N_PUSHED);
     nst[l] = N_TAKEN; ready!l; qtasks = true;
#ifdef MUT_RELEASE_ON_TAKE
     if :: counted[l] -> pending-- :: else -> skip fi;  /* mutant: on take */
#endif
     rtmp = nxt[l]; nxt[l] = NIL; l = rtmp
  od;
  rtmp = 0;
  if                                                  /* L-Q4 [S12] */
  :: qstop && phase == OPEN && stop_flag -> loopbreak = true
  :: else -> skip
  fi;
  if                                  /* LocalPoster::Emplace/ScheduleBatch */
  :: qtasks && !batch_sched && !in_batch -> batch_sched = true
  :: else -> skip
  fi
}

/* loop_ingress.cc LoopCore::TakeIngress + foreign_ingress.h Take: take
 * again until tasks were queued or the ingress is armed (or closed). One
 * iteration of Take is one atomic step: its acquire load only picks the
 * read-modify-write that follows, whose outcome depends on the value that
 * RMW finds (see the header); the rest is loop-private. */
inline take_ingress() {
  do
  :: atomic {
       if
       :: head >= FIRST ->                     /* L-T1 exchange(kEmpty) */
          th = head; head = EMPTY;
          reverse(th, tl);                     /* L-T2 Reverse */
          queue_ingress(tl);                   /* L-T3 QueueIngress */
          th = 0; tl = 0; qstop = false;
          if
          :: qtasks -> qtasks = false; break   /* tasks queued */
          :: else -> skip                      /* a stop only: take again */
          fi
       :: head == ARMED || head == CLOSED ->   /* armed already, or closed */
          break
       :: head == EMPTY ->
#ifdef MUT_ARM_STORE
          tarm = true                          /* mutant: saw kEmpty ... */
#else
          head = ARMED; break                  /* L-T4 CAS kEmpty -> kArmed */
#endif
       fi
     }
#ifdef MUT_ARM_STORE
     ; atomic { tarm -> head = ARMED; tarm = false; break }  /* ... stores */
#endif
  od
}

/* One ready entry: loop_ready_queue.cc RunEntry / loop_ingress.cc RunNode. */
inline run_entry(x) {
  atomic {
    if
    :: x == MARKER ->                  /* L-M1 FreeContext(C): [S7] [S10] */
       for (ri : FIRST .. STOPNODE - 1) {
         assert(!(nctx[ri] == CTXC &&
                  (nst[ri] == N_ACCEPTED || nst[ri] == N_PUSHED ||
                   nst[ri] == N_TAKEN)))   /* every accepted post to C ran */
       };
       ri = 0;
       freed_c = true
    :: else ->                         /* L-B2 RunNode: the task runs */
       assert(nst[x] == N_TAKEN);             /* exactly once */
       assert(!(nctx[x] == CTXC && freed_c));  /* never after FreeContext */
       assert((x - FIRST) % POSTS + 1 > last_run[(x - FIRST) / POSTS]);  /* FIFO */
       last_run[(x - FIRST) / POSTS] = (x - FIRST) % POSTS + 1;
       nst[x] = N_RAN;
#ifdef CAPACITY
       if
       :: counted[x] -> ran++; unrun_counted--   /* RunForeignSegment's `ran` */
       :: else -> skip
       fi
#endif
    fi
  }
}

/* loop_ready_queue.cc LoopCore::RunBatch (+ RunForeignSegment): the
 * entries queued when it starts, a stop check after each, then the batch-end
 * take. Loop-private but for the relaxed stop-flag reads (see the header),
 * so the tasks run in one atomic step. run_batch_head starts with L-B1
 * inside the caller's atomic (its guard is the caller's). */
inline run_batch_head() {
  batch_sched = false; in_batch = true;        /* L-B1 */
  bn = len(ready);                             /* this batch: what is queued */
  do
  :: bn == 0 -> break
  :: bn > 0 ->
     ready?bx; run_entry(bx); bn--;
     if                                        /* L-B3 StopRequestedInBatch */
     :: phase == OPEN && stop_flag -> loopbreak = true; break
     :: true -> skip                           /* relaxed: may read stale */
     fi
  od;
  bn = 0; bx = 0
}

/* LoopCore::ReleasePending(ran) at the segment's end (RunForeignSegment:
 * also every 64 posts and before a stop breaks the batch; the model's posts
 * are fewer). L-B6 the release (seq_cst fetch_sub), L-B7 the seq_cst load of
 * RoomSignal::waiters, L-B8 RoomSignal::WakeAll (epoch bump + SignalAll
 * under mu). A separate step each: the waiter interleaves between them. */
inline release_pending() {
#ifdef CAPACITY
  if
  :: ran > 0 ->
#if defined(MUT_NO_RELEASE) || defined(MUT_RELEASE_ON_TAKE)
     ran = 0
#else
#ifdef MUT_WAITERS_BEFORE_RELEASE
     wsaw = waiters;                           /* mutant: L-B7 first */
     atomic { pending = pending - ran; low = (pending <= LOW); ran = 0 };  /* L-B6 release */
#else
     atomic { pending = pending - ran; low = (pending <= LOW); ran = 0 };  /* L-B6 release */
     wsaw = waiters;                           /* L-B7 load waiters */
#endif
     if
     :: low && wsaw > 0 -> room_epoch++        /* L-B8 WakeAll */
     :: else -> skip
     fi;
     low = false; wsaw = 0
#endif
  :: else -> skip
  fi
#endif
}

inline run_batch_tail() {
#ifdef CAPACITY
  release_pending();
#endif
#ifndef MUT_NO_BATCH_END_TAKE
  take_ingress();                              /* L-B4 batch-end take */
#endif
  atomic {
    in_batch = false;
    if
    :: len(ready) > 0 -> batch_sched = true    /* L-B5 next batch */
    :: else -> skip
    fi
  }
}

/* loop_contexts.cc LoopCore::DestroyContext(C), from a callback (its
 * first step, L-D1, is in the caller's atomic). */
inline destroy_context_rest() {
#ifndef MUT_NO_WAIT_EARLIER_PINS
  atomic { dold = epoch; epoch = 1 - epoch; flipped = true };  /* L-D2 flip */
  atomic { pins[dold] == 0 -> dold = 0 };       /* L-D3 wait earlier pins */
#endif
  take_ingress();                               /* L-D4 */
  take_ingress();                               /* L-D5 */
  atomic {
    ready!MARKER;                               /* L-D6 the marker task */
    if
    :: !batch_sched && !in_batch -> batch_sched = true
    :: else -> skip
    fi
  }
}

active proctype Loop() {
  byte th, tl, rtmp, bn, bx, ri, dold, ran, wsaw;
  bool qstop, qtasks, tarm, rstop, low;

  /* ---- Run(): loop_core.cc LoopCore::Run (until_idle = false) */
  atomic {
    rstop = stop_flag; stop_flag = false;           /* L-R1 exchange(false) */
    loopbreak = rstop                               /* Stop() came first */
  };
sleep:                                              /* L-R2 epoll_wait */
  do                                                /* event_base_loop */
  :: loopbreak -> break                             /* after a callback */
  :: atomic { !loopbreak && batch_sched ->          /* OnBatch */
       run_batch_head() };
     run_batch_tail()
#ifdef MUT_TAKE_BEFORE_READ
  :: atomic { !loopbreak && efd == 1 -> skip };     /* mutant: take, read */
     take_ingress(); efd = 0;
#else
  :: atomic { !loopbreak && efd == 1 ->             /* OnWake */
       efd = 0 };                                   /* L-W1 read eventfd */
     take_ingress();                                /* L-W2 */
#endif
     atomic {
       if                                           /* L-W3 stop flag */
       :: stop_flag -> loopbreak = true
       :: true -> skip                              /* relaxed: may be stale */
       fi
     }
#ifndef CAPACITY
  :: atomic { !loopbreak && !destroyed ->           /* a callback that */
       destroyed = true; accept_c = false };        /* L-D1 DestroyContext */
     destroy_context_rest()
#endif
  od;
  atomic {
    if
    :: !rstop -> stop_flag = false                  /* L-R3 store(false) */
    :: else -> skip                                 /* (no event loop ran) */
    fi;
    run_returned = true; loopbreak = false;
    phase = DRAINING;                               /* L-S1 */
#ifdef MUT_CLOSE_BEFORE_PINS
    th = head; head = CLOSED;
    if :: th >= FIRST -> reverse(th, tl) :: else -> tl = NIL fi;
    queue_ingress(tl); th = 0; tl = 0; qstop = false; qtasks = false
  };
  slot_closed = true;
  (pins[0] == 0 && pins[1] == 0);
#ifdef CAPACITY
  room_closed = true;
#endif
#else
    slot_closed = true                              /* L-S2 CloseAndWaitForPins */
  };
  atomic { pins[0] == 0 && pins[1] == 0 ->          /* L-S3 [S5] */
#if defined(CAPACITY) && !defined(MUT_NO_ROOM_CLOSE)
    room_closed = true;                             /* L-SR room_->Close() */
#endif
    th = head; head = CLOSED;                       /* L-S4 ingress_.Close */
    if :: th >= FIRST -> reverse(th, tl) :: else -> tl = NIL fi;
#ifndef MUT_CLOSE_NO_DRAIN
    queue_ingress(tl);                              /* L-S5 [S1] */
#endif
    th = 0; tl = 0; qstop = false; qtasks = false };
#endif
  do                                                /* L-S6 Drain [S1] [S2] */
  :: take_ingress();
     if
     :: atomic { len(ready) > 0 -> run_batch_head() };
        run_batch_tail()
     :: len(ready) == 0 -> break
     fi
  od;
  atomic { pins[0] == 0 && pins[1] == 0 ->          /* L-S7 Unregister [S8] */
    batch_sched = false; phase = PCLOSED;
    alive = false;                                  /* L-S8 ~LoopCore */
    loop_done = true }
}

/* ------------------------------------------------ foreign thread code */

/* LoopRegistry::Pin: one CAS on the slot state (fails if closed). */
inline pin(n, ok, unit, before_flip) {
  atomic {
    if                                 /* the post's target (private) */
    :: n != STOPNODE -> nctx[n] = ROOT
#ifndef CAPACITY
    :: n != STOPNODE -> nctx[n] = CTXC
#endif
    :: n == STOPNODE -> skip
    fi;
    if
    :: !slot_closed -> pins[epoch]++; unit = epoch; ok = true; /* P1 X1 W1 pin */
                       before_flip = !flipped
    :: else -> ok = false
    fi
  }
}

/* ForeignIngress::Push: the relaxed load, the link and the CAS (release).
 * The load feeds only the CAS's expected value, so load + CAS are one step:
 * a stale or overtaken load just fails the CAS and retries (see header).
 * kQueued: the Unpin that follows is folded into this step (see header). */
inline push(n, res, pinned, unit) {
  atomic {
    TOUCH(pinned);
    if
    :: head == CLOSED -> res = R_CLOSED                     /* kClosed */
    :: else ->
       nxt[n] = (head >= FIRST -> head : NIL);
       res = (head == ARMED -> R_WAKE : R_QUEUED);
       head = n;                                  /* P5 X3 push CAS */
       nst[n] = N_PUSHED
    fi;
    assert(res != R_CLOSED);               /* a pin rules kClosed out */
    if
    :: res == R_WAKE -> wake_owed++
    :: else -> UNPIN(unit, pinned)                          /* Unpin */
    fi
  }
}

/* kQueuedWake: LoopCore::WriteWakeFd, then the Unpin (folded in). */
inline wake(res, pinned, unit) {
  if
  :: res == R_WAKE ->
     atomic {
       TOUCH(pinned);
#ifndef MUT_NO_WAKE_WRITE
       efd = 1;
#endif
       wake_owed--;
       UNPIN(unit, pinned)                                  /* Unpin */
     }
  :: else -> skip
  fi
}

#ifdef CAPACITY
/* loop.cc WaitForRoom (infinite deadline), one round: W1 Pin, W2 register
 * (waiters.fetch_add seq_cst), W3 read the epoch under mu, W4 HasRoom (a
 * seq_cst load of pending_), W5 Unpin, W6 wait on the condvar until the
 * epoch changes or the signal is closed, then unregister. (The code then
 * loops and re-checks; the model's poster goes on to its next post, which
 * re-checks by posting.) */
inline wait_for_room() {
  pin(STOPNODE, pinned, unit, before_flip);       /* W1 (STOPNODE: no ctx) */
  if
  :: pinned ->
#ifdef MUT_WAIT_READ_BEFORE_REGISTER
     atomic { TOUCH(pinned); hasroom = (pending < CAPACITY) };  /* W4 first */
     waiters++;                                   /* W2 */
     wepoch = room_epoch;                         /* W3 */
#else
     waiters++;                                   /* W2 register */
     wepoch = room_epoch;                         /* W3 epoch under mu */
     atomic { TOUCH(pinned); hasroom = (pending < CAPACITY) };  /* W4 HasRoom */
#endif
     atomic {
       pins[unit]--; pinned = false;              /* W5 Unpin */
       if
       :: hasroom -> waiters--                    /* room: unregister */
       :: else -> wblocked = true
       fi
     };
     if
     :: hasroom -> skip
     :: else ->
        atomic { room_epoch != wepoch || room_closed ->   /* W6 the wait */
          wblocked = false; waiters-- }
     fi
  :: else -> skip                                 /* the loop is gone */
  fi;
  hasroom = false; wepoch = 0; before_flip = false
}
#endif

/* A foreign Post(ctx, task): loop.cc Post, local_post.h ForeignPostSlot:
 * P3 the node and its task are built first, with no pin held. */
active [NPOST] proctype Poster() {
  byte p = _pid - 1;       /* Loop is pid 0, posters 1.., Destroyer last */
  byte k, n, res, unit, rold;
  bool ok, pinned, before_flip, early, hasroom;

  do
  :: k == POSTS_OF(p) -> break
  :: k < POSTS_OF(p) ->
    n = FIRST + p * POSTS + k;
    pin(n, pinned, unit, before_flip);            /* P1 Pin [S5] [S8] */
    if
    :: !pinned -> nst[n] = N_REFUSED; goto next
    :: else -> skip
    fi;
    atomic {                                      /* P2 accept_.Accepts [S7] */
      TOUCH(pinned);
      if
      :: nctx[n] == ROOT -> ok = true
      :: nctx[n] == CTXC && accept_c -> ok = true
      :: nctx[n] == CTXC && !accept_c && before_flip -> ok = true  /* stale */
      :: nctx[n] == CTXC && !accept_c -> ok = false
      fi;
      if
      :: ok -> nst[n] = N_ACCEPTED                /* accepted */
      :: else -> nst[n] = N_REFUSED
      fi
    };
#ifdef CAPACITY
    if
    :: ok && p == 1 -> skip             /* PostNeverFull: exempt, no P4 */
    :: ok ->
#ifndef MUT_RESERVE_OVERSHOOT
       atomic {                         /* P4 as load + CAS loop */
         TOUCH(pinned);
         if
         :: pending < CAPACITY -> pending++; rold = 0   /* P4 reserve (CAS) */
         :: else -> rold = CAPACITY
         fi
       };
#else
       atomic {
         TOUCH(pinned); rold = pending; pending++  /* P4 reserve: fetch_add */
       };
#endif
       if
       :: rold < CAPACITY ->
          atomic {                      /* reserved: node->counted */
            counted[n] = true; unrun_counted++;
            assert(unrun_counted <= CAPACITY)   /* the bound holds */
          }
       :: else ->                       /* refused (kResourceExhausted) */
          atomic {
            TOUCH(pinned);
#ifdef MUT_RESERVE_OVERSHOOT
            pending--;                  /* P4 undo: fetch_sub(1) relaxed */
#endif
            cap_refused++; nst[n] = N_CAP_REFUSED; ok = false
          }
       fi;
       rold = 0
    :: !ok -> skip
    fi;
#endif
    if
    :: !ok -> atomic { pins[unit]--; pinned = false };  /* P7 Unpin */
#ifdef CAPACITY
       if                               /* P8 refusal; poster 0 then waits */
       :: p == 0 && nst[n] == N_CAP_REFUSED -> wait_for_room()
       :: else -> skip
       fi;
#endif
       goto next
    :: else -> skip
    fi;
#ifdef MUT_UNPIN_BEFORE_PUSH
    atomic { pins[unit]--; early = true };        /* mutant: unpins first */
    push(n, res, pinned, unit);
    wake(res, pinned, unit);
#else
    push(n, res, pinned, unit);                   /* P5 Push (CAS) */
    wake(res, pinned, unit);                      /* P6 eventfd, P7 Unpin */
#endif
next:
    res = R_NONE; ok = false; before_flip = false; unit = 0; early = false;
    k++
  od;
  posters_done++
}

/* The thread that ends the loop: a foreign Loop::Stop() (loop_core.cc
 * LoopCore::Stop, [S12]), then it joins the loop thread, which shuts the
 * loop down and destroys it (LoopThread's shape; [S11]). */
active proctype Destroyer() {
  byte res, unit, i;
  bool pinned, before_flip, early;

  pin(STOPNODE, pinned, unit, before_flip);       /* X1 Pin */
#if defined(CAPACITY) && defined(MUT_STOP_COUNTED)
  if                                              /* mutant: Stop reserves */
  :: pinned ->
     atomic { i = pending; pending++ };
     if
     :: i >= CAPACITY ->                          /* refused: never pushed */
        atomic { pending--; pins[unit]--; pinned = false }
     :: else -> skip
     fi;
     i = 0
  :: else -> skip
  fi;
#endif
  if
  :: pinned ->
#ifdef MUT_STOP_FLAG_AFTER_PUSH
     nst[STOPNODE] = N_ACCEPTED;
     push(STOPNODE, res, pinned, unit); stop_flag = true;
#else
     atomic { TOUCH(pinned); stop_flag = true };  /* X2 stop_requested_ */
     nst[STOPNODE] = N_ACCEPTED;
     push(STOPNODE, res, pinned, unit);           /* X3 push the kStop node */
#endif
     stop_pushed = true;
     wake(res, pinned, unit)                      /* X4 eventfd, X5 Unpin */
  :: else -> skip
  fi;
  loop_done;                                      /* X6 join */
  posters_done == NPOST;
  /* Final: every accepted post ran exactly once, nothing else ran. */
  for (i : FIRST .. STOPNODE - 1) {
    assert(nst[i] == N_RAN || nst[i] == N_REFUSED ||
           nst[i] == N_CAP_REFUSED || nst[i] == N_NEW)  /* N_NEW: unused id */
  };
  assert(head == CLOSED && len(ready) == 0 && wake_owed == 0);
  assert(pins[0] == 0 && pins[1] == 0);
  assert(freed_c == destroyed);
#ifdef CAPACITY
  assert(pending == 0 && unrun_counted == 0 && waiters == 0 && !wblocked)
#endif
}

/* ----------------------------------------------------------- properties */

/* A lost wake-up: the loop sleeps in epoll with no batch scheduled and no
 * eventfd readiness, while nodes wait in the ingress and no poster still
 * owes the eventfd write (a push that found ARMED and has not written). */
#define lost_wake (Loop[0]@sleep && !loopbreak && efd == 0 && \
                   !batch_sched && head >= FIRST && wake_owed == 0)
ltl no_lost_wake { [] !lost_wake }
/* No lost stop: once the foreign Stop() pushed its node, Run() returns. */
ltl no_lost_stop { [] (stop_pushed -> <> run_returned) }
#ifdef CAPACITY
/* No stuck waiter: never is a WaitForRoom caller blocked (no wake-up since
 * the epoch it read, the signal open) while the pending count is at or
 * below the low-water mark and the loop is idle asleep with nothing queued
 * or owed: no release is coming to wake it. */
#define stuck_waiter (wblocked && room_epoch == wepoch && !room_closed && \
                      pending <= LOW && Loop[0]@sleep && !loopbreak && \
                      efd == 0 && !batch_sched && head < FIRST && \
                      wake_owed == 0 && len(ready) == 0)
ltl no_stuck_waiter { [] !stuck_waiter }
#endif
