// Package api is bagpipe-bgp's REST server: the original's routing table
// (vpn-and-api §2.1) with /ping, /attach_localport, /detach_localport and the
// read-only looking glass under /looking-glass (§4), with the BGP part of the
// looking glass built from the engine and the peers (bgp-core §6).
//
// The server does not know the VPN layer or the peers: it is given
// interfaces (AttachHandler, BGPSource, VPNSource) that the daemon fills
// (internal/vpnapi implements the VPN ones over the VPN manager).
package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// LookingGlassPrefix is the first path element of the looking glass.
const LookingGlassPrefix = "looking-glass"

// maxBody bounds an attach or detach request body.
const maxBody = 1 << 20

// AttachHandler carries out attach_localport and detach_localport requests
// (the VPN layer). params is the request body, a JSON object. An error that
// is a BadRequester is answered 400 "API error: <message>"; any other error
// 500.
type AttachHandler interface {
	Attach(ctx context.Context, params json.RawMessage) error
	Detach(ctx context.Context, params json.RawMessage) error
}

// Config of a Server. Only Logger is required.
type Config struct {
	Logger *slog.Logger
	// Logs is the global buffer of WARNING+ records (fed by the handler of
	// NewLogHandler); nil gives an empty one.
	Logs *logring.Buffer
	// Version shown in the summary.
	Version string
	// StartTime shown in the summary; zero means when New was called.
	StartTime time.Time
	// ConfigLG is the looking glass "config" subtree, e.g.
	// (*config.Config).LookingGlass(); nil shows {}.
	ConfigLG any
	// BGP feeds the "bgp" subtree and the summary; nil shows them empty.
	BGP BGPSource
	// VPN feeds the "vpns" subtree; nil shows an empty VPN layer.
	VPN VPNSource
	// Attach handles attach/detach POSTs; nil answers 503.
	Attach AttachHandler
	// Rand is the source of the /ping sequence number; nil is crypto/rand.
	Rand io.Reader
}

// Server is the REST server. Its handler is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	logs     *logring.Buffer
	start    time.Time
	sequence string // /ping answer, a decimal integer
	lg       Node
	mux      *http.ServeMux
}

// New builds a server; it starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		return nil, errors.New("api: Config.Logger is required")
	}
	src := cfg.Rand
	if src == nil {
		src = rand.Reader
	}
	seq, err := drawSequence(src)
	if err != nil {
		return nil, fmt.Errorf("api: ping sequence number: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With(LoggerKey, "api"),
		logs:     cfg.Logs,
		start:    cfg.StartTime,
		sequence: seq,
	}
	if s.logs == nil {
		s.logs = logring.NewBuffer(0)
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	s.lg = s.rootNode()
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/{$}", s.handleRoot)
	s.mux.HandleFunc("/ping", s.handlePing)
	s.mux.HandleFunc("/attach_localport", s.handleAttach("attach_localport", AttachHandler.Attach))
	s.mux.HandleFunc("/detach_localport", s.handleAttach("detach_localport", AttachHandler.Detach))
	s.mux.HandleFunc("/"+LookingGlassPrefix, s.handleLookingGlass)
	s.mux.HandleFunc("/"+LookingGlassPrefix+"/", s.handleLookingGlass)
	s.mux.HandleFunc("/", notFound)
	return s, nil
}

// drawSequence returns a random 128-bit integer in decimal, never 0 (the
// agent's initial value; -1 is its failure value and cannot occur).
func drawSequence(src io.Reader) (string, error) {
	var b [16]byte
	for range 8 {
		if _, err := io.ReadFull(src, b[:]); err != nil {
			return "", err
		}
		n := new(big.Int).SetBytes(b[:])
		if n.Sign() != 0 {
			return n.String(), nil
		}
	}
	return "", errors.New("random source returns only zeros")
}

// Sequence is the value /ping answers for the lifetime of this server.
func (s *Server) Sequence() string { return s.sequence }

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve answers requests on ln until ctx is done, then shuts down
// gracefully (in-flight requests get a few seconds) and returns. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(shutdownCtx)
	if err != nil {
		hs.Close()
	}
	<-done // http.ErrServerClosed once Serve has returned
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

func writeRawJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// handleRoot: GET / is {} (vpn-and-api §2.1), other methods 405.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if !isGet(r) {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	writeRawJSON(w, []byte("{}"))
}

