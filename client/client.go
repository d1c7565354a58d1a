// Package client talks to the REST API of bagpipe-bgp: ours and the
// original Python daemon's (vpn-and-api §2). It attaches and detaches local
// ports, reads the restart counter (/ping) and the looking glass.
//
// The request types carry the JSON keys the Neutron agent sends, so the
// daemon cannot tell this client from the agent. A non-2xx answer is an
// *APIError holding the status and the daemon's description.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is where bagpipe-bgp listens unless configured otherwise
// ([API] host and port).
const DefaultBaseURL = "http://127.0.0.1:8082"

// DefaultTimeout bounds each request unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// maxBody bounds what is read of an answer; a whole looking glass of a busy
// node stays far below.
const maxBody = 64 << 20

// Client is a client of one daemon. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	timeout   time.Duration
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc. The default
// client never goes through a proxy: the daemon is local.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTimeout bounds each request (connection, sending, reading the
// answer); 0 means no bound other than the context's.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the daemon at baseURL, e.g.
// "http://127.0.0.1:8082" ("" means DefaultBaseURL). A path in baseURL is
// kept as a prefix of the API's paths.
func New(baseURL string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("bagpipe-bgp client: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("bagpipe-bgp client: base URL %q: want http://host:port", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bagpipe-bgp client: base URL %q has a query or fragment", baseURL)
	}
	c := &Client{base: u, timeout: DefaultTimeout, userAgent: "bagpipe-go-client"}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		c.http = &http.Client{Transport: t}
	}
	return c, nil
}

// BaseURL returns the daemon's URL the client was made with.
func (c *Client) BaseURL() string { return c.base.String() }

// Ping returns the daemon's restart counter: a random integer drawn at each
// start (128 bits on the original), kept exact. A change of value means the
// daemon restarted and lost its attachments.
func (c *Client) Ping(ctx context.Context) (*big.Int, error) {
	resp, err := c.do(ctx, http.MethodGet, c.endpoint("ping"), nil)
	if err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	v, err := parseInteger(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	return v, nil
}

// parseInteger reads a bare JSON integer of any size.
func parseInteger(b []byte) (*big.Int, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("answer %q is not JSON: %w", truncate(b), err)
	}
	n, ok := x.(json.Number)
	if !ok {
		return nil, fmt.Errorf("answer %q is not a JSON number", truncate(b))
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("answer %q: trailing data after the number", truncate(b))
	}
	v, ok := new(big.Int).SetString(n.String(), 10)
	if !ok {
		return nil, fmt.Errorf("answer %q is not an integer", truncate(b))
	}
	return v, nil
}

// Attach attaches a local port to a VPN instance, creating the instance on
// its first attachment.
func (c *Client) Attach(ctx context.Context, req AttachRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if _, err := c.AttachRaw(ctx, body); err != nil {
		return err
	}
	return nil
}

// Detach detaches a local port from a VPN instance; the instance goes with
// its last attachment.
func (c *Client) Detach(ctx context.Context, req DetachRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	if _, err := c.DetachRaw(ctx, body); err != nil {
		return err
	}
	return nil
}

// Response is a 2xx answer.
type Response struct {
	Status int    // e.g. 200
	Body   []byte // "null" for a successful attach or detach
}

// AttachRaw posts body, a JSON attach request built by the caller, to
// /attach_localport. For tools that must send bytes of their own choosing
// (bagpipe-rest-attach prints what it sends).
func (c *Client) AttachRaw(ctx context.Context, body []byte) (*Response, error) {
	resp, err := c.do(ctx, http.MethodPost, c.endpoint("attach_localport"), body)
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	return resp, nil
}

// DetachRaw posts body to /detach_localport.
func (c *Client) DetachRaw(ctx context.Context, body []byte) (*Response, error) {
	resp, err := c.do(ctx, http.MethodPost, c.endpoint("detach_localport"), body)
	if err != nil {
		return nil, fmt.Errorf("detach: %w", err)
	}
	return resp, nil
}

// LookingGlass returns the looking-glass object at path below
// /looking-glass, e.g. LookingGlass(ctx, "vpns", "instances"). Each element
// is one level: a "/" inside an element is escaped. A missing object is an
// *APIError with Status 404.
func (c *Client) LookingGlass(ctx context.Context, path ...string) (json.RawMessage, error) {
	elems := append([]string{"looking-glass"}, path...)
	resp, err := c.do(ctx, http.MethodGet, c.endpoint(elems...), nil)
	if err != nil {
		return nil, fmt.Errorf("looking glass %s: %w", strings.Join(path, "/"), err)
	}
	if !json.Valid(resp.Body) {
		return nil, fmt.Errorf("looking glass %s: answer %q is not JSON", strings.Join(path, "/"), truncate(resp.Body))
	}
	return json.RawMessage(resp.Body), nil
}

// endpoint is the URL of the API path made of elems, each escaped.
func (c *Client) endpoint(elems ...string) *url.URL {
	u := *c.base
	raw := strings.TrimSuffix(c.base.EscapedPath(), "/")
	plain := strings.TrimSuffix(c.base.Path, "/")
	for _, e := range elems {
		raw += "/" + url.PathEscape(e)
		plain += "/" + e
	}
	u.Path, u.RawPath = plain, raw
	return &u
}

// do sends one request and reads the whole answer; a non-2xx answer is an
// *APIError.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte) (*Response, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	// JSON errors carry the description in a parsable form (the original
	// answers clients without Accept with a text page).
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, u.Path, err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, u.Path, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newAPIError(resp.StatusCode, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return &Response{Status: resp.StatusCode, Body: b}, nil
}

// truncate shortens an answer quoted in an error message.
func truncate(b []byte) []byte {
	const limit = 200
	if len(b) > limit {
		return b[:limit]
	}
	return b
}
