package neutronapi

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// listQuery is what a list request asks for besides the collection:
// attribute filters (repeated keys OR, different keys AND), tag filters,
// fields, sort and page (control-plane §2.1).
type listQuery struct {
	filters  map[string][]string
	fields   []string
	limit    int
	marker   string
	reverse  bool
	sortKeys []string
	sortAsc  []bool
	// Neutron's tag filters, each a comma-separated list.
	tags, tagsAny, notTags, notTagsAny []string
}

// parseListQuery reads a list request's query; names are the
// collection's attributes (filters on anything else are refused).
func parseListQuery(q url.Values, names map[string]bool) (*listQuery, error) {
	lq := &listQuery{filters: map[string][]string{}}
	var dirs []string
	for k, vs := range q {
		switch k {
		case "fields":
			lq.fields = append(lq.fields, vs...)
		case "limit":
			n, err := strconv.Atoi(vs[len(vs)-1])
			if err != nil || n < 0 {
				return nil, badRequest("limit must be an integer >= 0, not '%s'", vs[len(vs)-1])
			}
			lq.limit = n
		case "marker":
			lq.marker = vs[len(vs)-1]
		case "page_reverse":
			b, ok := toBool(vs[len(vs)-1])
			if !ok {
				return nil, invalidInput("page_reverse", "'%s' cannot be converted to boolean", vs[len(vs)-1])
			}
			lq.reverse = b
		case "sort_key":
			lq.sortKeys = append(lq.sortKeys, vs...)
		case "sort_dir":
			dirs = append(dirs, vs...)
		case "tags", "tags-any", "not-tags", "not-tags-any":
			var list []string
			for _, v := range vs {
				for t := range strings.SplitSeq(v, ",") {
					if t != "" {
						list = append(list, t)
					}
				}
			}
			switch k {
			case "tags":
				lq.tags = list
			case "tags-any":
				lq.tagsAny = list
			case "not-tags":
				lq.notTags = list
			default:
				lq.notTagsAny = list
			}
		default:
			if !names[k] {
				return nil, badRequest("cannot filter on %s", k)
			}
			lq.filters[k] = vs
		}
	}
	if len(dirs) > 0 && len(dirs) != len(lq.sortKeys) {
		return nil, badRequest("give as many sort_dir as sort_key")
	}
	for i, k := range lq.sortKeys {
		if !names[k] {
			return nil, badRequest("cannot sort on %s", k)
		}
		asc := true
		if len(dirs) > 0 {
			switch dirs[i] {
			case "asc":
			case "desc":
				asc = false
			default:
				return nil, badRequest("sort_dir %s: want asc or desc", dirs[i])
			}
		}
		lq.sortAsc = append(lq.sortAsc, asc)
	}
	return lq, nil
}

// take removes a filter the resource handles itself.
func (lq *listQuery) take(k string) []string {
	v := lq.filters[k]
	delete(lq.filters, k)
	return v
}

// match says whether a rendered item passes the filters.
func (lq *listQuery) match(item map[string]any) (bool, error) {
	for k, want := range lq.filters {
		ok, err := matchValue(k, item[k], want)
		if err != nil || !ok {
			return false, err
		}
	}
	if len(lq.tags)+len(lq.tagsAny)+len(lq.notTags)+len(lq.notTagsAny) > 0 {
		tags, _ := item["tags"].([]string)
		has := func(t string) bool { return slices.Contains(tags, t) }
		all := func(list []string) bool {
			for _, t := range list {
				if !has(t) {
					return false
				}
			}
			return true
		}
		anyOf := func(list []string) bool { return slices.ContainsFunc(list, has) }
		if (len(lq.tags) > 0 && !all(lq.tags)) || (len(lq.tagsAny) > 0 && !anyOf(lq.tagsAny)) ||
			(len(lq.notTags) > 0 && all(lq.notTags)) || (len(lq.notTagsAny) > 0 && anyOf(lq.notTagsAny)) {
			return false, nil
		}
	}
	return true, nil
}

