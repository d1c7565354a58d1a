package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

const (
	defaultServer = "127.0.0.1"
	defaultPrefix = "looking-glass"
	indentStep    = 2
)

const usage = `Usage: bagpipe-looking-glass [--server <ip>] [--port <port>] [--prefix <prefix>] [-r|--recurse] [path elements...]

Browse the looking glass of bagpipe-bgp, e.g.: bagpipe-looking-glass vpns instances

Options:
  --server IP      IP address of bagpipe-bgp (default: 127.0.0.1)
  --port N         port of bagpipe-bgp (default: [API] port of %s, else 8082)
  --prefix P       looking-glass URL prefix (default: looking-glass)
  -r, --recurse    recurse down into the whole looking glass
`

// run is the whole command; it returns the exit status. It prints what the
// original prints, but unlike the original (vpn-and-api §8 #23) a missing
// path, another HTTP error or an unreachable server exit 1 so that scripts
// can tell; 2 is a usage error, 1 also a bad configuration file or an
// answer that is not JSON.
func run(args []string, stdout, stderr io.Writer, configPath string, client *http.Client) int {
	fs := flag.NewFlagSet("bagpipe-looking-glass", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usage, configPath) }
	server := fs.String("server", defaultServer, "")
	port := fs.Int("port", -1, "")
	prefix := fs.String("prefix", defaultPrefix, "")
	var recurse bool
	fs.BoolVar(&recurse, "r", false, "")
	fs.BoolVar(&recurse, "recurse", false, "")

	// optparse let options and path elements mix; flag stops at the first
	// element, so parse again after each one
	var elems []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			elems = append(elems, rest...)
			break
		}
		elems = append(elems, rest[0])
		args = rest[1:]
	}
	if *port < 0 {
		p, err := config.APIPort(configPath)
		if err != nil {
			fmt.Fprintf(stderr, "bagpipe-looking-glass: %v\n", err)
			return 1
		}
		*port = int(p)
	}
	if *port > 65535 {
		fmt.Fprintf(stderr, "bagpipe-looking-glass: --port %d: not a port\n", *port)
		return 2
	}

	quoted := make([]string, len(elems))
	for i, e := range elems {
		quoted[i] = quote(e)
	}
	target := fmt.Sprintf("http://%s:%d/%s/%s", *server, *port, *prefix, strings.Join(quoted, "/"))

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	b := &browser{client: client, out: out, recurse: recurse}
	err := b.show(target)
	var he *httpError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he) && he.code == http.StatusNotFound:
		fmt.Fprintf(out, "No such looking glass path: %s\n(%s)\n", strings.Join(quoted, " "), target)
		return 1
	case errors.As(err, &he):
		fmt.Fprintf(out, "Error code %d: %s\n", he.code, strings.TrimRight(string(he.body), "\n"))
		return 1
	case errors.Is(err, errNotJSON):
		out.Flush()
		fmt.Fprintf(stderr, "bagpipe-looking-glass: %v\n", err)
		return 1
	default:
		fmt.Fprintf(out, "No server at http://%s:%d : %v\n", *server, *port, err)
		return 1
	}
}

// quote percent-encodes a path element as Python's urllib quote does:
// unreserved characters and "/" stay, so "bgp/peers" is two levels.
func quote(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

type httpError struct {
	code int
	body []byte
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

var errNotJSON = errors.New("answer is not JSON")

type browser struct {
	client  *http.Client
	out     *bufio.Writer
	recurse bool
}

// show fetches target, follows a top-level {"href": ...} once, and prints.
func (b *browser) show(target string) error {
	data, err := b.fetch(target)
	if err != nil {
		return err
	}
	if obj, ok := data.(object); ok {
		if href, ok := obj.get("href"); ok {
			if next, ok := href.(string); ok {
				if data, err = b.fetch(next); err != nil {
					return err
				}
				target = next
			}
		}
	}
	return b.print(data, 0, target, true)
}

// fetch GETs a URL and decodes its JSON keeping object member order.
func (b *browser) fetch(u string) (any, error) {
	resp, err := b.client.Get(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{code: resp.StatusCode, body: body}
	}
	v, err := decodeOrdered(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errNotJSON, u, err)
	}
	return v, nil
}

// print writes data after a key already printed, ending at a line start,
// with the original's layout: "key: value" lines indented by two per level,
// "* item" for list items, "id (...)" for links, "-" for empty objects and
// lists. With recurse, links below url are fetched and printed in place.
func (b *browser) print(data any, indent int, url string, atLineStart bool) error {
	pad := strings.Repeat(" ", indent)
	switch d := data.(type) {
	case object:
		link := false
		if _, hasID := d.get("id"); hasID {
			if _, hasHref := d.get("href"); hasHref {
				id, _ := d.get("id")
				b.out.WriteString(scalar(id))
				d = d.without("id")
			}
		}
		if href, ok := d.get("href"); ok {
			link = true
			target, _ := href.(string)
			if b.recurse && target != "" && strings.HasPrefix(target, url) {
				sub, err := b.fetch(target)
				if err != nil {
					return err
				}
				return b.print(sub, indent+indentStep, target, false)
			}
			d = d.without("href")
			b.out.WriteString(" (...)")
			atLineStart = false
		}
		if len(d) == 0 {
			if link {
				b.out.WriteString("\n")
			} else {
				b.out.WriteString("-\n")
			}
			return nil
		}
		if !atLineStart {
			b.out.WriteString("\n")
		}
		for i, m := range d {
			if i > 0 || !atLineStart {
				b.out.WriteString(pad)
			}
			b.out.WriteString(m.key + ": ")
			if err := b.print(m.value, indent+indentStep, url, false); err != nil {
				return err
			}
		}
	case []any:
		if len(d) == 0 {
			b.out.WriteString("-\n")
			return nil
		}
		if !atLineStart {
			b.out.WriteString("\n")
		}
		for _, v := range d {
			b.out.WriteString(pad + "* ")
			switch v.(type) {
			case object, []any:
				if err := b.print(v, indent+indentStep, url, true); err != nil {
					return err
				}
			default:
				b.out.WriteString(scalar(v) + "\n")
			}
		}
	default:
		s := scalar(d)
		if str, ok := d.(string); ok && strings.Contains(str, "\n") {
			s = strings.ReplaceAll(strings.Trim(str, "\n"), "\n", "\n"+pad)
			b.out.WriteString("\n" + pad)
		}
		b.out.WriteString(s + "\n")
	}
	return nil
}

// scalar renders a JSON scalar as Python's str() did.
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}
