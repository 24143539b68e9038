package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// postgresEnv names the environment variable with the DSN of a PostgreSQL
// database for the tests (.ci/run starts one and sets it).
const postgresEnv = "GRACEFUL_TEST_POSTGRES"

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// testBackends returns the databases the queue tests run against: SQLite in
// a temporary file, and PostgreSQL when postgresEnv is set (under CI it must
// be).
func testBackends(t *testing.T) map[string]func(t *testing.T) dbConfig {
	b := map[string]func(t *testing.T) dbConfig{
		"SQLite": func(t *testing.T) dbConfig {
			cfg, err := parseDB("", filepath.Join(t.TempDir(), "q.db"))
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		},
	}
	dsn := os.Getenv(postgresEnv)
	switch {
	case dsn != "":
		b["PostgreSQL"] = func(t *testing.T) dbConfig {
			cfg, err := parseDB(dsn, "")
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	case os.Getenv("CI") != "":
		t.Errorf("%s is not set: CI must run the queue tests against PostgreSQL too", postgresEnv)
	default:
		t.Logf("%s is not set: PostgreSQL is not tested (set it to a postgres:// DSN)", postgresEnv)
	}
	return b
}

// openTestDB opens the database of cfg and closes it when the test ends.
func openTestDB(t *testing.T, cfg dbConfig) *database {
	t.Helper()
	d := newDatabase(cfg, discard)
	if err := d.open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return d
}

// testQueue returns a queue of its own (a name no other test uses) in the
// database of cfg, whose clock the test sets.
func testQueue(t *testing.T, d *database, clock *fakeClock) *queue {
	q := newQueue(d, fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()), 10*time.Second)
	q.now = clock.now
	return q
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustClaim(t *testing.T, q *queue, owner string) job {
	t.Helper()
	j, ok, err := q.claim(context.Background(), owner)
	if err != nil || !ok {
		t.Fatalf("claim by %s: have ok %v, err %v; want a job", owner, ok, err)
	}
	return j
}

func mustStats(t *testing.T, q *queue) queueStats {
	t.Helper()
	s, err := q.stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQueue(t *testing.T) {
	for name, cfg := range testBackends(t) {
		t.Run(name, func(t *testing.T) {
			d := openTestDB(t, cfg(t))
			t.Run("ClaimsInOrderThenNothing", func(t *testing.T) { testClaimOrder(t, d) })
			t.Run("LostLeaseCannotComplete", func(t *testing.T) { testLostLease(t, d) })
			t.Run("ReleaseGuarded", func(t *testing.T) { testReleaseGuarded(t, d) })
			t.Run("ExtendKeepsTheJob", func(t *testing.T) { testExtend(t, d) })
			t.Run("ConcurrentClaimers", func(t *testing.T) { testConcurrentClaimers(t, d, cfg(t)) })
		})
	}
}

// testClaimOrder: jobs are claimed oldest first, each once; an empty queue
// claims nothing; completing records one completion each.
func testClaimOrder(t *testing.T, d *database) {
	ctx := context.Background()
	q := testQueue(t, d, newClock())
	ids, err := q.enqueue(ctx, []string{`{"n":1}`, `{"n":2}`, "null"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range ids {
		j := mustClaim(t, q, "w/"+strconv.Itoa(i))
		if j.id != want || j.claims != 1 {
			t.Errorf("claim %d: have job %d (claims %d), want job %d (claims 1)", i, j.id, j.claims, want)
		}
		if ok, err := q.complete(ctx, j, "run"); !ok || err != nil {
			t.Errorf("complete job %d: have %v, %v; want true, nil", j.id, ok, err)
		}
	}
	if j, ok, err := q.claim(ctx, "w/x"); ok || err != nil {
		t.Errorf("claim on an empty queue: have job %d, ok %v, err %v; want nothing", j.id, ok, err)
	}
	s := mustStats(t, q)
	if s.Done != 3 || s.Completions != 3 || s.Queued != 0 || s.Running != 0 || s.DoneTwice != 0 || s.Total != 3 {
		t.Errorf("stats %+v: want 3 done, 3 completions, nothing else", s)
	}
}

// testLostLease: a worker whose lease expired, and whose job another claimed,
// can neither complete nor release it; the job is done once, by the second.
func testLostLease(t *testing.T, d *database) {
	ctx := context.Background()
	clock := newClock()
	q := testQueue(t, d, clock)
	if _, err := q.enqueue(ctx, []string{"null"}); err != nil {
		t.Fatal(err)
	}
	first := mustClaim(t, q, "dead/1")
	if _, ok, _ := q.claim(ctx, "other/1"); ok {
		t.Fatalf("a running job with a live lease was claimed again")
	}
	clock.advance(q.lease + time.Millisecond)
	if s := mustStats(t, q); s.Expired != 1 {
		t.Errorf("stats after the lease: have %d expired, want 1", s.Expired)
	}
	second := mustClaim(t, q, "live/1")
	if second.id != first.id || second.claims != 2 {
		t.Fatalf("reclaim: have job %d (claims %d), want job %d (claims 2)", second.id, second.claims, first.id)
	}
	if ok, err := q.complete(ctx, first, "dead"); ok || err != nil {
		t.Errorf("complete by the owner that lost the lease: have %v, %v; want false, nil", ok, err)
	}
	if ok, err := q.extend(ctx, first); ok || err != nil {
		t.Errorf("extend by the owner that lost the lease: have %v, %v; want false, nil", ok, err)
	}
	if ok, err := q.complete(ctx, second, "live"); !ok || err != nil {
		t.Errorf("complete by the new owner: have %v, %v; want true, nil", ok, err)
	}
	if ok, err := q.complete(ctx, second, "live"); ok || err != nil {
		t.Errorf("a second complete: have %v, %v; want false, nil", ok, err)
	}
	s := mustStats(t, q)
	if s.Done != 1 || s.Completions != 1 || s.DoneTwice != 0 || s.Reclaims != 1 || s.Claims != 2 {
		t.Errorf("stats %+v: want 1 done, 1 completion, 1 reclaim, 2 claims", s)
	}
}

// testReleaseGuarded: a release puts the job back for the next claim; a
// release by an owner that no longer has the job changes nothing.
func testReleaseGuarded(t *testing.T, d *database) {
	ctx := context.Background()
	q := testQueue(t, d, newClock())
	if _, err := q.enqueue(ctx, []string{"null"}); err != nil {
		t.Fatal(err)
	}
	a := mustClaim(t, q, "a/1")
	if ok, err := q.release(ctx, a); !ok || err != nil {
		t.Fatalf("release: have %v, %v; want true, nil", ok, err)
	}
	b := mustClaim(t, q, "b/1")
	if ok, err := q.release(ctx, a); ok || err != nil {
		t.Errorf("a release by the former owner: have %v, %v; want false, nil", ok, err)
	}
	if ok, err := q.complete(ctx, b, "b"); !ok || err != nil {
		t.Fatalf("complete: have %v, %v; want true, nil", ok, err)
	}
	if ok, err := q.release(ctx, b); ok || err != nil {
		t.Errorf("a release after the completion: have %v, %v; want false, nil", ok, err)
	}
	s := mustStats(t, q)
	if s.Done != 1 || s.Completions != 1 || s.Releases != 1 || s.Queued != 0 || s.Reclaims != 0 {
		t.Errorf("stats %+v: want 1 done, 1 completion, 1 release", s)
	}
}

// testExtend: a worker that extends its lease keeps its job past the
// original lease.
func testExtend(t *testing.T, d *database) {
	ctx := context.Background()
	clock := newClock()
	q := testQueue(t, d, clock)
	if _, err := q.enqueue(ctx, []string{"null"}); err != nil {
		t.Fatal(err)
	}
	j := mustClaim(t, q, "w/1")
	for range 3 {
		clock.advance(q.lease / 2)
		if ok, err := q.extend(ctx, j); !ok || err != nil {
			t.Fatalf("extend: have %v, %v; want true, nil", ok, err)
		}
		if _, ok, err := q.claim(ctx, "thief/1"); ok || err != nil {
			t.Fatalf("a job whose lease was extended was claimed by another (err %v)", err)
		}
	}
}

// testConcurrentClaimers: two database handles (two processes, in effect),
// four claimers on each, take 100 jobs: every job is claimed exactly once.
func testConcurrentClaimers(t *testing.T, d *database, cfg dbConfig) {
	const jobs, claimers = 100, 4
	ctx := context.Background()
	other := openTestDB(t, cfg)
	clock := newClock()
	q := testQueue(t, d, clock)
	payloads := make([]string, jobs)
	for i := range payloads {
		payloads[i] = "null"
	}
	if _, err := q.enqueue(ctx, payloads); err != nil {
		t.Fatal(err)
	}
	q2 := newQueue(other, q.name, q.lease)
	q2.now = clock.now

	var mu sync.Mutex
	claimed := make(map[int64]int)
	var wg sync.WaitGroup
	errs := make(chan error, 2*claimers)
	for i := range 2 * claimers {
		qq := q
		if i%2 == 1 {
			qq = q2
		}
		wg.Go(func() {
			for n := 0; ; n++ {
				j, ok, err := qq.claim(ctx, fmt.Sprintf("c%d/%d", i, n))
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				claimed[j.id]++
				mu.Unlock()
				if _, err := qq.complete(ctx, j, "c"+strconv.Itoa(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("claimer: %v", err)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("job %d claimed %d times", id, n)
		}
	}
	s := mustStats(t, q)
	if len(claimed) != jobs || s.Done != jobs || s.Completions != jobs || s.DoneTwice != 0 {
		t.Errorf("%d jobs claimed, stats %+v: want %d claimed, done and completed once each", len(claimed), s, jobs)
	}
}
