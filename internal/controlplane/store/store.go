// Package store persists the control plane's resources (model.Snapshot)
// in SQL: SQLite (pure Go, the embedded default) or PostgreSQL, both with
// one schema and one set of embedded migrations. The server keeps its
// authoritative copy in memory; the store is where it comes back from at
// start (Load) and where every change is written, in one transaction per
// API call (Apply), before memory is updated.
//
// Each row holds its resource as a JSON document (the model type encoded
// with encoding/json) beside relational columns for what the database must
// enforce: primary keys, foreign keys, and uniqueness of a network's
// segment (type, physical network, segmentation id), of a MAC on a
// network, of an IP on a subnet and of each association (BGPVPN, target).
// Renaming a model field therefore needs a migration that rewrites the
// documents.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// DefaultURL is the embedded default: a SQLite file in the working
// directory.
const DefaultURL = "sqlite://bagpipe-server.db"

// ErrConflict is wrapped by writes that a database constraint refused
// (duplicate key, unique column, missing or still referenced row): the
// caller's view of the data was out of date or its checks incomplete.
var ErrConflict = errors.New("store: constraint violation")

// Store is the persistence the server uses.
type Store interface {
	// Load reads every resource.
	Load(ctx context.Context) (*model.Snapshot, error)
	// Apply runs fn in one transaction: every write fn makes is
	// committed together, or none if fn or the commit fails (fn's
	// error is returned as is).
	Apply(ctx context.Context, fn func(tx Tx) error) error
	// Close releases the database.
	Close() error
}

// Tx is the write side of one transaction. Put inserts or replaces a
// resource by id; Delete of a missing id is not an error. Writes are
// executed in call order, so a caller deletes children before their
// parent and puts a parent before its children.
type Tx interface {
	PutNetwork(n *model.Network) error
	DeleteNetwork(id string) error
	PutSubnet(s *model.Subnet) error
	DeleteSubnet(id string) error
	PutPort(p *model.Port) error
	DeletePort(id string) error
	PutRouter(r *model.Router) error
	DeleteRouter(id string) error
	PutBGPVPN(b *model.BGPVPN) error
	DeleteBGPVPN(id string) error
	PutNetworkAssociation(a *model.NetworkAssociation) error
	DeleteNetworkAssociation(id string) error
	PutRouterAssociation(a *model.RouterAssociation) error
	DeleteRouterAssociation(id string) error
	PutPortAssociation(a *model.PortAssociation) error
	DeletePortAssociation(id string) error
}

// Open opens (creating if needed) the database named by url and brings
// its schema up to date:
//
//	sqlite:///var/lib/bagpipe/server.db   absolute path
//	sqlite://server.db                    relative to the working directory
//	sqlite://:memory:                     private in-memory database (tests)
//	postgres://user:pw@host:5432/db?sslmode=disable   (or postgresql://)
func Open(ctx context.Context, url string) (Store, error) {
	switch {
	case strings.HasPrefix(url, "sqlite://"):
		return openSQLite(ctx, strings.TrimPrefix(url, "sqlite://"))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(ctx, url)
	default:
		return nil, fmt.Errorf("store: unsupported database URL %q: want sqlite://PATH or postgres://URL", redact(url))
	}
}

// redact hides a password in a URL for error messages.
func redact(url string) string {
	at := strings.LastIndexByte(url, '@')
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	creds := url[scheme+3 : at]
	if i := strings.IndexByte(creds, ':'); i >= 0 {
		return url[:scheme+3] + creds[:i] + ":xxxxx" + url[at:]
	}
	return url
}