func matchValue(k string, v any, want []string) (bool, error) {
	switch t := v.(type) {
	case string:
		return slices.Contains(want, t), nil
	case nil:
		return slices.Contains(want, "") || slices.Contains(want, "None"), nil
	case bool:
		for _, w := range want {
			b, ok := toBool(w)
			if !ok {
				return false, invalidInput(k, "'%s' cannot be converted to boolean", w)
			}
			if b == t {
				return true, nil
			}
		}
		return false, nil
	case int:
		return slices.Contains(want, strconv.Itoa(t)), nil
	case []string:
		for _, w := range want {
			if slices.Contains(t, w) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, badRequest("cannot filter on %s", k)
}

// compareValues orders two attribute values of one kind (null first).
func compareValues(a, b any) (int, bool) {
	switch x := a.(type) {
	case nil:
		if b == nil {
			return 0, true
		}
		return -1, true
	case string:
		if y, ok := b.(string); ok {
			return cmp.Compare(x, y), true
		}
	case int:
		if y, ok := b.(int); ok {
			return cmp.Compare(x, y), true
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0, true
			case !x:
				return -1, true
			default:
				return 1, true
			}
		}
	}
	if b == nil {
		return 1, true
	}
	return 0, false
}

// listResult filters, sorts, pages and projects rendered items into the
// collection's body, with "<coll>_links" when a limit was asked.
func (a *API) listResult(r *http.Request, coll string, items []map[string]any, lq *listQuery) (result, error) {
	kept := items[:0:0]
	for _, it := range items {
		ok, err := lq.match(it)
		if err != nil {
			return result{}, err
		}
		if ok {
			kept = append(kept, it)
		}
	}
	var sortErr error
	slices.SortStableFunc(kept, func(x, y map[string]any) int {
		for i, k := range lq.sortKeys {
			c, ok := compareValues(x[k], y[k])
			if !ok {
				sortErr = badRequest("cannot sort on %s", k)
				return 0
			}
			if c != 0 {
				if !lq.sortAsc[i] {
					c = -c
				}
				return c
			}
		}
		xi, _ := x["id"].(string)
		yi, _ := y["id"].(string)
		return cmp.Compare(xi, yi)
	})
	if sortErr != nil {
		return result{}, sortErr
	}
	if lq.reverse {
		slices.Reverse(kept)
	}
	start := 0
	if lq.marker != "" {
		idx := slices.IndexFunc(kept, func(it map[string]any) bool { return it["id"] == lq.marker })
		switch {
		case idx >= 0:
			start = idx + 1
		case len(lq.sortKeys) == 0:
			// Sorted by id only: a deleted marker still has a place.
			start = len(kept)
			for i, it := range kept {
				id, _ := it["id"].(string)
				if (!lq.reverse && id > lq.marker) || (lq.reverse && id < lq.marker) {
					start = i
					break
				}
			}
		default:
			return result{}, badRequest("marker %s not found", lq.marker)
		}
	}
	end := len(kept)
	more := false
	if lq.limit > 0 && start+lq.limit < len(kept) {
		end = start + lq.limit
		more = true
	}
	page := kept[start:end]
	var links []any
	if lq.limit > 0 {
		if more {
			links = append(links, map[string]any{"rel": "next", "href": a.pageHref(r, page[len(page)-1]["id"], lq.reverse)})
		}
		if lq.marker != "" && len(page) > 0 {
			links = append(links, map[string]any{"rel": "previous", "href": a.pageHref(r, page[0]["id"], !lq.reverse)})
		}
	}
	if lq.reverse {
		page = slices.Clone(page)
		slices.Reverse(page)
	}
	out := make([]any, len(page))
	for i, it := range page {
		out[i] = project(it, lq.fields)
	}
	body := map[string]any{coll: out}
	if len(links) > 0 {
		body[coll+"_links"] = links
	}
	return ok(body)
}

// pageHref is the request's URL with another marker and direction.
func (a *API) pageHref(r *http.Request, marker any, reverse bool) string {
	q := r.URL.Query()
	m, _ := marker.(string)
	q.Set("marker", m)
	if reverse {
		q.Set("page_reverse", "True")
	} else {
		q.Del("page_reverse")
	}
	return a.baseURL(r) + r.URL.Path + "?" + q.Encode()
}

// project keeps only the asked fields (all when none).
func project(item map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return item
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := item[f]; ok {
			out[f] = v
		}
	}
	return out
}

// showResult is the body of a GET of one resource, with fields=.
func showResult(r *http.Request, key string, item map[string]any) (result, error) {
	return ok(map[string]any{key: project(item, r.URL.Query()["fields"])})
}
