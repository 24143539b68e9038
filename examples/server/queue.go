package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// queue is a job queue in the example's database, shared by every process
// that opens the same database with the same queue name.
//
// A job is 'queued', 'running' or 'done'. A claim takes the oldest job that
// is queued, or running with an expired lease, and makes it running, owned by
// the claim's owner, leased until now + lease. Every later change of that job
// (extend, complete, release) is guarded by the owner and the status, in the
// same statement: a worker that has lost its job (its lease expired and
// another claimed it) changes nothing. Completing a job writes its status and
// a row of completions in one transaction, so the effect of a job is
// committed exactly once, whatever the restarts.
//
// The rule for jobs left behind by a process that died without releasing
// them (SIGKILL, a crash, a lost machine): a running job whose lease has
// expired is queued again, in effect: the next claim, by any process, takes
// it (and counts it in reclaims). A live worker extends its lease while it
// works, so only a dead or stuck one loses it. Leases use the clocks of the
// processes: those that share a database must keep their clocks in sync.
type queue struct {
	db      *database
	name    string        // the queue: several can share a database
	lease   time.Duration // how long a claim lasts without an extension
	now     func() time.Time
	notify  chan struct{} // gets a token when this process enqueues, to wake its worker
	sqlText map[string]string
}

// job is a claimed job.
type job struct {
	id      int64
	payload string
	owner   string // the claim's owner: run id and claim number
	claims  int    // how many times the job was claimed, this claim included
}

// Statuses of a job.
const (
	statusQueued  = "queued"
	statusRunning = "running"
	statusDone    = "done"
)

func newQueue(db *database, name string, lease time.Duration) *queue {
	q := &queue{db: db, name: name, lease: lease, now: time.Now, notify: make(chan struct{}, 1)}
	q.sqlText = make(map[string]string, len(queries))
	for k, s := range queries {
		q.sqlText[k] = rebind(db.cfg.dialect, s)
	}
	return q
}

// queries are written with '?' placeholders; rebind turns them into $n for
// PostgreSQL.
var queries = map[string]string{
	"enqueue": `INSERT INTO jobs (queue, payload, created_at) VALUES (?, ?, ?) RETURNING id`,
	// The claim. On PostgreSQL, FOR UPDATE SKIP LOCKED makes concurrent
	// claimers take different rows without waiting for each other. Without
	// it, two claimers pick the same row, the second waits for the first to
	// commit, and then comes back empty-handed, or, if the outer WHERE did
	// not repeat the condition, claims the row again: with both removed,
	// TestQueue/PostgreSQL/ConcurrentClaimers sees jobs done twice. SQLite has no
	// row locks: a writing statement holds the database's one write lock
	// from its first read, and the claim's transaction begins with BEGIN
	// IMMEDIATE (see parseDB), so it waits for the lock (busy_timeout) rather
	// than fail to upgrade a read snapshot.
	"claim.postgres": `UPDATE jobs SET status = 'running', owner = ?, lease_until = ?, claims = claims + 1,
			reclaims = reclaims + CASE WHEN status = 'running' THEN 1 ELSE 0 END
		WHERE id = (SELECT id FROM jobs
			WHERE queue = ? AND (status = 'queued' OR (status = 'running' AND lease_until < ?))
			ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
		AND (status = 'queued' OR (status = 'running' AND lease_until < ?))
		RETURNING id, payload, claims`,
	"claim.sqlite": `UPDATE jobs SET status = 'running', owner = ?, lease_until = ?, claims = claims + 1,
			reclaims = reclaims + CASE WHEN status = 'running' THEN 1 ELSE 0 END
		WHERE id = (SELECT id FROM jobs
			WHERE queue = ? AND (status = 'queued' OR (status = 'running' AND lease_until < ?))
			ORDER BY id LIMIT 1)
		AND (status = 'queued' OR (status = 'running' AND lease_until < ?))
		RETURNING id, payload, claims`,
	"extend":   `UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'`,
	"complete": `UPDATE jobs SET status = 'done', owner = NULL, lease_until = NULL, done_at = ? WHERE id = ? AND owner = ? AND status = 'running'`,
	"record":   `INSERT INTO completions (job_id, run_id, at) VALUES (?, ?, ?)`,
	"release": `UPDATE jobs SET status = 'queued', owner = NULL, lease_until = NULL, releases = releases + 1
		WHERE id = ? AND owner = ? AND status = 'running'`,
	"stats.status":      `SELECT status, count(*) FROM jobs WHERE queue = ? GROUP BY status`,
	"stats.counts":      `SELECT count(*), coalesce(sum(claims), 0), coalesce(sum(releases), 0), coalesce(sum(reclaims), 0) FROM jobs WHERE queue = ?`,
	"stats.expired":     `SELECT count(*) FROM jobs WHERE queue = ? AND status = 'running' AND lease_until < ?`,
	"stats.completions": `SELECT count(*) FROM completions c JOIN jobs j ON j.id = c.job_id WHERE j.queue = ?`,
	"stats.twice": `SELECT count(*) FROM (SELECT c.job_id FROM completions c JOIN jobs j ON j.id = c.job_id
		WHERE j.queue = ? GROUP BY c.job_id HAVING count(*) > 1) t`,
	"stats.lost": `SELECT count(*) FROM jobs j WHERE j.queue = ? AND j.status = 'done'
		AND NOT EXISTS (SELECT 1 FROM completions c WHERE c.job_id = j.id)`,
}

