package config

import (
	"fmt"
	"strings"

	"gopkg.in/ini.v1"
)

// rawValue is one option as the last file that set it wrote it.
type rawValue struct {
	value string
	file  string
}

// rawSection is a section merged over all files, keyed by its lower-cased
// name (ini.v1 lower-cases names when reading, so messages about sections
// the parser does not know show them in lower case).
type rawSection struct {
	name   string
	keys   map[string]rawValue
	order  []string
	used   map[string]bool
	origin string // file of first appearance
}

// rawConfig is every section of every file, merged.
type rawConfig struct {
	sections map[string]*rawSection
	order    []string
}

// iniOptions make gopkg.in/ini.v1 read what oslo.config reads.
var iniOptions = ini.LoadOptions{
	// oslo.config group names are case-insensitive, option names are not.
	InsensitiveSections: true,
	// oslo has no inline comments: "a # b" is the value "a # b".
	IgnoreInlineComment: true,
	// oslo continues a value on indented lines, not after a backslash.
	AllowPythonMultilineValues: true,
	IgnoreContinuation:         true,
	// keep "a.b" section names from being read as ini.v1 child sections
	ChildSectionDelimiter: "\x00",
}

// merge parses each source and overlays them in order, option by option.
func merge(srcs []Source) (*rawConfig, error) {
	rc := &rawConfig{sections: map[string]*rawSection{}}
	for _, src := range srcs {
		f, err := ini.LoadSources(iniOptions, src.Data)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", src.Name, err)
		}
		for _, sec := range f.Sections() {
			id := strings.ToLower(strings.TrimSpace(sec.Name()))
			rs := rc.sections[id]
			if rs == nil {
				rs = &rawSection{name: strings.TrimSpace(sec.Name()), keys: map[string]rawValue{}, used: map[string]bool{}, origin: src.Name}
				rc.sections[id] = rs
				rc.order = append(rc.order, id)
			}
			for _, k := range sec.Keys() {
				name := k.Name()
				if _, seen := rs.keys[name]; !seen {
					rs.order = append(rs.order, name)
				}
				rs.keys[name] = rawValue{value: strings.TrimSpace(k.Value()), file: src.Name}
			}
		}
	}
	return rc, nil
}

// section returns the merged section with that lower-case id, or nil.
func (rc *rawConfig) section(id string) *rawSection { return rc.sections[id] }

// get returns an option and marks it as known.
func (rs *rawSection) get(key string) (rawValue, bool) {
	if rs == nil {
		return rawValue{}, false
	}
	v, ok := rs.keys[key]
	if ok {
		rs.used[key] = true
	}
	return v, ok
}

// has reports whether the option is set, without marking it.
func (rs *rawSection) has(key string) bool {
	if rs == nil {
		return false
	}
	_, ok := rs.keys[key]
	return ok
}

// unused lists the options nobody asked for, in file order.
func (rs *rawSection) unused() []string {
	if rs == nil {
		return nil
	}
	var out []string
	for _, k := range rs.order {
		if !rs.used[k] {
			out = append(out, k)
		}
	}
	return out
}