// handlePing answers every method with the bare sequence number, so that
// clients detect a restart when it changes (vpn-and-api §2.3).
func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) {
	writeRawJSON(w, []byte(s.sequence))
}

// handleAttach serves /attach_localport or /detach_localport: GET is {}
// (legacy, kept), POST goes to the AttachHandler, other methods 405.
func (s *Server) handleAttach(op string, call func(AttachHandler, context.Context, json.RawMessage) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isGet(r):
			writeRawJSON(w, []byte("{}"))
			return
		case r.Method != http.MethodPost:
			methodNotAllowed(w, r, "GET, HEAD, POST")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil || !json.Valid(body) {
			s.log.Error(op + ": No local port details received")
			writeError(w, r, http.StatusBadRequest, text("No local port details received"))
			return
		}
		if trimmed := strings.TrimSpace(string(body)); !strings.HasPrefix(trimmed, "{") {
			msg := "API error: the parameters must be a JSON object"
			s.log.Warn(op + ": " + msg)
			writeError(w, r, http.StatusBadRequest, text(msg))
			return
		}
		if s.cfg.Attach == nil {
			s.log.Error(op + ": the VPN layer is not available")
			writeError(w, r, http.StatusServiceUnavailable, text("The VPN layer is not available"))
			return
		}
		s.log.Info(op+" received", "params", string(body))
		err = call(s.cfg.Attach, r.Context(), json.RawMessage(body))
		switch {
		case err == nil:
			writeRawJSON(w, []byte("null"))
		case isBadRequest(err):
			msg := badRequestText(err)
			s.log.Warn(op + ": " + msg)
			writeError(w, r, http.StatusBadRequest, text(msg))
		default:
			s.log.Error(op+": an error occurred", "error", err)
			what := "plug to"
			if op == "detach_localport" {
				what = "unplug from"
			}
			writeError(w, r, http.StatusInternalServerError, text("An error occurred during local port "+what+" VPN"))
		}
	}
}

// handleLookingGlass serves GET /looking-glass[/...]; other methods 405.
func (s *Server) handleLookingGlass(w http.ResponseWriter, r *http.Request) {
	if !isGet(r) {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	path, err := lgPath(r.URL.EscapedPath())
	if err != nil {
		writeError(w, r, http.StatusNotFound, text(err.Error()))
		return
	}
	root := requestScheme(r) + "://" + requestHost(r) + "/" + LookingGlassPrefix
	v, err := s.lg.LG(NewRequest(r.Context(), root), path)
	if err == nil {
		var b []byte
		if b, err = json.Marshal(v); err == nil {
			writeRawJSON(w, b)
			return
		}
	}
	var nf *NotFoundError
	if errors.As(err, &nf) {
		s.log.Info("looking_glass: " + nf.Error())
		writeError(w, r, http.StatusNotFound, text(nf.Error()))
		return
	}
	s.log.Error("looking_glass: an error occurred", "path", r.URL.Path, "error", err)
	writeError(w, r, http.StatusInternalServerError, text("Server error"))
}

// lgPath splits the escaped URL path below /looking-glass into unescaped
// elements; empty elements (doubled or trailing slashes) are dropped. Splitting
// before unescaping lets an element contain an escaped "/".
func lgPath(escaped string) ([]string, error) {
	rest := strings.TrimPrefix(escaped, "/"+LookingGlassPrefix)
	var out []string
	for _, seg := range strings.Split(rest, "/") {
		if seg == "" {
			continue
		}
		u, err := unescapePathItem(seg)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func unescapePathItem(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("bad escape in path element %q", s)
		}
		b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// requestHost is the Host header, or for a request without one (HTTP/1.0)
// the address the request came in on.
func requestHost(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return "localhost"
}
