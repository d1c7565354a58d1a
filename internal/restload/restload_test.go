package restload

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeAPI answers /ping with 1 and /attach_localport with null, or 500
// for a body starting with "fail"; it records the bodies and the largest
// number of requests it held at once.
type fakeAPI struct {
	mu       sync.Mutex
	bodies   []string
	pings    int
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for m := f.maxIn.Load(); n > m && !f.maxIn.CompareAndSwap(m, n); m = f.maxIn.Load() {
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/ping":
		f.pings++
		_, _ = io.WriteString(w, "1")
	case "/attach_localport":
		f.bodies = append(f.bodies, string(body))
		if strings.HasPrefix(string(body), "fail") {
			http.Error(w, `{"error": "refused"}`, http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "null")
	default:
		http.NotFound(w, r)
	}
}

// received is what f recorded: the bodies and the pings.
func (f *fakeAPI) received() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.bodies), f.pings
}

func start(t *testing.T, clients int) (*fakeAPI, Send, func() error) {
	t.Helper()
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cl, tr, err := NewClient(srv.URL, clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	if tr.MaxIdleConnsPerHost != clients || tr.Proxy != nil {
		t.Errorf("transport keeps %d idle connections per host (proxy %v), want %d and none", tr.MaxIdleConnsPerHost, tr.Proxy != nil, clients)
	}
	return f, cl.AttachRaw, func() error { return WarmUp(t.Context(), cl, clients) }
}

func bodies(n int, fail ...int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte("body " + strconv.Itoa(i))
		if slices.Contains(fail, i) {
			out[i] = []byte("fail " + strconv.Itoa(i))
		}
	}
	return out
}

func TestRunSendsEachBodyOnceFromAtMostClientsCallers(t *testing.T) {
	f, send, warm := start(t, 4)
	if err := warm(); err != nil {
		t.Fatal(err)
	}
	if _, pings := f.received(); pings != 8 {
		t.Errorf("warm-up sent %d pings, want 2 per caller, 8", pings)
	}
	bs := bodies(40)
	ph, err := Run(t.Context(), send, "attach", bs, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := f.received()
	slices.Sort(got)
	want := make([]string, len(bs))
	for i, b := range bs {
		want[i] = string(b)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("received %q, want each body once: %q", got, want)
	}
	if m := f.maxIn.Load(); m > 4 {
		t.Errorf("%d requests at once, want at most 4", m)
	}
	if len(ph.Latencies) != 40 || !slices.IsSorted(ph.Latencies) || ph.Latencies[0] <= 0 {
		t.Errorf("latencies %v: want 40, sorted, positive", ph.Latencies)
	}
	if ph.Elapsed < ph.Latencies[39] || ph.Failed != 0 || ph.FirstErr != nil {
		t.Errorf("phase %+v: want the elapsed time at least the slowest request, no failure", ph)
	}
	if ph.Rate() <= 0 || ph.Quantile(1) != ph.Latencies[39] {
		t.Errorf("rate %v, max %v", ph.Rate(), ph.Quantile(1))
	}
}

func TestRunToleratesFailuresWhenAsked(t *testing.T) {
	f, send, _ := start(t, 3)
	ph, err := Run(t.Context(), send, "attach", bodies(20, 5, 11), 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.received(); len(got) != 20 || len(ph.Latencies) != 20 {
		t.Errorf("%d bodies received, %d latencies; want 20 of each", len(got), len(ph.Latencies))
	}
	if ph.Failed != 2 || ph.FirstErr == nil || !strings.HasPrefix(ph.FirstErr.Error(), "attach #") {
		t.Errorf("failed %d, first error %v; want 2, named attach #<index>", ph.Failed, ph.FirstErr)
	}
}

func TestRunStopsAtTheFirstError(t *testing.T) {
	f, send, _ := start(t, 1)
	_, err := Run(t.Context(), send, "request", bodies(10, 3), 1, false)
	if err == nil || !strings.HasPrefix(err.Error(), "request #3: ") {
		t.Fatalf("error %v, want request #3's", err)
	}
	if got, _ := f.received(); len(got) != 4 {
		t.Errorf("%d bodies sent, want the 4 up to the failing one (one caller)", len(got))
	}
}

func TestWarmUpReportsAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	cl, tr, err := NewClient(srv.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	if err := WarmUp(t.Context(), cl, 2); err == nil || !strings.Contains(err.Error(), "ping") {
		t.Errorf("WarmUp against a server without /ping: %v, want a ping error", err)
	}
}
