package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"               // also registers the "sqlite" database/sql driver
)

// dialect is what differs between the two databases; the SQL itself is
// shared and written with '?' placeholders.
type dialect struct {
	name string
	// rebind turns '?' placeholders into the database's form.
	rebind func(q string) string
	// migrationLock is run first in the migration transaction ("" none).
	migrationLock string
	// loadIsolation gives Load one consistent view of all tables.
	loadIsolation sql.IsolationLevel
	// isConstraint says whether err is a constraint violation.
	isConstraint func(err error) bool
}

// sqliteConstraint is SQLite's primary result code for a constraint
// violation; extended codes (unique, foreign key...) keep it in the low
// byte.
const sqliteConstraint = 19

var sqliteDialect = dialect{
	name:          "sqlite",
	rebind:        func(q string) string { return q },
	loadIsolation: sql.LevelDefault, // a SQLite transaction is serializable
	isConstraint: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && e.Code()&0xff == sqliteConstraint
	},
}

// postgresMigrationLockKey is an arbitrary constant naming bagpipe's
// migration lock among the database's advisory locks.
const postgresMigrationLockKey = 0x62677076 // "bgpv"

var postgresDialect = dialect{
	name:          "postgres",
	rebind:        dollarPlaceholders,
	migrationLock: "SELECT pg_advisory_xact_lock(" + strconv.Itoa(postgresMigrationLockKey) + ")",
	loadIsolation: sql.LevelRepeatableRead,
	isConstraint: func(err error) bool {
		var e *pgconn.PgError
		// Class 23: integrity constraint violation.
		return errors.As(err, &e) && strings.HasPrefix(e.Code, "23")
	},
}

// dollarPlaceholders rewrites '?' into $1, $2... (our SQL never has a
// '?' inside a literal).
func dollarPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// openSQLite opens a SQLite database file (or ":memory:") in WAL mode with
// foreign keys enforced.
func openSQLite(ctx context.Context, path string) (Store, error) {
	if path == "" {
		return nil, errors.New("store: sqlite:// URL without a file path")
	}
	// Writes take the database lock at BEGIN (immediate) so two writers
	// never deadlock upgrading read locks; busy_timeout makes a second
	// process wait for the lock instead of failing at once.
	params := "_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_txlock=immediate"
	if path != ":memory:" {
		params += "&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	}
	dsn := ":memory:"
	if path != ":memory:" {
		// A file: URI, so that any file name works: '?' and '#' are
		// escaped, which SQLite decodes.
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath()
	}
	db, err := sql.Open("sqlite", dsn+"?"+params)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	// One connection: the server serialises its writes anyway, and an
	// in-memory database exists only on its connection.
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return newSQLStore(ctx, db, &sqliteDialect, "sqlite "+path)
}

// openPostgres opens a PostgreSQL database through pgx's database/sql
// adapter.
func openPostgres(ctx context.Context, url string) (Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", redact(url), err)
	}
	db.SetMaxOpenConns(4)
	return newSQLStore(ctx, db, &postgresDialect, redact(url))
}

// newSQLStore checks the connection and migrates the schema.
func newSQLStore(ctx context.Context, db *sql.DB, d *dialect, what string) (Store, error) {
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connect %s: %w", what, err)
	}
	if err := migrate(ctx, db, d); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return &sqlStore{db: db, d: d}, nil
}
