package linkwatch

import (
	"log/slog"
	"strings"
	"time"
)

// TapPrefix starts the names of the VMs' taps in the Linux bridge flavour
// (tap + the port id's start, as Nova and the agent name them).
const TapPrefix = "tap"

// Backoff of a failing subscription.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// Watcher is the Linux bridge flavour's agent.PortWatcher. The zero value
// watches the process's namespace for taps.
type Watcher struct {
	// NamespacePath is the network namespace watched (a file such as
	// /run/netns/NAME); "" means the agent's own.
	NamespacePath string
	// Match selects the links worth a wake by name; nil means the names
	// starting with TapPrefix.
	Match func(name string) bool
	// Log; nil discards.
	Log *slog.Logger
}

func (w *Watcher) match(name string) bool {
	if w.Match != nil {
		return w.Match(name)
	}
	return strings.HasPrefix(name, TapPrefix)
}

func (w *Watcher) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.New(slog.DiscardHandler)
}
