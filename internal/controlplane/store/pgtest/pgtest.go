// Package pgtest runs a real, throw-away PostgreSQL server for tests:
// Debian's binaries (initdb, postgres) on a fresh data directory, listening
// only on a unix socket in that directory (no TCP port to collide with),
// as the unprivileged "postgres" user when the test runs as root (the
// server refuses root), stopped by PID when the test ends.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// superuser is the role initdb creates; it authenticates by "trust" on
// the socket, which only this test's user can reach.
const superuser = "bagpipe"

// socketPort only names the socket file (.s.PGSQL.<port>): the server
// listens on no TCP port.
const socketPort = 5432

// startTimeout bounds initdb plus the server becoming ready.
const startTimeout = 60 * time.Second

// Server is one running PostgreSQL.
type Server struct {
	dir string // socket directory, parent of the data directory

	mu  sync.Mutex // guards seq
	seq int
}

// binDir finds Debian's server binaries, newest version first.
func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/{postgres,initdb} (apt-get install postgresql)")
}

// skipOrFail skips a test that lacks PostgreSQL, except under CI, which
// installs it (scripts/install-deps.sh).
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "pgtest: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must have it")
	}
	t.Skip(msg)
}

// Start initialises and starts a server for t; t.Cleanup stops it (by
// PID) and removes its files.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		skipOrFail(t, "%v", err)
	}
	var cred *syscall.Credential
	var owner *user.User
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(t, "running as root and no unprivileged \"postgres\" user to run the server: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		owner = u
	}
	// Not t.TempDir: its parent is private to root, and the server runs
	// as another user. The path stays short: a socket path is limited to
	// about 100 bytes.
	dir, err := os.MkdirTemp("", "bagpipe-pg-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("pgtest: chown %s to %s: %v", dir, owner.Username, err)
		}
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}

	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	srv := exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-k", dir,
		"-p", strconv.Itoa(socketPort),
		"-c", "listen_addresses=",
		// A test database needs no durability: faster, and kinder to CI.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=50")
	srv.Dir = dir
	srv.Stdout = logFile
	srv.Stderr = logFile
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := srv.Start(); err != nil {
		logFile.Close()
		t.Fatalf("pgtest: start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = srv.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() { stop(t, srv.Process, exited) })

	s := &Server{dir: dir}
	if err := s.waitReady(ctx, exited); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		t.Fatalf("pgtest: %v\npostgres log:\n%s", err, log)
	}
	return s
}

// stop asks for a fast shutdown (SIGINT), then kills after a grace period.
func stop(t testing.TB, p *os.Process, exited <-chan struct{}) {
	_ = p.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return
	case <-time.After(15 * time.Second):
	}
	t.Logf("pgtest: postgres (pid %d) did not stop on SIGINT; killing it", p.Pid)
	_ = p.Kill()
	<-exited
}

// waitReady polls until the server accepts a query.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres exited before accepting connections (%v)", err)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready after %v: %v", startTimeout, err)
		case <-tick.C:
		}
	}
}

// URL is a postgres:// URL of database db on this server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", superuser, db, s.dir, socketPort)
}

// NewDatabase creates an empty database for t and returns its URL; the
// database is dropped when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("test_%d", s.seq)
	s.mu.Unlock()
	admin, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", s.URL("postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		// WITH (FORCE) ends connections a failed test left open.
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return s.URL(name)
}
