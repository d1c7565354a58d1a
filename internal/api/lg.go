package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// The looking glass is a read-only tree of JSON objects browsed by URL path
// (vpn-and-api §4). Each node answers for itself and everything below it:
// given the rest of the path it returns a JSON-encodable value. Objects are
// built from named items that are either shown inline or, for sub-trees,
// collections and delegated objects, as {"href": "<absolute URL>"}.

// Request is a looking-glass query as it reaches one node.
type Request struct {
	ctx context.Context
	// Prefix is the absolute URL of the node answering, e.g.
	// "http://127.0.0.1:8082/looking-glass/bgp".
	Prefix string
	// Root is the absolute URL of the looking-glass root,
	// "http://127.0.0.1:8082/looking-glass".
	Root string
}

// NewRequest starts a query at the root URL root (tests and other servers).
func NewRequest(ctx context.Context, root string) *Request {
	return &Request{ctx: ctx, Prefix: root, Root: root}
}

// Context is the HTTP request's context.
func (r *Request) Context() context.Context { return r.ctx }

// Sub is the request as seen by the child item named item.
func (r *Request) Sub(item string) *Request {
	c := *r
	c.Prefix = r.Href(item)
	return &c
}

// Href is the absolute URL of a path below this node; items are quoted.
func (r *Request) Href(items ...string) string { return joinURL(r.Prefix, items) }

// RootHref is the absolute URL of a path below the looking-glass root, for
// references across the tree (a route's source worker, a driver).
func (r *Request) RootHref(items ...string) string { return joinURL(r.Root, items) }

func joinURL(base string, items []string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, it := range items {
		b.WriteByte('/')
		b.WriteString(quotePathItem(it))
	}
	return b.String()
}