func rebind(d dialect, q string) string {
	if d != postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (q *queue) sql(name string) string { return q.sqlText[name] }

// enqueue adds one job per payload, in one transaction, and returns their
// ids in order. It wakes this process's worker.
func (q *queue) enqueue(ctx context.Context, payloads []string) ([]int64, error) {
	tx, err := q.db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, q.sql("enqueue"))
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	defer stmt.Close()
	now := q.now().UnixMilli()
	ids := make([]int64, 0, len(payloads))
	for _, p := range payloads {
		var id int64
		if err := stmt.QueryRowContext(ctx, q.name, p, now).Scan(&id); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		ids = append(ids, id)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return ids, nil
}

// claim takes the oldest claimable job for owner, in a transaction, and
// reports false when there is none.
func (q *queue) claim(ctx context.Context, owner string) (job, bool, error) {
	tx, err := q.db.db.BeginTx(ctx, nil)
	if err != nil {
		return job{}, false, fmt.Errorf("claim: %w", err)
	}
	defer tx.Rollback()
	now := q.now()
	j := job{owner: owner}
	err = tx.QueryRowContext(ctx, q.sql("claim."+q.db.cfg.dialect.String()),
		owner, now.Add(q.lease).UnixMilli(), q.name, now.UnixMilli(), now.UnixMilli()).Scan(&j.id, &j.payload, &j.claims)
	if errors.Is(err, sql.ErrNoRows) {
		return job{}, false, nil
	}
	if err != nil {
		return job{}, false, fmt.Errorf("claim: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return job{}, false, fmt.Errorf("claim: %w", err)
	}
	return j, true, nil
}

// guarded runs one of the owner-guarded updates and reports whether it
// changed the job: false means the job is no longer this owner's.
func (q *queue) guarded(ctx context.Context, name string, args ...any) (bool, error) {
	res, err := q.db.db.ExecContext(ctx, q.sql(name), args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return n == 1, nil
}

// extend renews j's lease, and reports false if j is no longer the owner's.
func (q *queue) extend(ctx context.Context, j job) (bool, error) {
	return q.guarded(ctx, "extend", q.now().Add(q.lease).UnixMilli(), j.id, j.owner)
}

// release puts j back in the queue, and reports false if j was no longer
// the owner's (it was reclaimed, or is done).
func (q *queue) release(ctx context.Context, j job) (bool, error) {
	return q.guarded(ctx, "release", j.id, j.owner)
}

// complete marks j done and records the completion by run, in one
// transaction, and reports false (changing nothing) if j was no longer the
// owner's.
func (q *queue) complete(ctx context.Context, j job, run string) (bool, error) {
	tx, err := q.db.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("complete: %w", err)
	}
	defer tx.Rollback()
	now := q.now().UnixMilli()
	res, err := tx.ExecContext(ctx, q.sql("complete"), now, j.id, j.owner)
	if err != nil {
		return false, fmt.Errorf("complete: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, q.sql("record"), j.id, run, now); err != nil {
		return false, fmt.Errorf("complete: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("complete: %w", err)
	}
	return true, nil
}

// queueStats is what GET /jobs/stats answers.
type queueStats struct {
	Queue       string `json:"queue"`
	Queued      int64  `json:"queued"`       // waiting
	Running     int64  `json:"running"`      // claimed, not done
	Expired     int64  `json:"expired"`      // running with an expired lease: the next claim takes them back
	Done        int64  `json:"done"`         // done
	Total       int64  `json:"total"`        // ever enqueued
	Completions int64  `json:"completions"`  // rows of completions: one per job done, unless a job was done twice
	DoneTwice   int64  `json:"done_twice"`   // jobs with more than one completion; must stay 0
	Lost        int64  `json:"lost"`         // jobs marked done without a completion; must stay 0
	Claims      int64  `json:"claims"`       // claims in all, reclaims included
	Releases    int64  `json:"releases"`     // jobs put back by a worker whose stop budget ran out
	Reclaims    int64  `json:"reclaims"`     // jobs taken over after their lease expired
	Stragglers  int64  `json:"other_status"` // jobs in no known status; must stay 0
}

// stats reads the queue's counts. They are read one query after the other
// and may be a few milliseconds apart while workers run.
func (q *queue) stats(ctx context.Context) (queueStats, error) {
	s := queueStats{Queue: q.name}
	rows, err := q.db.db.QueryContext(ctx, q.sql("stats.status"), q.name)
	if err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return s, fmt.Errorf("stats: %w", err)
		}
		switch st {
		case statusQueued:
			s.Queued = n
		case statusRunning:
			s.Running = n
		case statusDone:
			s.Done = n
		default:
			s.Stragglers += n
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	for _, r := range []struct {
		name string
		args []any
		dest []any
	}{
		{"stats.counts", []any{q.name}, []any{&s.Total, &s.Claims, &s.Releases, &s.Reclaims}},
		{"stats.expired", []any{q.name, q.now().UnixMilli()}, []any{&s.Expired}},
		{"stats.completions", []any{q.name}, []any{&s.Completions}},
		{"stats.twice", []any{q.name}, []any{&s.DoneTwice}},
		{"stats.lost", []any{q.name}, []any{&s.Lost}},
	} {
		if err := q.db.db.QueryRowContext(ctx, q.sql(r.name), r.args...).Scan(r.dest...); err != nil {
			return s, fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return s, nil
}
