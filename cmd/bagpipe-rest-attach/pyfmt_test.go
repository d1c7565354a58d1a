package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The expected strings are what Python 3.11 prints for the same values
// (json.dumps, then repr of the encoded bytes).
func TestPyJSON(t *testing.T) {
	type inner struct {
		C *int `json:"c"`
		D bool `json:"d"`
	}
	type outer struct {
		A []any    `json:"a"`
		B inner    `json:"b"`
		E []string `json:"e"`
	}
	cases := []struct {
		name      string
		v         any
		json, rep string
	}{
		{"separators_and_order", outer{A: []any{1, "x"}, B: inner{D: true}, E: []string{}},
			`{"a": [1, "x"], "b": {"c": null, "d": true}, "e": []}`,
			`b'{"a": [1, "x"], "b": {"c": null, "d": true}, "e": []}'`},
		{"ensure_ascii_no_html_escaping", map[string]string{"s": "é<>&\u2028\x7f\x01\t\"\\ 😀"},
			`{"s": "\u00e9<>&\u2028\u007f\u0001\t\"\\ \ud83d\ude00"}`,
			`b'{"s": "\\u00e9<>&\\u2028\\u007f\\u0001\\t\\"\\\\ \\ud83d\\ude00"}'`},
		{"separators_inside_strings_untouched", map[string]string{"k": "a,b:c"},
			`{"k": "a,b:c"}`, `b'{"k": "a,b:c"}'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pyJSON(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.json {
				t.Errorf("pyJSON\n got %s\nwant %s", got, tc.json)
			}
			if r := pyBytes(got); r != tc.rep {
				t.Errorf("pyBytes\n got %s\nwant %s", r, tc.rep)
			}
		})
	}
}

func TestPyBytes(t *testing.T) {
	cases := map[string]string{
		"it's":     `b"it's"`,
		`it's "q"`: `b'it\'s "q"'`,
		"null":     `b'null'`,
		"":         `b''`,
		"\r\n\\":   `b'\r\n\\'`,
		"\x00\x11\"3DUfw\x88\x99\xaa\xbb\xcc\xdd\xee\xff": `b'\x00\x11"3DUfw\x88\x99\xaa\xbb\xcc\xdd\xee\xff'`,
	}
	for in, want := range cases {
		if got := pyBytes([]byte(in)); got != want {
			t.Errorf("pyBytes(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestOrderedObject(t *testing.T) {
	var o orderedObject
	o.set("destinationPort", "80")
	o.set("sourcePrefix", "10.0.0.0/8")
	o.set("destinationPort", "81") // a repeated option keeps its place
	got, err := pyJSON(&o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"destinationPort": "81", "sourcePrefix": "10.0.0.0/8"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