// quotePathItem percent-encodes everything but RFC 3986 unreserved
// characters, as the original's urllib quote did, and "/" too: the server
// splits paths on "/" before unquoting, so an id containing "/" still
// reaches its object.
func quotePathItem(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Node is an object of the looking glass.
type Node interface {
	// LG returns the value at path below the node (the node itself for an
	// empty path). A missing element is a *NotFoundError.
	LG(r *Request, path []string) (any, error)
}

// NodeFunc adapts a function to Node.
type NodeFunc func(r *Request, path []string) (any, error)

// LG calls f.
func (f NodeFunc) LG(r *Request, path []string) (any, error) { return f(r, path) }

// NotFoundError is an unknown looking-glass path element: 404 with the
// original's text.
type NotFoundError struct {
	Item string // the element, quoted as the original did for keys of inline values
	At   string // absolute URL where it was looked for
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("No such looking glass object: %s at %s", e.Item, e.At)
}

// Field is one member of an ordered JSON object.
type Field struct {
	Key   string
	Value any
}

// Fields is a JSON object that keeps its members in order, so that the
// looking glass (and the CLI printing it) shows them as the original did.
type Fields []Field

// Get returns the value of key.
func (f Fields) Get(key string) (any, bool) {
	for _, kv := range f {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key, or appends it.
func (f *Fields) Set(key string, v any) {
	for i := range *f {
		if (*f)[i].Key == key {
			(*f)[i].Value = v
			return
		}
	}
	*f = append(*f, Field{key, v})
}

// MarshalJSON writes the members in order.
func (f Fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(kv.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("looking glass item %q: %w", kv.Key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Item is a named member of an Object; build it with Value, Inline, Subtree,
// Delegate or Collection.
type Item struct {
	Name  string
	kind  itemKind
	value any
	fn    func(r *Request) (any, error)
	node  Node
	list  func(r *Request) ([]Fields, error)
	get   func(r *Request, id string) (Node, error)
}

type itemKind int

const (
	kindValue itemKind = iota
	kindInline
	kindSubtree
	kindDelegate
	kindCollection
)

// Value is a constant shown inline.
func Value(name string, v any) Item { return Item{Name: name, kind: kindValue, value: v} }

// Inline is computed at each query and shown inline in its parent.
func Inline(name string, f func(r *Request) (any, error)) Item {
	return Item{Name: name, kind: kindInline, fn: f}
}

// Subtree is computed only when asked for directly; its parent shows an href.
func Subtree(name string, f func(r *Request) (any, error)) Item {
	return Item{Name: name, kind: kindSubtree, fn: f}
}

// Delegate hands the item and everything below it to another node; the
// parent shows an href.
func Delegate(name string, n Node) Item { return Item{Name: name, kind: kindDelegate, node: n} }

// Collection is a list of objects. Asked for directly, it returns list's
// entries (each must have an "id") with an "href" added; a path element below
// it is an id given to get, whose node answers for the rest. get returning a
// nil Node means no such id. The parent shows an href.
func Collection(name string, list func(r *Request) ([]Fields, error), get func(r *Request, id string) (Node, error)) Item {
	return Item{Name: name, kind: kindCollection, list: list, get: get}
}

// Object is a node made of local information (Info, shown inline) and items.
type Object struct {
	Info  func(r *Request) (Fields, error)
	Items []Item
}

// LG implements Node.
func (o *Object) LG(r *Request, path []string) (any, error) {
	if len(path) > 0 {
		for _, it := range o.Items {
			if it.Name == path[0] {
				return it.lg(r.Sub(it.Name), path[1:])
			}
		}
	}
	info, err := o.render(r)
	if err != nil || len(path) == 0 {
		return info, err
	}
	// a key of the local information, maybe deep inside an inline value
	return Descend(info, path, r.Href(path[0]))
}

// lg answers for an item reached through its parent; r is the item's own.
func (it Item) lg(r *Request, path []string) (any, error) {
	switch it.kind {
	case kindValue:
		return Descend(it.value, path, r.Prefix)
	case kindInline, kindSubtree:
		v, err := it.fn(r)
		if err != nil {
			return nil, err
		}
		return Descend(v, path, r.Prefix)
	case kindDelegate:
		return it.node.LG(r, path)
	case kindCollection:
		if len(path) == 0 {
			return it.listEntries(r)
		}
		n, err := it.get(r, path[0])
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, &NotFoundError{Item: path[0], At: r.Prefix}
		}
		return n.LG(r.Sub(path[0]), path[1:])
	}
	return nil, fmt.Errorf("looking glass item %q of unknown kind", it.Name)
}

func (it Item) listEntries(r *Request) ([]Fields, error) {
	entries, err := it.list(r)
	if err != nil {
		return nil, err
	}
	out := make([]Fields, 0, len(entries))
	for _, e := range entries {
		id, ok := e.Get("id")
		if !ok {
			return nil, fmt.Errorf("looking glass collection %s: entry without id", r.Prefix)
		}
		e = append(Fields(nil), e...)
		e.Set("href", r.Href(fmt.Sprint(id)))
		out = append(out, e)
	}
	return out, nil
}

// render builds the whole object: local information, then each item inline
// or as an href.
func (o *Object) render(r *Request) (Fields, error) {
	var out Fields
	if o.Info != nil {
		info, err := o.Info(r)
		if err != nil {
			return nil, err
		}
		out = append(out, info...)
	}
	for _, it := range o.Items {
		switch it.kind {
		case kindValue:
			out.Set(it.Name, it.value)
		case kindInline:
			v, err := it.fn(r.Sub(it.Name))
			if err != nil {
				return nil, err
			}
			out.Set(it.Name, v)
		default:
			out.Set(it.Name, Fields{{"href", r.Href(it.Name)}})
		}
	}
	if out == nil {
		out = Fields{}
	}
	return out, nil
}

// Descend follows path through the JSON objects of an inline value. at is
// the URL reported when a key is missing; the key appears quoted, as the
// original reported it. A null leaf is returned as is (the original answered
// 404 there: vpn-and-api §8 #19).
func Descend(v any, path []string, at string) (any, error) {
	for _, key := range path {
		next, ok, err := member(v, key)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &NotFoundError{Item: "'" + key + "'", At: at}
		}
		v = next
	}
	return v, nil
}

// member returns v[key] when v encodes as a JSON object.
func member(v any, key string) (any, bool, error) {
	switch m := v.(type) {
	case Fields:
		x, ok := m.Get(key)
		return x, ok, nil
	case map[string]any:
		x, ok := m[key]
		return x, ok, nil
	case nil:
		return nil, false, nil
	}
	// any other value: look at its JSON form
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, err
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, false, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, false, err
	}
	x, ok := obj[key]
	if !ok {
		return nil, false, nil
	}
	return x, true, nil
}
