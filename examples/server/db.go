package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// dialect is the SQL flavour of a database: the two the example speaks.
type dialect int

const (
	sqlite dialect = iota
	postgres
)

func (d dialect) String() string {
	if d == postgres {
		return "postgres"
	}
	return "sqlite"
}

// dbConfig says which database to open: parsed from -db and -db-path.
type dbConfig struct {
	dialect dialect
	dsn     string // what sql.Open gets
	show    string // what the log shows: the file, or the DSN without its password
}

// parseDB turns the -db and -db-path flags into a dbConfig. An empty db means
// SQLite in the file path; "sqlite:FILE" names the file; "postgres://..." or
// "postgresql://..." is a PostgreSQL DSN (pgx's syntax).
func parseDB(db, path string) (dbConfig, error) {
	switch {
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		u, err := url.Parse(db)
		if err != nil {
			return dbConfig{}, fmt.Errorf("-db: %w", err)
		}
		return dbConfig{dialect: postgres, dsn: db, show: u.Redacted()}, nil
	case strings.HasPrefix(db, "sqlite:"):
		path = strings.TrimPrefix(db, "sqlite:")
	case db != "":
		return dbConfig{}, fmt.Errorf(`-db %q is neither "sqlite:FILE" nor a "postgres://" DSN`, db)
	}
	switch {
	case path == "":
		return dbConfig{}, errors.New("-db-path is empty")
	case strings.ContainsAny(path, "?#"):
		return dbConfig{}, fmt.Errorf("SQLite file %q: the name must not contain '?' or '#'", path)
	}
	// WAL lets readers (GET /jobs/stats) run beside the one writer; the busy
	// timeout makes a writer wait for the write lock instead of failing at
	// once; _txlock=immediate begins every transaction with BEGIN IMMEDIATE,
	// which takes the write lock first: a transaction that began as a reader
	// and then writes fails at once (SQLITE_BUSY, no waiting) when another
	// process wrote in between. Two processes may share the file.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	return dbConfig{dialect: sqlite, dsn: dsn, show: path}, nil
}

// database is the example's database: SQLite or PostgreSQL behind
// database/sql. It is the component every other depends on: opened first,
// closed last. open and close are its lifecycle.Hooks.
type database struct {
	cfg dbConfig
	log *slog.Logger
	db  *sql.DB // set by open
}

func newDatabase(cfg dbConfig, log *slog.Logger) *database {
	return &database{cfg: cfg, log: log}
}

// schema creates the tables if they are missing. jobs holds the queue;
// completions records every completion of a job, with the run that did it,
// so that a job done twice shows as two rows (there is no unique key on
// job_id on purpose: a duplicate must be visible, not an error).
var schema = map[dialect][]string{
	sqlite: {
		`CREATE TABLE IF NOT EXISTS jobs (
			id          INTEGER PRIMARY KEY,
			queue       TEXT    NOT NULL,
			payload     TEXT    NOT NULL,
			status      TEXT    NOT NULL DEFAULT 'queued',
			owner       TEXT,
			lease_until INTEGER,
			claims      INTEGER NOT NULL DEFAULT 0,
			releases    INTEGER NOT NULL DEFAULT 0,
			reclaims    INTEGER NOT NULL DEFAULT 0,
			created_at  INTEGER NOT NULL,
			done_at     INTEGER)`,
		`CREATE INDEX IF NOT EXISTS jobs_queue_status ON jobs (queue, status, id)`,
		`CREATE TABLE IF NOT EXISTS completions (
			job_id INTEGER NOT NULL,
			run_id TEXT    NOT NULL,
			at     INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS completions_job ON completions (job_id)`,
	},
	postgres: {
		`CREATE TABLE IF NOT EXISTS jobs (
			id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			queue       TEXT    NOT NULL,
			payload     TEXT    NOT NULL,
			status      TEXT    NOT NULL DEFAULT 'queued',
			owner       TEXT,
			lease_until BIGINT,
			claims      INTEGER NOT NULL DEFAULT 0,
			releases    INTEGER NOT NULL DEFAULT 0,
			reclaims    INTEGER NOT NULL DEFAULT 0,
			created_at  BIGINT  NOT NULL,
			done_at     BIGINT)`,
		`CREATE INDEX IF NOT EXISTS jobs_queue_status ON jobs (queue, status, id)`,
		`CREATE TABLE IF NOT EXISTS completions (
			job_id BIGINT NOT NULL,
			run_id TEXT   NOT NULL,
			at     BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS completions_job ON completions (job_id)`,
	},
}

// open connects, checks the connection and creates the tables if they are
// missing. It is the start hook of the database's component: the Group
// starts nothing else before it has returned.
func (d *database) open(ctx context.Context) error {
	driver := "sqlite"
	if d.cfg.dialect == postgres {
		driver = "pgx"
	}
	db, err := sql.Open(driver, d.cfg.dsn)
	if err != nil {
		return fmt.Errorf("db: open %s: %w", d.cfg.show, err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	if err := d.migrate(ctx, db); err != nil {
		_ = db.Close() // the migration error is the one to report
		return fmt.Errorf("db: %s: %w", d.cfg.show, err)
	}
	d.db = db
	d.log.Info("db: opened", "dialect", d.cfg.dialect.String(), "db", d.cfg.show)
	return nil
}

// migrate creates the tables. Two processes that start at once on a new
// PostgreSQL database may both try; the loser's "already exists" is retried
// once, when the winner has committed.
func (d *database) migrate(ctx context.Context, db *sql.DB) error {
	var err error
	for range 2 {
		if err = db.PingContext(ctx); err != nil {
			return err
		}
		err = d.createTables(ctx, db)
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (d *database) createTables(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range schema[d.cfg.dialect] {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	return tx.Commit()
}

// close closes the database. It is the stop hook of the database's
// component, called once everything that uses the database has stopped, so
// no connection may still be in use: one that is means the stop order is
// wrong, and close says so in its error.
//
// Closing SQLite checkpoints its write-ahead log into the database file,
// which can take a while on a busy disk. When ctx is done (the shutdown
// deadline has passed) close does not wait for it: it returns an error at
// once and lets the close go on until the process exits; an unfinished
// checkpoint is redone at the next open, and no committed transaction is
// lost.
func (d *database) close(ctx context.Context) error {
	st := d.db.Stats()
	closed := make(chan error, 1)
	go func() { closed <- d.db.Close() }()
	var err error
	select {
	case err = <-closed:
	case <-ctx.Done():
		select {
		case err = <-closed:
		default:
			return fmt.Errorf("db: not closed by the shutdown deadline; closing on: %w", context.Cause(ctx))
		}
	}
	if st.InUse > 0 {
		err = errors.Join(err, fmt.Errorf("db: closed with %d connections still in use", st.InUse))
	}
	if err != nil {
		return err
	}
	d.log.Info("db: closed", "connections", st.OpenConnections, "waited_for_a_connection", st.WaitCount,
		"wait_duration", st.WaitDuration.Round(time.Millisecond))
	return nil
}
